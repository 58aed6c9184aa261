"""benchmarks.attack_check on the smoke run's model: figures, defence, caching and errors."""

import json
import math

import pytest
import torch

from benchmarks import attack_check
from benchmarks.stages.metrics import reference_code_advantage
from pyro_vae import ConvVAE, VAEConfig


def check_arguments(root, out, *extra):
    """attack_check on the zoo's MNIST VAE (a trained model, so that attacks do damage)."""
    return ["--dataset", "mnist", "--data-root", str(root), "--out", str(out), "--references",
            "10", "--restarts", "2", "--radii", "0.1", "--no-progress", *extra]


@pytest.fixture(scope="module")
def checked(mnist_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("attack-check")
    summary = attack_check.main(check_arguments(mnist_root, out, "--defend", "hmc",
                                                "--transitions", "4", "--diagnose"))
    return mnist_root, out, summary


@pytest.mark.slow
def test_attacks_lower_similarity_below_the_clean_ceiling(checked):
    *_, summary = checked
    attacks = summary["attacks"]
    ceiling, attacked = attacks["ms_ssim_clean"][0], attacks["ms_ssim"]["0.1"]["plain"][0]
    assert 0 <= attacked < ceiling <= 1
    assert summary["attacked_inputs_per_radius"] == 20
    assert summary["attack_seconds"] > 0
    skl = attacks["attack_objective"]["skl"]["0.1"]
    assert skl["plain"][0] > 0 and len(skl["per_reference"]["plain"]) == 10
    assert attacks["ms_ssim"]["0.1"]["plain"][0] <= attacks["ms_ssim_standard"]["0.1"]["plain"][0]


@pytest.mark.slow
def test_defence_rows_and_report(checked):
    _, out, summary = checked
    defence = summary["defence"]
    assert defence["sampler"] == "hmc" and defence["num_transitions"] == 4
    sampled = defence["robustness"]["ms_ssim"]["0.1"]
    assert sampled["plain"] == summary["attacks"]["ms_ssim"]["0.1"]["plain"]
    assert 0 <= sampled["defended"][0] <= 1
    report = (out / "attack_check.md").read_text()
    assert "Defence: hmc" in report and "| 0.1 |" in report and "oracle" in report
    diagnosis = summary["diagnosis"]["0.1"]
    for start in ("guide_start", "oracle_start"):
        entry = diagnosis[start]
        assert 0 <= entry["ms_ssim"]["plain"][0] <= 1
        assert math.isfinite(entry["log_joint"]["plain"][0])
        assert len(entry["ms_ssim"]["per_reference"]["plain"]) == 10


@pytest.mark.slow
def test_rerun_loads_the_cached_figures(checked):
    root, out, summary = checked
    before = (out / "attacks" / "vae_beta1.pt").stat().st_mtime_ns
    again = attack_check.main(check_arguments(root, out, "--defend", "hmc", "--transitions", "4",
                                              "--diagnose"))
    assert again == json.loads(json.dumps(summary))
    assert (out / "attacks" / "vae_beta1.pt").stat().st_mtime_ns == before


@pytest.mark.slow
def test_another_configuration_is_refused(checked):
    root, out, _ = checked
    with pytest.raises(SystemExit, match="another configuration"):
        attack_check.main(check_arguments(root, out, "--transitions", "8"))


def test_diagnosis_needs_a_defence(capsys):
    with pytest.raises(SystemExit):
        attack_check.parse_arguments(["--dataset", "mnist", "--checkpoint", "m.pt",
                                      "--diagnose"])
    assert "--diagnose needs --defend" in capsys.readouterr().err


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no checkpoint at"):
        attack_check.main(["--dataset", "mnist", "--checkpoint", str(tmp_path / "none.pt")])


def test_reference_code_advantage_is_zero_without_a_perturbation():
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig()).eval()
    x = torch.rand(3, 1, 28, 28)
    advantage = reference_code_advantage(vae, x, x.unsqueeze(1).expand(3, 2, 1, 28, 28))
    assert advantage["mean"][0] == pytest.approx(0.0, abs=1e-4)
    assert advantage["fraction_positive"] == 0.0
