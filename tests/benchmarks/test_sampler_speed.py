"""Smoke test of ``python -m benchmarks.sampler_speed`` on a tiny setting, and the bare loop's
potential against the model's."""

import copy
import math

import pytest
import torch

from benchmarks import sampler_speed
from benchmarks.sampler_speed import (BARE_LIKELIHOODS, TimedValueAndGrad, bare_potential, bare_ratios,
                                      main, random_images, random_vae)
from benchmarks.stages.models import frozen
from inference import PosteriorTarget


@pytest.fixture
def kernels(monkeypatch):
    """Every batched kernel the benchmark builds, in order."""
    built = []
    for name in ("BatchedHMC", "BatchedNUTS"):
        class Recording(getattr(sampler_speed, name)):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                built.append(self)

        monkeypatch.setattr(sampler_speed, name, Recording)
    return built


def gradient_use(kernel) -> str:
    """The ``grad use`` cell the records imply: Σ n_steps / Σ n_grad_evals over the timed
    transitions (all but the first)."""
    info = kernel.diagnostics()["samples"]
    return f"{info.num_steps[1:].sum().item() / info.num_grad_evals[1:].sum().item():.3f}"


def test_benchmark_prints_a_row_per_method(capsys, kernels):
    """The tables' structure and the numbers that are counts, not times. Timings are the
    benchmark's output, never bounded here: one timed call on a shared CPU says nothing."""
    main(["--num-points", "3", "--num-transitions", "1", "--num-leapfrog-steps", "2",
          "--max-tree-depth", "2", "--timed-points", "1", "--datasets", "mnist",
          "--bare-transitions", "1", "--bare-repeats", "1", "--block-calls", "2"])
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.lstrip().startswith("3 ")]
    names = [row[7:65].strip() for row in rows]  # f"{N:>5}  {method:<58}"
    assert names == [f"{kind} {sampler}{how}" for sampler in ("hmc", "nuts") for kind, how in (
        ("batched", ""), ("stock", ", 1 chain/point (timed 1, extrapolated)"),
        ("stock", ", all points in 1 plate (shared accept)"))]
    numbers = [row[65:].replace("x", "").split() for row in rows]
    assert [len(row) for row in numbers] == [6, 3, 3] * 2  # the batched rows add 3 columns
    assert all(0 < float(value) < math.inf for row in numbers for value in row)
    assert all(row[2] == "1.0" for row in numbers[1::3])  # stock per point is the unit
    assert [row[3] for row in numbers[::3]] == [gradient_use(kernel) for kernel in kernels]
    bare, calls = [line.replace(",", " ").split() for line in lines if line.startswith("mnist")]
    assert bare[:2] == ["mnist", "3"] and len(bare) == 9
    assert all(0 < float(value) < math.inf for value in bare[2:])
    assert bare[4] == bare[5] and bare[7] == bare[8]  # one repeat: its ratio is the median
    # the calls section: set-up and per-call milliseconds (best, median: equal with one repeat)
    assert calls[:2] == ["mnist", "3"] and len(calls) == 12
    assert all(calls[k] == calls[k + 1] and float(calls[k]) > 0 for k in (2, 4, 6, 8))


class FakeClock:
    """time.perf_counter that moves only when told to."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_timed_calls_are_attributed_to_the_window_they_fall_in(monkeypatch):
    """TimedValueAndGrad's accounting on a fake clock (each call takes a known time): a call
    counts towards a window only if it lies wholly inside it, and ``fastest`` is the quickest of
    the last ``repeats`` calls. Catches summing over every call, or timing the wrong calls."""
    clock = FakeClock()
    monkeypatch.setattr(sampler_speed.time, "perf_counter", clock)
    durations = iter([1.0, 2.0, 4.0, 3.0, 5.0, 0.5])

    class Target:
        def value_and_grad(self, z):
            clock.now += next(durations)
            return z.sum(-1), z

        def value_and_grad_rows(self, z_rows, rows):
            return self.value_and_grad(z_rows)

    timed = TimedValueAndGrad(Target())
    z = torch.zeros(1, 2, 3)
    timed(z)  # [0, 1]
    clock.now += 10.0  # a gap outside every call
    timed(z)  # [11, 13]
    timed.value_and_grad_rows(z, torch.tensor([0]))  # [13, 17]
    assert timed.calls == [(0.0, 1.0), (11.0, 13.0), (13.0, 17.0)]
    assert timed.total_duration(0.0, 17.0) == 7.0
    assert timed.total_duration(0.5, 17.0) == 6.0  # the first call started before the window
    assert timed.total_duration(11.0, 16.0) == 2.0  # the last one ends after it
    assert timed.fastest(z, repeats=3) == 0.5  # three more calls of 3.0, 5.0 and 0.5
    assert len(timed.calls) == 6


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


def test_layout_section_prints_both_layouts_per_model(capsys):
    main(["--sections", "layout", "--datasets", "mnist", "colormnist", "--num-points", "2",
          "--bare-repeats", "1", "--block-calls", "1"])
    rows = [line.replace(",", " ").split() for line in capsys.readouterr().out.splitlines()
            if line.startswith(("mnist", "colormnist"))]
    assert [row[:2] for row in rows] == [["mnist", "2"], ["colormnist", "2"]]
    for row in rows:  # decoder best, median ×2, speed-up, encoder best, median ×2, speed-up
        assert len(row) == 12 and row[2] == row[3] and row[7] == row[8]
        assert all(0 < float(value) < math.inf for value in row[2:])


def test_a_frozen_channels_last_model_has_the_same_potential():
    """The layout changes how weights are stored, not the density: U and its gradient agree
    with the contiguous model's up to float rounding."""
    vae = random_vae(torch.device("cpu"), num_channels=3)
    x = random_images(3, 3, torch.device("cpu"))
    z = torch.randn(2, 3, 64, generator=torch.Generator().manual_seed(0))
    value, grad = PosteriorTarget(vae.model, (x,), num_chains=2).value_and_grad(z)
    stored = frozen(copy.deepcopy(vae))
    assert stored.decoder.net[2].weight.is_contiguous(memory_format=torch.channels_last)
    value_nhwc, grad_nhwc = PosteriorTarget(stored.model, (x,), num_chains=2).value_and_grad(z)
    assert torch.allclose(value_nhwc, value, rtol=1e-5) and not torch.equal(value, torch.zeros_like(value))
    assert torch.allclose(grad_nhwc, grad, rtol=1e-4, atol=1e-4)


def test_pretrained_times_the_zoo_model_on_test_images(mnist_root, capsys, kernels, monkeypatch):
    """The zoo's model on real images grows trees of different depths; without the rows
    method NUTS evaluates every chain as long as the deepest tree, and the ``grad use`` column
    must show that waste as the records count it (that nothing is wasted with the rows method:
    tests/inference/test_samplers.py)."""
    monkeypatch.delattr(sampler_speed.TimedValueAndGrad, "value_and_grad_rows")
    main(["--pretrained", "--data-root", str(mnist_root), "--sections", "stock", "--dataset", "mnist",
          "--samplers", "nuts", "--num-points", "4", "--num-transitions", "1", "--max-tree-depth", "4",
          "--timed-points", "1", "--step-size", "0.3"])  # trees of several depths
    out = capsys.readouterr().out
    assert "models: the zoo, first N test images" in out
    (batched,) = [line.split() for line in out.splitlines() if "batched nuts" in line]
    (kernel,) = kernels
    assert batched[-3] == gradient_use(kernel) and float(batched[-3]) < 1
