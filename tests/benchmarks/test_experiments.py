"""Every experiment of the registry on the smoke profile, in the run directory of the shared
smoke run (so each reuses the ``tables`` stages), with its section, report part and figure."""

import json
import math
import statistics

import jsonschema
import numpy as np
import pytest

from benchmarks import run as runner
from benchmarks.experiments import EXPERIMENTS, Experiment
from benchmarks.schema import RESULTS_SCHEMA

OTHERS = [name for name in EXPERIMENTS if name != "tables"]
FIGURES = {"posterior_ratio": "posterior_ratio.png", "transitions": "robustness_vs_time.png",
           "radius": "radius.png", "objectives": "objectives.png", "samplers": "samplers.png",
           "adaptive": "adaptive.png"}
HEADINGS = {"posterior_ratio": "## Posterior ratio", "transitions": "## Robustness versus the number",
            "radius": "## Robustness against the attack radius",
            "objectives": "## Every attack objective", "samplers": "## Every sampler",
            "adaptive": "## Adaptive attacks on the defence"}


@pytest.fixture(scope="module")
def experiment_runs(smoke_run, smoke_arguments):
    """name → results after ``--experiment name`` in the smoke run's directory."""
    root, out, _ = smoke_run
    return {name: runner.main(smoke_arguments(root, out, "--experiment", name))
            for name in OTHERS}


def test_every_experiment_has_figures_and_headings_listed():
    assert set(FIGURES) == set(HEADINGS) == set(OTHERS)


def dicts_with(node, key: str):
    """Every dictionary under ``node`` (itself included) that has ``key``."""
    if isinstance(node, dict):
        if key in node:
            yield node
        for value in node.values():
            yield from dicts_with(value, key)


def ks_statistic(a, b) -> float:
    """The two-sample Kolmogorov–Smirnov statistic sup |F_a − F_b| over the pooled values."""
    pooled = np.sort(np.concatenate([a, b]))
    cdf = [np.searchsorted(np.sort(sample), pooled, side="right") / len(sample) for sample in (a, b)]
    return float(np.abs(cdf[0] - cdf[1]).max())


GRADIENTS_PER_TRANSITION = {"hmc": "num_leapfrog_steps", "mala": 1, "map": 1}  # not NUTS: its trees


@pytest.mark.slow
@pytest.mark.parametrize("name", OTHERS)
def test_experiment_writes_its_section_report_and_figure(name, experiment_runs, smoke_run):
    """The saved section holds the numbers the run returned, and they agree with each other:
    every (mean, SE) pair is the mean and standard error of the per-reference values beside
    it, one per reference of the experiment; every defence spent chains × (1 + T × gradients
    per transition) evaluations per point by its recorded configuration; the posterior
    ratio's KS statistic is that of its two samples (refs × restarts attacks each)."""
    _, out, _ = smoke_run
    results = experiment_runs[name]
    assert name in results["experiments"] and "tables" in results["experiments"]
    saved = json.loads((out / "results.json").read_text())
    jsonschema.validate(saved, RESULTS_SCHEMA)
    section = saved["experiments"][name]
    assert section == json.loads(json.dumps(results["experiments"][name], default=float))
    profile = results["profile"]
    knobs = section["knobs"] or {}
    references = knobs.get("references", profile["references"])
    summaries = [entry for entry in dicts_with(section, "per_reference")
                 if isinstance(entry["per_reference"], dict)]
    assert summaries or name in ("posterior_ratio", "transitions")
    for summary in summaries:
        for which, values in summary["per_reference"].items():
            assert len(values) == references
            mean, error = summary[which]
            assert mean == pytest.approx(statistics.fmean(values), rel=1e-5, abs=1e-6)
            assert error == pytest.approx(statistics.stdev(values) / math.sqrt(len(values)),
                                          rel=1e-4, abs=1e-6)
    for defence in dicts_with(section, "sampler_config"):
        config = defence["sampler_config"]
        assert config["num_chains"] == profile["num_chains"]
        per_transition = GRADIENTS_PER_TRANSITION.get(config["sampler"])
        if isinstance(per_transition, str):
            per_transition = config[per_transition]
        if per_transition is not None:
            transitions = config["num_warmup"] + config["num_samples"]
            assert defence["gradient_evaluations_per_point"] == (
                config["num_chains"] * (1 + transitions * per_transition))
    if name == "posterior_ratio":
        samples = section["without_defence"], section["with_defence"]
        assert [len(sample) for sample in samples] == [references * profile["restarts"]] * 2
        assert section["ks_statistic"] == pytest.approx(ks_statistic(*samples), abs=1e-9)
    assert HEADINGS[name] in (out / "report.md").read_text()
    assert (out / FIGURES[name]).stat().st_size > 1000


