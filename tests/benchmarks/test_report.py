"""The verdict column: ours against the paper in combined standard errors."""

import math

import pytest

from benchmarks.report import parse_published, provenance_lines, quality_table, verdict


@pytest.mark.parametrize("text, expected", [
    ("0.70 (0.02)", (0.70, 0.02)), ("1.00", (1.0, 0.0)), ("578.7", (578.7, 0.0)),
    ("0.45–0.46", (0.455, 0.005)), ("", None)])
def test_published_cells_parse(text, expected):
    parsed = parse_published(text)
    assert parsed == expected if expected is None else parsed == pytest.approx(expected)


def test_verdict_counts_combined_standard_errors():
    # (0.74 − 0.70) / hypot(0.01, 0.02) = 1.79 → within 2
    assert verdict((0.74, 0.01), "0.70 (0.02)") == "✓ +0.04 (1.8 SE)"
    # (0.62 − 0.70) / hypot(0.02, 0.02) = 2.83 → off
    assert verdict((0.62, 0.02), "0.70 (0.02)") == "✗ −0.08 (2.8 SE)"
    assert verdict((0.5, 0.1), "") == ""
    assert verdict((math.nan, math.nan), "0.70 (0.02)") == ""
    assert verdict((1.0, 0.0), "1.00") == "✓ +0.00 (no SE)"


def test_short_chains_table_shows_the_distributions_and_tolerates_older_runs():
    from benchmarks.report import short_chains_table
    new = {"max_rhat": float("inf"), "min_ess_bulk": 3.0, "min_ess_tail": 2.0,
           "mean_accept_prob": 0.8, "num_divergent": 1, "rhat_median": 1.01, "rhat_p90": 1.2,
           "nested_rhat_median": 1.0, "nested_rhat_p90": float("nan"), "nested_rhat_max": None,
           "ess_bulk_median": 40.0, "ess_bulk_p10": 10.0, "ess_tail_median": 30.0,
           "ess_tail_p10": 9.0, "ess_bulk_per_1k_grad_median": 12.5,
           "ess_bulk_per_1k_grad_p10": 3.0, "ess_bulk_per_1k_grad_min": 1.0,
           "ebfmi_median": 0.9, "ebfmi_min": 0.2, "ebfmi_fraction_low": 0.25,
           "lp_rhat_median": 1.002, "lp_rhat_p90": 1.05, "lp_rhat_max": 1.3,
           "divergence_rate": 0.01}
    old = {"max_rhat": 1.1, "min_ess_bulk": 3.0, "min_ess_tail": 2.0, "mean_accept_prob": 0.8,
           "num_divergent": 0}
    lines = short_chains_table([("vae", "clean", new), ("vae", "skl@0.1", old)])
    assert ("| vae | clean | 1.010 / 1.200 / inf | 1.000 / NaN / — | 1.002 / 1.050 / 1.300 "
            "| 40.0 / 10.0 / 3.0 |") in lines[2]
    assert "| 0.90 / 0.20; 25.0% | 1.0% | 0.800 |" in lines[2]
    assert lines[3].startswith("| vae | skl@0.1 | — / — / 1.100 | — / — / — | — / — / — |")


def _quality_entry(kind, beta, nll):
    return {"kind": kind, "beta": beta, "training": {"train_seconds": 60.0},
            "classifier_test_accuracy": {"digit": 0.9},
            "quality": {"nll": nll, "nll_standard_error": 0.5, "entropy_floor": 45.6,
                        "elbo": -nll - 5, "mse": 400.0, "fd_cnn": 1.0, "clamped_share": 0.75,
                        "stuck_share": 0.0001}}


def test_the_quality_table_puts_table_7_beside_each_model_by_kind_and_beta():
    results = {"models": {"vae_beta1": _quality_entry("vae", 1.0, 87.7),
                          "beta_vae_beta5": _quality_entry("beta_vae", 5.0, 99.0),
                          "beta_tcvae_beta5": _quality_entry("beta_tcvae", 5.0, 98.0)}}
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")
            for line in quality_table(results, "mnist")[2:]}
    assert rows["vae_beta1"][2] == "88.30" and rows["vae_beta1"][6] == "578.6"
    assert rows["vae_beta1"][7] == "75.00% / 0.01%"
    assert rows["beta_vae_beta5"][2] == "100.60" and rows["beta_vae_beta5"][6] == "—"
    # the paper's β series is the β-VAE's: no number for the β-TCVAE
    assert rows["beta_tcvae_beta5"][2] == "—"
    assert quality_table(results, "fashionmnist")[2].split(" | ")[2] == "232.80"
    del results["models"]["vae_beta1"]["quality"]["stuck_share"]  # a run from before the column
    assert quality_table(results, "mnist")[2].split(" | ")[7] == "75.00% / —"


def test_the_models_section_names_the_checkpoint_a_model_came_from():
    entry = {"provenance": None, "decoder_output": "sigmoid",
             "training": {"epochs": 30, "train_seconds": 600.0}}
    trained = provenance_lines({"models": {"vae_beta1": entry}})
    assert trained == ["- vae_beta1, decoder output sigmoid: trained in this run, 30 epochs, "
                       "10.0 min of training."]
    checkpoint = {"path": "runs/train/x/model.pt", "sha256": "ab" * 32, "training_commit": "c0ffee" * 7}
    [line] = provenance_lines({"models": {"vae_beta1": entry}, "checkpoint": checkpoint})
    assert "the checkpoint `runs/train/x/model.pt` (sha256 abababababab, training commit c0ffeec0ffee)" in line
    assert "trained in this run" not in line
