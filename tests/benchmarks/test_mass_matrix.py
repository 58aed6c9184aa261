"""benchmarks.mass_matrix: the mass-matrix sources side by side, each group's figures the
library's own diagnostics summary."""

import pytest

from benchmarks import mass_matrix
from benchmarks.profiles import PROFILES


@pytest.mark.slow
def test_rows_report_the_summary_of_each_group(smoke_run, tmp_path):
    root, run, _ = smoke_run
    summary = mass_matrix.main([
        "--dataset", "mnist", "--checkpoint", str(run / "models" / "beta_vae_beta5.pt"),
        "--references", "4", "--only", "1,3,9", "--out", str(tmp_path), "--data-root", str(root),
        "--no-progress"])
    assert [row["mass_matrix"] for row in summary["rows"]] == ["identity", "encoder",
                                                               "encoder_windowed"]
    quick = PROFILES["quick"]
    evaluations = [quick.num_chains * (quick.num_transitions * quick.num_leapfrog_steps + 1)] * 2
    evaluations.append(2 * (100 * 20 + 1))  # the budget row "2 chains × 100, L = 20"
    for row, expected in zip(summary["rows"], evaluations):
        assert list(row["groups"]) == ["clean", "skl@0.1", "skl@0.1 oracle start"]
        for group in row["groups"].values():
            assert 0 <= group["acceptance"] <= 1 and 0 <= group["divergent_share"] <= 1
            assert 1 <= group["rhat_median"] <= group["rhat_p90"]
            # chains × (transitions × L + the start's evaluation)
            assert group["gradient_evaluations_per_point"] == expected
            assert group["ess_per_1000_evaluations_median"] > 0
    table = (tmp_path / "mass.md").read_text()
    assert table.count("| hmc, dual averaging, encoder mass |") == 3