@pytest.mark.slow
def test_experiments_reuse_the_tables_stages(experiment_runs):
    computed = experiment_runs["posterior_ratio"]["experiments"]["posterior_ratio"]
    assert computed["stages_computed"] == ["metrics/vae_beta1_posterior_ratio.json"]


@pytest.mark.slow
def test_transition_curve_counts_gradients_per_leapfrog_step(experiment_runs):
    section = experiment_runs["transitions"]["experiments"]["transitions"]
    leapfrog_steps = experiment_runs["transitions"]["profile"]["num_leapfrog_steps"]
    for point in section["curve"]:  # hmc: L per transition, plus the initial state's
        t = point["transitions"]
        assert point["gradient_evaluations_per_point"] == (t * leapfrog_steps + 1 if t else 0)


@pytest.mark.slow
def test_samplers_share_one_attack_and_differ_in_cost(experiment_runs):
    section = experiment_runs["samplers"]["experiments"]["samplers"]["samplers"]
    plain = {name: scored["groups"]["skl@0.1"]["ms_ssim"]["plain"]
             for name, scored in section.items()}
    assert len({tuple(value) for value in plain.values()}) == 1  # the same attacked inputs
    cost = {name: scored["defence"]["gradient_evaluations_per_point"]
            for name, scored in section.items()}
    assert cost["mala"] < cost["hmc"]


@pytest.mark.slow
def test_samplers_diagnosis_starts_every_mcmc_sampler_at_the_oracle(experiment_runs, smoke_run):
    from inference import SAMPLERS
    _, out, _ = smoke_run
    results = experiment_runs["samplers"]
    section = results["experiments"]["samplers"]
    mcmc = [name for name in section["samplers"] if SAMPLERS[name].mcmc]
    assert mcmc and list(section["diagnosis"]) == mcmc  # MAP is not MCMC: no row
    for per_radius in section["diagnosis"].values():
        assert list(per_radius) == [f"{r:g}" for r in results["profile"]["radii"]]
        for entry in per_radius.values():
            for start in ("guide_start", "oracle_start"):
                mean, error = entry[start]["ms_ssim"]["plain"]
                assert 0 < mean <= 1 and error >= 0
    assert "| oracle − defence |" in (out / "report.md").read_text()


@pytest.mark.slow
def test_rerunning_an_experiment_computes_nothing(experiment_runs, smoke_run, smoke_arguments):
    root, out, _ = smoke_run
    again = runner.main(smoke_arguments(root, out, "--experiment", "radius"))
    assert again["experiments"]["radius"]["stages_computed"] == []
    first = experiment_runs["radius"]["experiments"]["radius"]["groups"]
    assert again["experiments"]["radius"]["groups"] == first


@pytest.mark.slow
def test_adaptive_worst_case_is_no_better_than_any_attack(experiment_runs):
    section = experiment_runs["adaptive"]["experiments"]["adaptive"]
    assert set(section["attacks"]) >= {"skl", "bpda", "unrolled", "unrolled_eot", "detached"}
    # the smoke defence's default mass matrix starts at the encoder's variance; so does the chain
    assert section["attacked_chain"]["mass_matrix"] == "encoder"
    for radius, worst in section["worst_case"].items():
        means = {name: section["groups"][f"{name}@{radius}"]["ms_ssim"]["defended"][0]
                 for name in section["attacks"]}
        assert worst["strongest_mean"][0] == min(means.values())
        assert worst["per_reference_minimum"][0] <= min(means.values()) + 1e-9


def test_adaptive_attacks_need_the_hmc_defence(capsys):
    with pytest.raises(SystemExit):
        runner.parse_arguments(["--dataset", "mnist", "--experiment", "adaptive",
                                "--sampler", "nuts"])
    assert "works with --sampler hmc only" in capsys.readouterr().err


def test_an_experiment_needs_knobs_for_every_profile():
    with pytest.raises(ValueError, match="no knobs for profiles"):
        Experiment("x", "x", run=None, render=None, figure=None, knobs={"smoke": None})


def test_the_registry_refuses_a_second_experiment_of_the_same_name():
    with pytest.raises(ValueError, match="registered twice"):
        EXPERIMENTS.register(EXPERIMENTS["radius"])
