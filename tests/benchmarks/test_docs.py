"""benchmarks.docs: results pages and generated regions rendered from a run's results.json."""

import json

import pytest

from benchmarks import docs

def _page_root(tmp_path, smoke_run, name="mnist-quick-hmc"):
    _, run_dir, _ = smoke_run
    root = tmp_path / "repo"
    docs.collect(run_dir, root / docs.RESULTS_DIR, name=name)
    (root / "docs").mkdir(exist_ok=True)
    (root / "README.md").write_text(
        "# Title\n\nHand-written prose.\n\n<!-- generated: summary -->\nstale\n"
        "<!-- end generated -->\n\nMore prose.\n")
    (root / "docs" / "page.md").write_text(
        f"# Page\n\n<!-- generated: run {name} -->\n<!-- end generated -->\n\n"
        f"<!-- generated: table {name} -->\n<!-- end generated -->\n\n"
        f"<!-- generated: diagnosis {name} -->\n<!-- end generated -->\n\n"
        "<!-- generated: table colormnist-quick-hmc -->\n<!-- end generated -->\n")
    return root


@pytest.mark.slow
def test_a_results_page_is_rendered_from_a_smoke_runs_results(tmp_path, smoke_run):
    root = _page_root(tmp_path, smoke_run)
    assert docs.main(["--root", str(root)]) == 0
    folder = root / "docs" / "results" / "mnist-quick-hmc"
    results = json.loads((folder / "results.json").read_text())
    assert (folder / "examples.png").is_file()
    page = (folder / "README.md").read_text()
    # the facts, one line each
    for label in ("**Run**", "**Command**", "**Commit**", "**Machine**", "**Wall time**"):
        assert sum(line.startswith(f"- {label}") for line in page.splitlines()) == 1
    assert "`python -m benchmarks.run --dataset mnist --profile smoke" in page
    assert results["environment"]["platform"] in page
    wall = results["experiments"]["tables"]["wall_seconds_total"]
    assert f"tables {wall:.0f} s" in page
    # the table with the verdict rows, numbers from results.json
    vae = next(e for e in results["experiments"]["tables"]["models"].values() if e["kind"] == "vae")
    plain = vae["robustness"]["ms_ssim"]["0.1"]["plain"]
    assert f"| VAE (ours) | {plain[0]:.2f} ({plain[1]:.2f})" in page
    assert "| VAE: verdict |" in page and "![examples](examples.png)" in page

    # generated regions are filled, the prose around them kept
    readme = (root / "README.md").read_text()
    assert "Hand-written prose." in readme and "More prose." in readme and "stale" not in readme
    row = next(line for line in readme.splitlines() if line.startswith("| Table 2 (MNIST)"))
    verdict, _ = docs.tables_summary(results)
    assert f"**{verdict}**" in row and f"{plain[0]:.2f} →" in row
    assert "(docs/results/mnist-quick-hmc/README.md)" in row
    assert "| Table 4 (Fashion-MNIST) | not run yet |" in readme  # never a number not measured
    page_md = (root / "docs" / "page.md").read_text()
    assert f"| VAE (ours) | {plain[0]:.2f}" in page_md
    assert "(results/mnist-quick-hmc/README.md)" in page_md
    assert "_Not collected yet." in page_md  # the ColorMNIST run is absent

    # rendering again changes nothing; a hand edit inside a region is stale
    assert docs.main(["--root", str(root), "--check"]) == 0
    (root / "README.md").write_text(readme.replace("| Table 2 (MNIST) |", "| Table 2 |"))
    assert docs.main(["--root", str(root), "--check"]) == 1
    assert docs.main(["--root", str(root)]) == 0
    assert (root / "README.md").read_text() == readme


def test_collect_refuses_a_folder_without_results(tmp_path):
    with pytest.raises(SystemExit, match="results.json"):
        docs.collect(tmp_path, tmp_path / "out")


@pytest.mark.slow
def test_a_commit_in_results_is_shown(tmp_path, smoke_run):
    _, run_dir, _ = smoke_run
    results = json.loads((run_dir / "results.json").read_text())
    for section in results["experiments"].values():  # runs now record it per section;
        section.pop("commit", None)  # the run-level field is the fallback for older runs
        section.pop("uncommitted_files", None)  # (a smoke run from an edited checkout lists them)
    results["commit"] = "abc123"
    assert "- **Commit**: `abc123`." in docs.run_facts("x", results)


