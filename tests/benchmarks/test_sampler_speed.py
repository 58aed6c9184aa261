"""Smoke test of ``python -m benchmarks.sampler_speed`` on a tiny setting, and the bare loop's
potential against the model's."""

import math

import pytest
import torch

from benchmarks.sampler_speed import (BARE_LIKELIHOODS, bare_potential, bare_ratios, main,
                                      random_images, random_vae)
from inference import PosteriorTarget


def test_benchmark_prints_a_row_per_method(capsys):
    main(["--num-points", "3", "--num-transitions", "1", "--num-leapfrog-steps", "2",
          "--max-tree-depth", "2", "--timed-points", "1", "--datasets", "mnist",
          "--bare-transitions", "1", "--bare-repeats", "1", "--block-calls", "2"])
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.lstrip().startswith("3 ")]
    assert len(rows) == 6
    assert any("batched hmc" in row for row in rows) and any("stock nuts, 1 chain/point" in row for row in rows)
    batched = [row.split() for row in rows if "batched" in row]
    assert all(float(row[-3]) == 1.0 for row in batched)  # every computed gradient used
    assert all(0.1 < float(value) < 10 for row in batched for value in row[-2:])
    bare, calls = [line.replace(",", " ").split() for line in lines if line.startswith("mnist")]
    # At N = 3, T = 1 the one-off set-up (structure trace, program recording) dominates, so the
    # ratios only have to be real numbers here; sampler_speed's own runs measure them.
    assert bare[1] == "3" and all(0 < float(bare[k]) < math.inf for k in (4, 5, 7, 8))
    assert bare[4] == bare[5] and bare[7] == bare[8]  # one repeat: its ratio is the median
    # the calls section: set-up and per-call milliseconds (best, median: equal with one repeat)
    assert calls[:2] == ["mnist", "3"] and len(calls) == 12
    assert all(calls[k] == calls[k + 1] and float(calls[k]) > 0 for k in (2, 4, 6, 8))
    assert float(calls[10]) == pytest.approx(float(calls[4]) / float(calls[8]), rel=0.1, abs=2e-3)


def test_bare_ratios_pair_each_repeat():
    seconds = {"ours": [1.0, 2.2, 1.1], "model": [0.9, 2.0, 1.0]}
    best, median = bare_ratios(seconds, "model")
    assert best == 1.0 / 0.9
    assert median == pytest.approx(1.1)  # per-repeat ratios 1.111, 1.1, 1.1: the load drift between repeats cancels


@pytest.mark.parametrize("likelihood", BARE_LIKELIHOODS)
def test_bare_potential_is_the_models_up_to_its_constant(likelihood):
    vae = random_vae(torch.device("cpu"), num_channels=3)
    x = random_images(4, 3, torch.device("cpu"))
    z = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    bare_value, bare_grad = bare_potential(vae, x, likelihood)(z)
    value, grad = PosteriorTarget(vae.model, (x,)).value_and_grad(z.unsqueeze(0))
    assert torch.allclose(bare_value + 32 * math.log(2 * math.pi), value[0], rtol=1e-5)
    assert torch.allclose(bare_grad, grad[0], atol=1e-4)


def test_pretrained_times_the_zoo_model_on_test_images(mnist_root, capsys):
    main(["--pretrained", "--data-root", str(mnist_root), "--sections", "stock", "--dataset", "mnist",
          "--samplers", "nuts", "--num-points", "4", "--num-transitions", "1", "--max-tree-depth", "3",
          "--timed-points", "1", "--step-size", "0.1"])
    out = capsys.readouterr().out
    assert "models: the zoo, first N test images" in out
    (batched,) = [line.split() for line in out.splitlines() if "batched nuts" in line]
    assert float(batched[-3]) == 1.0  # only the chains still extending their trees are evaluated
