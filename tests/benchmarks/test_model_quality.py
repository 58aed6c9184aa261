"""benchmarks.model_quality: reuses a trained model, evaluates with the asked k, caches it."""

import shutil

import pytest

from benchmarks import model_quality


@pytest.mark.slow
def test_evaluates_a_cached_model_with_the_requested_k(smoke_run, tmp_path, capsys):
    root, run, results = smoke_run
    (tmp_path / "models").mkdir()
    shutil.copy(run / "models" / "vae_beta1.pt", tmp_path / "models" / "vae_beta1.pt")
    arguments = ["--dataset", "mnist", "--data-root", str(root), "--out", str(tmp_path),
                 "--epochs", "1", "--nll-samples", "7", "--points", "24", "--no-progress"]
    rows = model_quality.main(arguments)
    row = rows["vae_beta1"]
    assert (row["num_points"], row["num_importance_samples"]) == (24, 7)
    # log p(x) >= ELBO in expectation; with k = 7 samples the estimate is already tighter.
    assert row["nll"] <= -row["elbo"] + 5
    assert (tmp_path / "quality" / "vae_beta1_k7_n24.json").is_file()
    assert "| vae_beta1 | 1 | 24 | 7 |" in capsys.readouterr().out
    assert model_quality.main(arguments) == rows  # cached, identical


@pytest.mark.parametrize("argument, message", [
    (["--nll-samples", "0"], "--nll-samples must be at least 1"),
    (["--models", "gan"], "unknown model"),
])
def test_bad_arguments_are_clear(argument, message, capsys):
    with pytest.raises(SystemExit):
        model_quality.parse_arguments(["--dataset", "mnist", *argument])
    assert message in capsys.readouterr().err