def test_the_committed_pages_are_rendered_from_the_committed_results(capsys):
    """README.md and docs/ hold what benchmarks.docs renders from docs/results and the zoo index
    (after a new run or zoo entry: python -m benchmarks.docs)."""
    assert docs.main(["--check"]) == 0, capsys.readouterr().out


def test_commits_and_commands_recorded_per_experiment_are_shown():
    results = {"dataset": "mnist", "sampler": "hmc", "profile": {"name": "quick"},
               "experiments": {"tables": {"commit": "aaa", "command": "python -m benchmarks.run x"},
                               "radius": {"commit": "bbb"}}}
    assert docs._commit(results) == "tables `aaa`, radius `bbb`"
    assert docs.command(results, "tables") == "python -m benchmarks.run x"
    results["experiments"]["radius"]["commit"] = "aaa"
    assert docs._commit(results) == "`aaa`"


def test_a_dirty_commit_names_the_files_that_differed():
    results = {"experiments": {"tables": {"commit": "aaa-dirty", "uncommitted_files": ["a.py", "b.py"]},
                               "radius": {"commit": "aaa", "uncommitted_files": []}}}
    assert docs._commit(results) == "tables `aaa-dirty` (uncommitted: a.py, b.py), radius `aaa`"
    results["experiments"].pop("radius")
    assert docs._commit(results) == "`aaa-dirty` (uncommitted: a.py, b.py)"


def _group(rhat_median, divergence_rate=0.0, accept=0.85, lp=1.01):
    return {"rhat_median": rhat_median, "rhat_p90": rhat_median + 0.1, "lp_rhat_median": lp,
            "ess_bulk_per_1k_grad_median": 12.34, "divergence_rate": divergence_rate,
            "mean_accept_prob": accept}


def test_the_chains_table_shows_the_budget_clean_inputs_and_the_worst_attacked_group():
    defence = {"sampler_config": {"num_chains": 4, "num_warmup": 50, "num_samples": 149,
                                  "num_leapfrog_steps": 10},
               "gradient_evaluations_per_point": 7964.0,
               "diagnostics": {"clean": _group(1.04, accept=0.90),
                               "skl@0.1": _group(1.50, divergence_rate=0.002, lp=1.07),
                               "skl@0.2": _group(1.30, accept=0.80)}}
    results = {"experiments": {"tables": {"models": {"vae_beta1": {"kind": "vae",
                                                                   "defence": defence}}}}}
    runs = {"mnist-quick-hmc": results, "mnist-radius-only": {"experiments": {"radius": {}}}}
    header, rule, *rows = docs.chains_table(runs)
    assert rows == ["| [mnist-quick-hmc](docs/results/mnist-quick-hmc/README.md) "
                    "| 4 × 199 (50) × 10, 7,964 | 1.040 / 1.140, 12.3 | 1.50 / 1.60, 1.070 "
                    "| 0.2% | 0.80–0.90 |"]


def _tables_run(dataset, *, checkpoint=None, provenance=None):
    """A results.json with one VAE at radii 0.1 and 0.2, paired per-reference MS-SSIM."""
    scores = {radius: {"plain": [0.5, 0.02], "defended": [0.6, 0.02],
                       "per_reference": {"plain": [0.4, 0.5, 0.6], "defended": [0.5, 0.6, 0.7]}}
              for radius in ("0.1", "0.2")}
    diagnosis = {radius: {"reference_code_advantage": {"mean": [-12.5, 3.0], "fraction_positive": 0.25},
                          "guide_start": {"ms_ssim": {"plain": [0.60, 0.02]}},
                          "oracle_start": {"ms_ssim": {"plain": [0.65, 0.02]}}}
                 for radius in ("0.1", "0.2")}
    entry = {"kind": "vae", "robustness": {"ms_ssim": scores}, "diagnosis": diagnosis,
             "quality": {"nll": 140.04, "num_importance_samples": 100, "entropy_floor": 76.4},
             "provenance": provenance}
    results = {"dataset": dataset, "profile": {"radii": [0.1, 0.2]},
               "experiments": {"tables": {"models": {"vae_beta1": entry}}}}
    if checkpoint is not None:
        results["checkpoint"] = checkpoint
    return results


