"""benchmarks.seed_spread: the same run with only the training seed changed."""

import json
import math

import pytest

from benchmarks import seed_spread


@pytest.mark.slow
def test_two_model_seeds_share_references_and_differ_in_models(mnist_root, tmp_path):
    out = tmp_path / "spread"
    spread = seed_spread.main(["--dataset", "mnist", "--model-seeds", "0,1", "--epochs", "1",
                               "--out", str(out), "--profile", "smoke", "--data-root",
                               str(mnist_root), "--no-progress"])
    runs = [json.loads((out / f"model-seed{s}" / "results.json").read_text()) for s in (0, 1)]
    assert [r["model_seed"] for r in runs] == [0, 1]
    tables = [r["experiments"]["tables"] for r in runs]
    assert tables[0]["references"] == tables[1]["references"]
    losses = [t["models"]["vae_beta1"]["training"]["validation_loss"] for t in tables]
    assert losses[0] != losses[1]
    cell = spread["VAE · MS-SSIM 0.1"]
    assert set(cell["per_seed"]) == {"0", "1"} and cell["between_seed_sd"] >= 0
    assert math.isclose(cell["mean"], sum(cell["per_seed"].values()) / 2)
    assert "SD between seeds" in (out / "spread.md").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "mnist", "--model-seeds", "0"], "at least two distinct"),
    (["--dataset", "mnist", "--model-seeds", "0,x"], "comma-separated integers"),
    (["--dataset", "mnist", "--train"], "set by seed_spread itself"),
])
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit):
        seed_spread.parse_arguments(argv)
    assert message in capsys.readouterr().err
