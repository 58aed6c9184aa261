"""The run's evaluation-size overrides, the reuse of a zoo entry's recorded quality figures, and
``--zoo-only`` (the full Table 2 from the zoo) stopping before any work when entries are missing."""

import json

import pytest

from benchmarks import run as runner
from benchmarks.profiles import PAPER_MODELS, PROFILES, TRAINING_FIELDS
from benchmarks.stages.models import recorded_quality
from pyro_vae.zoo import ZOO_DIR, training_command, zoo_index


def profile_of(*argv):
    return runner.run_profile(runner.parse_arguments(["--dataset", "mnist", *argv]))


def test_evaluation_sizes_override_the_profile_and_are_recorded_as_cuts():
    profile = profile_of("--profile", "paper", "--eval-points", "50", "--nll-samples", "10",
                         "--fid-points", "64", "--feature-epochs", "1", "--max-train-points", "500")
    assert (profile.eval_points, profile.nll_samples, profile.fid_points,
            profile.feature_epochs, profile.max_train_points) == (50, 10, 64, 1, 500)
    assert profile.num_transitions is None and profile.references == 50  # nothing else moves
    cuts = profile.cuts("mnist", ignore=TRAINING_FIELDS)
    for cut in ("eval_points = 50 (paper: all)", "nll_samples = 10 (paper: 1000)",
                "fid_points = 64 (paper: 10000)", "feature_epochs = 1 (paper: 10)",
                # it also cuts the classifiers' and the FD-CNN's data: a cut with zoo models too
                "max_train_points = 500 (paper: all)"):
        assert cut in cuts
    assert profile.to_dict()["nll_samples"] == 10  # pinned in the run's configuration


def test_eval_points_all_is_the_papers_whole_test_split():
    assert profile_of("--eval-points", "all").eval_points is None
    assert profile_of("--eval-points", "ALL", "--profile", "paper").cuts("mnist") == []
    assert profile_of().eval_points == PROFILES["quick"].eval_points  # no override, no change


@pytest.mark.parametrize("argument, message", [
    (["--eval-points", "0"], "--eval-points: must be at least 1, got 0, or 'all'"),
    (["--eval-points", "some"], "--eval-points: expected an integer, got 'some', or 'all'"),
    (["--nll-samples", "0"], "--nll-samples: must be at least 1"),
    (["--fid-points", "1"], "--fid-points: must be at least 2"),
    (["--feature-epochs", "0"], "--feature-epochs: must be at least 1"),
    (["--max-train-points", "-5"], "--max-train-points: must be at least 1"),
    (["--zoo-only", "--train"], "not allowed with argument"),
    (["--zoo-only", "--epochs", "3"], "--zoo-only trains none"),
])
def test_bad_overrides_exit_with_a_clear_message(argument, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        runner.parse_arguments(["--dataset", "mnist", *argument])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


PROVENANCE = {"file": "mnist-beta_vae_beta5.pt", "seed": 0, "all_colours": None,
              "nll_importance_samples": 1000, "nll_points": "first 2000 of the test set",
              "test_nll": 100.5, "test_nll_standard_error": 0.6, "test_elbo": -104.0,
              "test_mse": 800.0}


def test_a_zoo_entrys_recorded_quality_is_reused_only_when_measured_alike():
    same = dict(num_importance_samples=1000, num_points=2000, seed=0, all_colours=False)
    reused = recorded_quality(PROVENANCE, **same)
    assert (reused["nll"], reused["nll_standard_error"], reused["elbo"], reused["mse"]) == (
        100.5, 0.6, -104.0, 800.0)
    assert (reused["num_points"], reused["num_importance_samples"]) == (2000, 1000)
    assert "recorded figures" in reused["source"] and "not recomputed" in reused["source"]
    for change in ({"num_importance_samples": 100}, {"num_points": 1000}, {"seed": 1}):
        assert recorded_quality(PROVENANCE, **(same | change)) is None
    assert recorded_quality(None, **same) is None  # trained in the run
    colour = PROVENANCE | {"all_colours": False}
    assert recorded_quality(colour, **same) is not None
    assert recorded_quality(colour, **(same | {"all_colours": True})) is None
    assert recorded_quality(PROVENANCE | {"test_mse": None}, **same) is None
    assert recorded_quality(PROVENANCE | {"nll_points": "all"}, **same) is None


def test_the_zoo_vae_records_what_a_run_with_its_k_and_points_reuses():
    entry = zoo_index()["mnist-vae_beta1"]
    points = int(entry["nll_points"].split()[1])
    reused = recorded_quality(entry, num_importance_samples=entry["nll_importance_samples"],
                              num_points=points, seed=entry["seed"], all_colours=False)
    assert reused["nll"] == entry["test_nll"] and reused["mse"] == entry["test_mse"]


def test_models_paper_is_the_papers_seven():
    assert runner.model_list("paper") == PAPER_MODELS == PROFILES["paper"].models
    arguments = runner.parse_arguments(["--dataset", "mnist", "--models", "paper"])
    directory = runner.default_run_directory(arguments, runner.run_profile(arguments))
    assert directory.name == "mnist-quick-hmc-paper_models"


def test_zoo_only_names_every_missing_entry_and_its_command_before_any_work(tmp_path):
    out = tmp_path / "run"
    argv = ["--dataset", "mnist", "--models", "paper", "--zoo-only", "--out", str(out),
            "--data-root", str(tmp_path / "no-data")]
    missing = [(kind, beta) for kind, beta in PAPER_MODELS
               if f"mnist-{kind}_beta{beta:g}" not in zoo_index()]
    if not missing:
        pytest.skip("the zoo holds all seven MNIST models")
    with pytest.raises(SystemExit) as stopped:
        runner.main(argv)
    message = str(stopped.value)
    assert message.startswith(f"error: --zoo-only, but the pretrained zoo lacks {len(missing)} "
                              "of the 7 models")
    for kind, beta in missing:
        assert f"mnist-{kind}_beta{beta:g} (no entry): {training_command('mnist', kind, beta)}" \
            in message
    assert "mnist-vae_beta1" not in message  # the zoo has it
    assert not out.exists()  # stopped before the run directory (or the data) was touched


def test_missing_zoo_models_checks_the_entry_and_its_file(tmp_path):
    assert runner.missing_zoo_models("mnist", [("vae", 1.0)], decoder_output="sigmoid",
                                     zoo_dir=ZOO_DIR) == []
    index = {"mnist-vae_beta1": {"file": "mnist-vae_beta1.pt"}}
    (tmp_path / "index.json").write_text(json.dumps(index))
    lines = runner.missing_zoo_models("mnist", [("vae", 1.0), ("beta_tcvae", 2.0)],
                                      decoder_output="sigmoid", zoo_dir=tmp_path)
    assert lines == [
        "mnist-vae_beta1 (its file mnist-vae_beta1.pt is missing): "
        "python -m benchmarks.train --dataset mnist --models vae --zoo",
        "mnist-beta_tcvae_beta2 (no entry): "
        "python -m benchmarks.train --dataset mnist --models beta_tcvae:2 --zoo"]