def test_presentations_come_from_the_zoo_record_the_checkpoint_record_or_its_folder():
    zoo = _tables_run("colormnist", provenance={"epochs": 30, "all_colours": False})
    assert docs.presentations(zoo) == (30 * 55_000, "30 epochs, one colour per image")
    recorded = _tables_run("colormnist", checkpoint={"path": "a/b/model.pt", "epochs": 14,
                                                     "all_colours": True, "train_points": 385_000})
    assert docs.presentations(recorded) == (14 * 385_000, "14 epochs, all 7 colours")
    by_folder = _tables_run("colormnist", checkpoint={
        "path": "runs/train/colormnist-vae_beta1-allc-e4-seed0/model.pt", "epochs": 4})
    assert docs.presentations(by_folder) == (4 * 7 * 55_000, "4 epochs, all 7 colours")
    one_colour = _tables_run("colormnist", checkpoint={
        "path": "runs/train/colormnist-vae_beta1-e4-seed0/model.pt", "epochs": 4})
    assert docs.presentations(one_colour)[0] == 4 * 55_000


def test_the_training_length_table_has_a_row_per_radius_and_names_missing_runs():
    runs = {"colormnist-zoo": _tables_run("colormnist", provenance={"epochs": 30, "all_colours": False})}
    header, rule, first, second, missing = docs.training_length_table(runs, ["colormnist-zoo", "later"])
    assert first == ("| [colormnist-zoo](docs/results/colormnist-zoo/README.md): 30 epochs, one colour "
                     "per image | 1.65 M | 140.0 (100) / 76.4 | 0.1 | 0.500 → 0.600 (+0.100, 0.000) "
                     "| −12.5 (25%) | +0.050 |")
    assert second.startswith("|  |  |  | 0.2 | 0.500 → 0.600")
    assert missing == "| later | _not collected yet_ | | | | | |"


def test_a_rerendered_section_shows_what_its_computation_took():
    """A report rendered again from the cache (no stage computed) shows the wall time of the
    invocation that computed the stages, or says that it was not recorded; never its own."""
    computed = {"stages_computed": ["chains/vae.pt"], "wall_seconds_total": 3849.2}
    assert docs._wall_time(computed) == "3849 s (64 min)"
    rerendered = {"stages_computed": [], "wall_seconds_total": 0.3,
                  "computed_in": {"commit": "cdfcaa8f00", "wall_seconds_total": 3849.2}}
    assert docs._wall_time(rerendered) == "3849 s (64 min) (computed at commit cdfcaa8)"
    unknown = {"stages_computed": [], "wall_seconds_total": 0.3}
    assert docs._wall_time(unknown).startswith("not recorded")


def test_the_zoo_table_shows_table_7_for_beta_entries_and_a_dash_where_the_paper_has_none():
    def entry(kind, beta, nll):
        return {"dataset": "mnist", "epochs": 30, "train_seconds": 600.0, "test_nll": nll,
                "test_nll_standard_error": 0.5, "test_mse": 420.0, "nll_points": "first 2000",
                "command": "python -m benchmarks.train", "model_config": {"kind": kind, "beta": beta}}

    lines = docs.zoo_table({"mnist-beta_vae_beta10": entry("beta_vae", 10.0, 125.0),
                            "mnist-beta_tcvae_beta10": entry("beta_tcvae", 10.0, 110.0)})
    beta_vae, beta_tcvae = (line.split(" | ") for line in lines[2:])
    assert beta_vae[2:4] == ["30 epochs, training split", "1.65 M"]  # 30 × 55,000 by default
    assert beta_vae[5:9] == ["125.00 (0.50)", "126.8", "420.0", "—"]
    assert beta_tcvae[5:9] == ["110.00 (0.50)", "—", "420.0", "—"]
    colour = entry("vae", 1.0, 140.0) | {"dataset": "colormnist", "all_colours": True,
                                         "train_points": 385_000}
    row = docs.zoo_table({"colormnist-vae_beta1": colour})[2].split(" | ")
    assert row[2:4] == ["30 epochs, all 7 colours", "11.55 M"] and row[6] == "54.87"
