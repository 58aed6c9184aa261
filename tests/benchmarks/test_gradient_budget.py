"""benchmarks.gradient_budget: cost in gradient evaluations and the cheapest sufficient setting."""

import pytest

from benchmarks import gradient_budget


@pytest.mark.slow
def test_budget_rows_count_gradient_evaluations(smoke_run, tmp_path):
    root, run, _ = smoke_run
    summary = gradient_budget.main([
        "--dataset", "mnist", "--checkpoint", str(run / "models" / "beta_vae_beta5.pt"),
        "--references", "10", "--only", "hmc paper T=4,map T=20", "--out", str(tmp_path),
        "--data-root", str(root), "--no-progress"])
    rows = {row["label"]: row for row in summary["rows"]}
    # T transitions of L = 20 leapfrog steps each, plus the evaluation at the start
    assert rows["hmc paper T=4"]["gradient_evaluations_per_point"] == 4 * 20 + 1
    assert rows["map T=20"]["gradient_evaluations_per_point"] == 20 + 1
    assert rows["no defence"]["gradient_evaluations_per_point"] == 0
    assert len(rows["hmc paper T=4"]["ms_ssim_per_reference"]) == 10
    assert summary["cheapest"] is None  # the paper budget was not run
    assert (tmp_path / "budget.png").stat().st_size > 1000


def _row(label, sampler, ms_ssim, evaluations):
    """One row of the budget table, as ``main`` records it (standard error 0.02)."""
    return {"label": label, "sampler": sampler, "ms_ssim": (ms_ssim, 0.02),
            "ms_ssim_standard": (ms_ssim, 0.02), "seconds_per_point": 0.0,
            "gradient_evaluations_per_point": evaluations}


def test_cheapest_setting_reaching_the_paper_gain():
    rows = [_row("no defence", None, 0.60, 0),
            _row("hmc paper budget T=250+500", "hmc", 0.80, 15751),
            _row("hmc paper T=20", "hmc", 0.795, 421),
            _row("map T=20", "map", 0.70, 21)]
    best = gradient_budget.cheapest(rows)
    assert best["label"] == "hmc paper T=20" and best["target"] == pytest.approx(0.79)
    assert best["share_of_paper_budget"] == pytest.approx(421 / 15751)


def test_the_cheapest_mcmc_setting_leaves_mode_finding_out():
    rows = [_row("no defence", None, 0.60, 0),
            _row("hmc paper budget T=250+500", "hmc", 0.80, 15001),
            _row("nuts T=20", "nuts", 0.80, 1181),
            _row("map T=200", "map", 0.81, 201)]
    cheapest = gradient_budget.cheapest(rows)
    cheapest_mcmc = gradient_budget.cheapest(rows, mcmc_only=True)
    assert cheapest["label"] == "map T=200"
    assert cheapest_mcmc["label"] == "nuts T=20"
    text = gradient_budget.render({"dataset": "mnist", "radius": 0.2, "references": 50,
                                   "chains": 2, "rows": rows, "cheapest": cheapest,
                                   "cheapest_mcmc": cheapest_mcmc})
    assert "Cheapest setting reaching 95% of the paper-budget gain (MS-SSIM ≥ 0.790): map T=200" in text
    assert "Cheapest MCMC setting reaching 95% of the paper-budget gain (MS-SSIM ≥ 0.790): nuts T=20" in text


def test_unknown_settings_are_refused(capsys):
    with pytest.raises(SystemExit):
        gradient_budget.parse_arguments(["--dataset", "mnist", "--only", "hmc T=3"])
    assert "unknown settings" in capsys.readouterr().err
