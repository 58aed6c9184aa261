"""``python -m benchmarks.docs``: the results pages and the README's summary, rendered from runs.

Committed results live in ``docs/results/<run>/``: the run's ``results.json`` and its figures,
copied there by ``--collect runs/<run>`` (never the run folder itself). From them this command
writes

- ``docs/results/<run>/README.md``: the run's page (what ran, the command, the commit, the machine
  and the wall time, one line each; then every experiment's tables as ``report.md`` lays them out,
  verdicts included), and
- every generated region of ``README.md`` and ``docs/**/*.md``: the lines between
  ``<!-- generated: DIRECTIVE -->`` and ``<!-- end generated -->``. Prose outside the markers is
  hand-written and left alone.

Directives: ``summary`` (the paper's tables and figures with verdicts and headline numbers),
``runs`` (every collected run with a link to its page), ``chains`` (each main job's chain
diagnostics, clean and worst attacked group),
``run RUN`` (the run's one-line facts), ``table RUN`` (the robustness table with verdicts),
``diagnosis RUN``, ``experiment RUN NAME`` (one experiment's section), ``figure RUN FILE
[FALLBACK]`` (a collected figure, else the fallback path), ``zoo`` (the pretrained zoo from
``pyro_vae/zoo/index.json``). A directive whose run has not been collected renders the
commands that would make it, so a page never shows a number its run did not produce.

    python -m benchmarks.docs --collect runs/mnist-quick-hmc   # copy, then re-render everything
    python -m benchmarks.docs                                  # re-render from docs/results
    python -m benchmarks.docs --check                          # exit 1 if a page is stale
"""

from __future__ import annotations

import argparse
import json
import math
import os
import posixpath
import re
import shutil
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from . import report

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path("docs") / "results"
MARKER = re.compile(r"(<!-- generated: (?P<directive>[^>]*?) -->\n)(?P<body>.*?)"
                    r"(<!-- end generated -->)",
                    re.DOTALL)
FIGURES = ("examples.png", "posterior_ratio.png", "robustness_vs_time.png", "radius.png",
           "objectives.png", "samplers.png", "adaptive.png")
# ``--flag`` of benchmarks.run for each profile field it can override
OVERRIDE_FLAGS = {"epochs": "--epochs", "references": "--references", "restarts": "--restarts",
                  "num_transitions": "--transitions", "num_leapfrog_steps": "--leapfrog-steps",
                  "step_size": "--step-size", "num_chains": "--chains", "radii": "--radii",
                  "models": "--models", "max_train_points": "--max-train-points",
                  "eval_points": "--eval-points", "nll_samples": "--nll-samples",
                  "fid_points": "--fid-points", "feature_epochs": "--feature-epochs"}
DATASET_LABEL = {"mnist": "MNIST", "fashionmnist": "Fashion-MNIST", "colormnist": "ColorMNIST"}
# Table 7 of the paper, −log p(x) of the β = 1 VAE (PROTOCOL.md §9)
PAPER_NLL = {dataset: report.paper_table7(dataset, "vae", 1.0)[0] for dataset in DATASET_LABEL}
PAPER_KS_PVALUE = 0.029  # Figure 2: the paper's KS test on the posterior ratio, 500 attacks


# --------------------------------------------------------------------------------------------
# collected runs


def collect(run_dir: Path, results_root: Path, name: str | None = None) -> Path:
    """Copy ``run_dir``'s ``results.json`` and figures to ``results_root/<name>/`` (default: the
    run folder's name)."""
    source = Path(run_dir) / "results.json"
    if not source.is_file():
        raise SystemExit(f"error: {source} does not exist; run benchmarks.run first")
    target = Path(results_root) / (name or Path(run_dir).resolve().name)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target / "results.json")
    for name in FIGURES:
        if (Path(run_dir) / name).is_file():
            shutil.copyfile(Path(run_dir) / name, target / name)
    return target


def load_runs(results_root: Path) -> dict[str, dict]:
    """Run name → its ``results.json``, for every collected run."""
    runs = {}
    for path in sorted(Path(results_root).glob("*/results.json")):
        runs[path.parent.name] = {**json.loads(path.read_text()), "_folder": str(path.parent)}
    return runs


# --------------------------------------------------------------------------------------------
# one-line facts of a run


def _models_form(models) -> str:
    return ",".join(kind if beta == 1 else f"{kind}:{beta:g}" for kind, beta in models)


def command(results: dict, experiment: str | None = None) -> str:
    """The ``benchmarks.run`` command of ``results`` (as recorded, or rebuilt from its settings:
    every profile field that differs from the named profile becomes its override flag)."""
    section = results.get("experiments", {}).get(experiment or "tables", {})
    if section.get("command"):  # as benchmarks.run recorded it for this experiment
        return section["command"]
    recorded = results.get("command")
    if recorded and experiment in (None, "tables"):
        return recorded
    from .profiles import PROFILES  # the profile defaults the overrides are measured against

    profile = results["profile"]
    words = ["python -m benchmarks.run", "--dataset", results["dataset"]]
    if experiment and experiment != "tables":
        words += ["--experiment", experiment]
    if profile["name"] != "quick":
        words += ["--profile", profile["name"]]
    if results["sampler"] != "hmc":
        words += ["--sampler", results["sampler"]]
    if results.get("decoder_output", "sigmoid") != "sigmoid":
        words += ["--decoder-output", results["decoder_output"]]
    if results.get("model_source") == "train":
        words.append("--train")
    if results.get("model_source") == "checkpoint":
        words += ["--checkpoint", results["checkpoint"]["path"]]
    if results.get("seed", 0) != 0:
        words += ["--seed", str(results["seed"])]
    defaults = PROFILES[profile["name"]].to_dict() if profile["name"] in PROFILES else {}
    for field, flag in OVERRIDE_FLAGS.items():
        value, default = profile.get(field), defaults.get(field)
        if field not in defaults or _same(value, default):
            continue
        if field == "models":
            shown = _models_form(value)
        elif field == "radii":
            shown = ",".join(f"{r:g}" for r in value)
        elif value is None:
            shown = "all"
        else:
            shown = f"{value:g}" if isinstance(value, float) else str(value)
        words += [flag, shown]
    words += ["--data-root", "../shared/data"]
    return " ".join(words)


def _same(value, default) -> bool:
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return len(value) == len(default) and all(_same(a, b) for a, b in zip(value, default))
    return value == default


def _commit(results: dict) -> str:
    """The run's commit; per experiment when its sections were run at different commits. A
    '-dirty' commit is followed by the files that differed from it, where the run recorded them."""
    fallback = results.get("commit") or results.get("environment", {}).get("commit")

    def label(section: dict) -> str | None:
        commit = section.get("commit") or fallback
        changed = section.get("uncommitted_files")
        if commit is None:
            return None
        return f"`{commit}`" + (f" (uncommitted: {', '.join(changed)})" if changed else "")

    labels = {name: label(section) for name, section in results.get("experiments", {}).items()}
    known = set(labels.values()) - {None}
    if not known:
        return "not recorded in results.json"
    if len(known) == 1 and None not in labels.values():
        return known.pop()
    return ", ".join(f"{name} {text}" if text else f"{name} not recorded" for name, text in labels.items())


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value < 600 else f"{value:.0f} s ({value / 60:.0f} min)"


def _wall_time(section: dict) -> str:
    """What the section's computation took: its own wall time, or that of the invocation that
    computed its stages when this one rendered them again from the cache."""
    if section.get("stages_computed", True):
        return _seconds(section["wall_seconds_total"])
    computed = section.get("computed_in")
    if computed is None:
        return "not recorded (every stage reused from an earlier invocation)"
    return f"{_seconds(computed['wall_seconds_total'])} (computed at commit {computed['commit'][:7]})"


def run_facts(name: str, results: dict) -> list[str]:
    """The run's facts, one line each: configuration, command, commit, machine, wall time."""
    environment = results.get("environment", {})
    packages = environment.get("packages", {})
    versions = ", ".join(f"{p} {v}" for p, v in packages.items()
                         if v and p in ("torch", "pyro-ppl"))
    sections = results.get("experiments", {})
    walls = ", ".join(f"{experiment} {_wall_time(section)}" for experiment, section in sections.items())
    profile = results["profile"]
    return [
        f"- **Run**: `{name}`: {DATASET_LABEL.get(results['dataset'], results['dataset'])}, "
        f"profile `{profile['name']}`, sampler `{results['sampler']}`, decoder output "
        f"`{results.get('decoder_output', 'sigmoid')}`, model source "
        f"`{results.get('model_source', '?')}`, "
        f"{profile['references']} references × {profile['restarts']} "
        f"attack{'s' if profile['restarts'] != 1 else ''} each.",
        "- **Command**: " + "; ".join(f"`{command(results, experiment)}`"
                                      for experiment in sections) + ".",
        f"- **Commit**: {_commit(results)}.",
        f"- **Machine**: {environment.get('device', '?')}, {environment.get('threads', '?')} "
        f"torch thread(s), {environment.get('platform', '?')}, Python "
        f"{environment.get('python', '?')}, {versions}.",
        f"- **Wall time**: {walls}.",
        *_checkpoint_facts(results),
    ]


def _checkpoint_facts(results: dict) -> list[str]:
    """The ``--checkpoint`` model's line: what the file is and the training that made it."""
    checkpoint = results.get("checkpoint")
    if checkpoint is None:
        return []
    return [f"- **Model**: `{checkpoint['path']}` ({checkpoint['kind']} β={checkpoint['beta']:g}, "
            f"{checkpoint.get('epochs')} epochs, training commit "
            f"`{checkpoint.get('training_commit')}`, sha256 `{checkpoint['sha256'][:12]}`)."]


# --------------------------------------------------------------------------------------------
# numbers the summary needs


def _paired_gain(entry: dict) -> tuple[float, float]:
    """Defended minus undefended mean, with the standard error of the paired differences over
    references (falls back to the two standard errors combined)."""
    plain, defended = entry["plain"][0], entry["defended"][0]
    per_reference = entry.get("per_reference") or {}
    a, b = per_reference.get("plain"), per_reference.get("defended")
    if a and b and len(a) == len(b) and len(a) > 1:
        differences = [y - x for x, y in zip(a, b)]
        return defended - plain, statistics.stdev(differences) / math.sqrt(len(differences))
    return defended - plain, math.hypot(_finite(entry["plain"][1]), _finite(entry["defended"][1]))


def _finite(value) -> float:
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _signed(value: float, digits: int = 2) -> str:
    return f"{value:+.{digits}f}".replace("-", "−")


def _vae_entry(results: dict) -> dict:
    models = results["experiments"]["tables"]["models"]
    return next((entry for entry in models.values() if entry["kind"] == "vae"),
                next(iter(models.values())))


def tables_summary(results: dict) -> tuple[str, str]:
    """(verdict, headline) of the paper's Table 2/3/4 from the ``tables`` section.

    reproduced: every MS-SSIM cell of the VAE and VAE + HMC rows within 2 standard errors of
    the paper; partly: the defence raises MS-SSIM by more than 2 standard errors at every radius,
    but some cell is further from the paper; not reproduced: otherwise."""
    entry = _vae_entry(results)
    paper = report.PAPER_TABLE[results["dataset"]]
    radii = [f"{r:g}" for r in results["profile"]["radii"]]
    cells_within, gains_up, ours, theirs = [], [], [], []
    for index, radius in enumerate(radii):
        scores = entry["robustness"]["ms_ssim"][radius]
        for defended, row in ((False, "VAE"), (True, "VAE + HMC")):
            value = scores["defended" if defended else "plain"]
            cells_within.append(report.verdict(value, paper[row][index]).startswith("✓"))
        gain, error = _paired_gain(scores)
        gains_up.append(gain > 2 * error)
        paper_plain = report.parse_published(paper["VAE"][index])[0]
        paper_defended = report.parse_published(paper["VAE + HMC"][index])[0]
        ours.append(f"{scores['plain'][0]:.2f} → {scores['defended'][0]:.2f}")
        theirs.append(f"{paper_plain:.2f} → {paper_defended:.2f}")
    if all(cells_within):
        verdict = "reproduced"
    elif all(gains_up):
        verdict = "partly"
    else:
        verdict = "not reproduced"
    headline = "; ".join(f"ε = {r}: {o} (paper {t})" for r, o, t in zip(radii, ours, theirs))
    return verdict, "MS-SSIM without → with the defence, " + headline


def posterior_ratio_summary(results: dict) -> tuple[str, str]:
    """reproduced: the defence lowers the median log ratio and the KS test separates the two."""
    section = results["experiments"]["posterior_ratio"]
    # the lower median, as the report's (torch's) median
    before, after = (statistics.median_low(section[key]) for key in ("without_defence",
                                                                     "with_defence"))
    p_value = section["ks_pvalue"]
    verdict = "reproduced" if after < before and p_value < 0.05 else "not reproduced"
    return verdict, (f"median log ratio {before:.1f} → {after:.1f} nats; KS p = {p_value:.2g} "
                     f"(paper p = {PAPER_KS_PVALUE})")


def transitions_summary(results: dict) -> tuple[str, str]:
    """reproduced: robustness grows with T (the last T above T = 0 by 2 standard errors) and the
    last T is within 2 standard errors of T = 100 (the paper: little gain beyond T = 100)."""
    curve = {point["transitions"]: point["ms_ssim"] for point in
             results["experiments"]["transitions"]["curve"]}
    first, last = curve[min(curve)], curve[max(curve)]

    def apart(a, b) -> float:
        return 2 * math.hypot(_finite(a[1]), _finite(b[1]))

    grows = last[0] - first[0] > apart(first, last)
    middle = curve.get(100)
    flat = middle is None or abs(last[0] - middle[0]) <= apart(middle, last)
    verdict = "reproduced" if grows and flat else ("partly" if grows else "not reproduced")
    shown = sorted({min(curve), *([100] if middle is not None else []), max(curve)})
    return verdict, "MS-SSIM " + ", ".join(f"{curve[t][0]:.2f} at T = {t}" for t in shown)


def _scored_gains(section: dict) -> dict[str, tuple[float, float]]:
    return {name: _paired_gain(group["ms_ssim"]) for name, group in section["groups"].items()}


def radius_summary(results: dict) -> tuple[str, str]:
    """reproduced: the defence raises MS-SSIM at every radius from 0.05 up."""
    gains = _scored_gains(results["experiments"]["radius"])
    shown = {name: gain for name, gain in gains.items() if _radius_of(name) >= 0.05}
    verdict = "reproduced" if all(g > 0 for g, _ in shown.values()) else "not reproduced"
    return verdict, "gain " + ", ".join(f"{_signed(g)} at ε = {_radius_of(n):g}"
                                        for n, (g, _) in shown.items())


def _radius_of(group: str) -> float:
    return float(group.rpartition("@")[2]) if "@" in group else float(group)


def objectives_summary(results: dict) -> tuple[str, str]:
    """reproduced: the defence raises MS-SSIM against every objective."""
    gains = _scored_gains(results["experiments"]["objectives"])
    verdict = "reproduced" if all(g > 0 for g, _ in gains.values()) else "not reproduced"
    values = [g for g, _ in gains.values()]
    return verdict, (f"gain {_signed(min(values))} to {_signed(max(values))} over "
                     f"{len(values)} objectives")


def adaptive_summary(results: dict) -> tuple[str, str]:
    """The paper's claim: an attacker who differentiates through the chain faces a much harder
    problem (their attack detached the chain). refuted: at some radius the strongest attack
    (lowest mean defended MS-SSIM) is below the authors' detached attack by more than 2 standard
    errors, i.e. the defence is weaker than their attack measured."""
    section = results["experiments"]["adaptive"]
    refuted, parts = False, []
    for radius in section["radii"]:
        key = f"{radius:g}"
        worst = section["worst_case"][key]
        strongest = worst["strongest_mean"]
        detached = section["groups"].get(f"detached@{key}")
        part = (f"ε = {key}: strongest attack {strongest[0]:.2f}, worst case per reference "
                f"{worst['per_reference_minimum'][0]:.2f}")
        if detached is not None:
            value = detached["ms_ssim"]["defended"]
            refuted |= value[0] - strongest[0] > 2 * math.hypot(_finite(value[1]),
                                                                _finite(strongest[1]))
            part += f", the authors' detached attack {value[0]:.2f}"
        parts.append(part)
    verdict = "refuted" if refuted else "not refuted"
    return verdict, "defended MS-SSIM, " + "; ".join(parts)


def hvae_summary(results: dict) -> tuple[str, str]:
    """The paper (Figure 4, NVAE) shows the defence raising similarity for a hierarchical VAE;
    reproduced: it raises MS-SSIM at every radius by more than 2 standard errors, partly: at
    some radius."""
    entry = _vae_entry(results)
    gains = {radius: _paired_gain(scores)
             for radius, scores in entry["robustness"]["ms_ssim"].items()}
    up = [g > 2 * e for g, e in gains.values()]
    verdict = "reproduced" if all(up) else ("partly" if any(up) else "not reproduced")
    return verdict, "gain " + ", ".join(f"{_signed(g)} at ε = {r}" for r, (g, _) in gains.items())


# (paper item, run, experiment, summariser); the README's summary table lists them in this order
SUMMARY_ITEMS: tuple[tuple[str, str, str, Callable[[dict], tuple[str, str]]], ...] = (
    ("Table 2 (MNIST)", "mnist-quick-hmc", "tables", tables_summary),
    ("Table 3 (ColorMNIST, the zoo's one-colour model, our sigmoid decoder)",
     "colormnist-quick-hmc", "tables", tables_summary),
    ("Table 3 (ColorMNIST, the paper's all-colour data, 30 epochs, our sigmoid decoder)",
     "colormnist-quick-hmc-allc-e30", "tables", tables_summary),
    ("Table 3 (ColorMNIST, the zoo's one-colour model, the authors' identity decoder)",
     "colormnist-quick-hmc-identity", "tables", tables_summary),
    ("Table 4 (Fashion-MNIST)", "fashionmnist-quick-hmc", "tables", tables_summary),
    ("Figure 2 (posterior ratio, eq. 11)", "mnist-quick-hmc", "posterior_ratio",
     posterior_ratio_summary),
    ("Figure 6, Table 5 (robustness against T)", "mnist-quick-hmc", "transitions",
     transitions_summary),
    ("Figure 13 (attack radius)", "mnist-quick-hmc", "radius", radius_summary),
    ("Figure 16 (every attack objective)", "mnist-quick-hmc", "objectives", objectives_summary),
    ("Figure 4 (hierarchical VAE)", "mnist-quick-hmc-hvae_beta1", "tables", hvae_summary),
    ("Section 4.4 (attacks that know the defence)", "mnist-quick-hmc", "adaptive",
     adaptive_summary),
)


def _page_link(run: str, base: str) -> str:
    return f"[{run}]({base}{run}/README.md)"


def summary_table(runs: dict[str, dict], base: str = "docs/results/") -> list[str]:
    """The README's table: per paper item, the verdict, ours against the paper, the page."""
    lines = ["| paper | verdict | ours against the paper | results page |", "|---|---|---|---|"]
    for item, run, experiment, summarise in SUMMARY_ITEMS:
        results = runs.get(run)
        if results is None or experiment not in results.get("experiments", {}):
            lines.append(f"| {item} | not run yet | — | `{_planned_command(run, experiment)}` |")
            continue
        verdict, headline = summarise(results)
        lines.append(f"| {item} | **{verdict}** | {headline} | {_page_link(run, base)} |")
    lines.append(zoo_summary_row(base))
    return lines


def chains_table(runs: dict[str, dict], base: str = "docs/results/") -> list[str]:
    """Do the main jobs' chains converge? Per collected run with the tables, its VAE's defence:
    the budget, then each point's worst-coordinate R-hat (median / p90 over points), its bulk
    ESS per 1,000 gradient evaluations (median), on clean inputs and on the attacked group with
    the highest median R-hat (with its log-joint R-hat, which tells a posterior not yet crossed
    from chains in worse modes), and the largest divergent share and the range of acceptance
    over all groups."""
    lines = ["| run | chains × transitions (warm-up) × L, evaluations per input | clean: R-hat "
             "median / p90, ESS per 1k | worst attacked group: R-hat median / p90, log-p R-hat "
             "median | divergent (max) | acceptance |", "|---|---|---|---|---|---|"]
    for name, results in runs.items():
        if "tables" not in results.get("experiments", {}):
            continue
        defence = _vae_entry(results)["defence"]
        config, groups = defence["sampler_config"], defence["diagnostics"]
        budget = (f"{config['num_chains']} × {config['num_warmup'] + config['num_samples']} "
                  f"({config['num_warmup']}) × {config['num_leapfrog_steps']}, "
                  f"{defence['gradient_evaluations_per_point']:,.0f}")
        clean = groups["clean"]
        attacked = max((g for key, g in groups.items() if key != "clean"),
                       key=lambda g: g["rhat_median"])
        lp = attacked.get("lp_rhat_median")
        acceptance = [g["mean_accept_prob"] for g in groups.values()]
        lines.append(
            f"| {_page_link(name, base)} | {budget} | {clean['rhat_median']:.3f} / "
            f"{clean['rhat_p90']:.3f}, {clean['ess_bulk_per_1k_grad_median']:.1f} | "
            f"{attacked['rhat_median']:.2f} / {attacked['rhat_p90']:.2f}, "
            f"{'—' if lp is None else f'{lp:.3f}'} | "
            f"{max(g['divergence_rate'] for g in groups.values()):.1%} | "
            f"{min(acceptance):.2f}–{max(acceptance):.2f} |")
    return lines


# Training images per colour when a checkpoint does not record them: the training split of
# pyro_vae.load_dataset (60,000 less its 5,000 validation images).
DEFAULT_TRAIN_POINTS = 55_000


def presentations(results: dict) -> tuple[int | None, str]:
    """(image presentations seen in training, how the training data was drawn) of the run's VAE:
    epochs × images per epoch, from the zoo entry's provenance or the ``--checkpoint`` record.
    A checkpoint that does not record its colour distribution is read by benchmarks.train's
    folder name, ``-allc-`` for all colours."""
    checkpoint = results.get("checkpoint")
    source = checkpoint if checkpoint is not None else _vae_entry(results).get("provenance") or {}
    if (source.get("all_colours") is None and checkpoint is not None
            and results["dataset"] == "colormnist"):
        source = {**source, "all_colours": "-allc-" in Path(checkpoint["path"]).parent.name + "-"}
    return training_presentations(source, results["dataset"])


def training_presentations(source: dict, dataset: str) -> tuple[int | None, str]:
    """(presentations, recipe) from a training record (zoo provenance or checkpoint metadata):
    epochs × its ``train_points``, or × the default training split where it does not record
    them (7 copies of it for all-colour ColorMNIST)."""
    from pyro_vae.data import NUM_COLOURS  # torch; only when a page has this table

    epochs, all_colours = source.get("epochs"), source.get("all_colours")
    per_epoch = source.get("train_points") or DEFAULT_TRAIN_POINTS * (NUM_COLOURS if all_colours else 1)
    drawn = ("all 7 colours" if all_colours else "one colour per image") if (
        dataset == "colormnist") else "training split"
    return (None if epochs is None else epochs * per_epoch), f"{epochs} epochs, {drawn}"


def training_length_table(runs: dict[str, dict], names: list[str], base: str = "docs/results/") -> list[str]:
    """Does longer training change the defence? One block of rows per run (same protocol,
    different models): presentations, the test NLL beside the likelihood's entropy floor on the
    same images, and per radius the MS-SSIM without → with the defence (paired gain), the
    reference-code advantage (> 0: only the encoder was fooled) and the oracle-start chains'
    MS-SSIM minus the defence's (what a perfect sampler would add)."""
    lines = ["| model | presentations | test NLL (k) / entropy floor | ε | MS-SSIM without → with "
             "the defence (gain, SE) | reference-code advantage, nats (share > 0) | oracle − "
             "defence MS-SSIM |", "|---|---|---|---|---|---|---|"]
    for name in names:
        results = runs.get(name)
        if results is None or "tables" not in results.get("experiments", {}):
            lines.append(f"| {name} | _not collected yet_ | | | | | |")
            continue
        entry = _vae_entry(results)
        seen, recipe = presentations(results)
        quality = entry["quality"]
        for index, radius in enumerate(f"{r:g}" for r in results["profile"]["radii"]):
            scores = entry["robustness"]["ms_ssim"][radius]
            gain, error = _paired_gain(scores)
            diagnosis = entry.get("diagnosis", {}).get(radius)
            if diagnosis is None:
                advantage = oracle = "—"
            else:
                mean = diagnosis["reference_code_advantage"]["mean"][0]
                share = diagnosis["reference_code_advantage"]["fraction_positive"]
                advantage = f"{_signed(mean, 1)} ({share:.0%})"
                oracle = _signed(diagnosis["oracle_start"]["ms_ssim"]["plain"][0]
                                 - diagnosis["guide_start"]["ms_ssim"]["plain"][0], 3)
            first = index == 0
            model = f"{_page_link(name, base)}: {recipe}" if first else ""
            seen_cell = (f"{seen / 1e6:.2f} M" if seen else "?") if first else ""
            nll = (f"{quality['nll']:.1f} ({quality['num_importance_samples']}) / "
                   f"{quality['entropy_floor']:.1f}") if first and "entropy_floor" in quality else ""
            lines.append(f"| {model} | {seen_cell} | {nll} | {radius} | {scores['plain'][0]:.3f} → "
                         f"{scores['defended'][0]:.3f} ({_signed(gain, 3)}, {error:.3f}) | "
                         f"{advantage} | {oracle} |")
    return lines


def _planned_command(run: str, experiment: str) -> str:
    """The command that makes ``run``'s ``experiment`` (for runs not collected yet)."""
    dataset, _, rest = run.partition("-quick-hmc")
    words = ["python -m benchmarks.run --dataset", dataset]
    if experiment != "tables":
        words += ["--experiment", experiment]
    if rest == "-identity":
        words += ["--decoder-output identity"]
    elif rest.startswith("-hvae"):
        words += ["--models hvae --radii 0.05,0.1,0.2"]
    return " ".join([*words, "--data-root ../shared/data"])


# --------------------------------------------------------------------------------------------
# the zoo (pyro_vae/zoo/index.json)


def zoo_index() -> dict:
    return json.loads((REPO_ROOT / "pyro_vae" / "zoo" / "index.json").read_text())


def zoo_summary_row(base: str = "docs/results/") -> str:
    index = zoo_index()
    parts, verdicts = [], []
    for dataset, label in DATASET_LABEL.items():
        entry = index.get(f"{dataset}-vae_beta1")
        if entry is None:
            continue
        gap = (entry["test_nll"] - PAPER_NLL[dataset]) / entry["test_nll_standard_error"]
        verdicts.append(gap <= 2)
        decoder = entry.get("model_config", {}).get("decoder_output", "sigmoid")
        note = " (our sigmoid decoder; the paper's is identity)" if (
            dataset == "colormnist" and decoder != "identity") else ""
        parts.append(f"{label} {entry['test_nll']:.2f}{note} (paper {PAPER_NLL[dataset]})")
    verdict = "reproduced" if all(verdicts) else ("partly" if any(verdicts) else "not reproduced")
    return (f"| Table 7 (test NLL of the β = 1 VAE) | **{verdict}** | {'; '.join(parts)} | "
            f"[the zoo]({posixpath.normpath(base + '../zoo.md')}) |")


def zoo_table(index: dict | None = None) -> list[str]:
    """The zoo's entries (``index`` default: pyro_vae/zoo/index.json) with the paper's Table 7
    beside each (— where it has none)."""
    def number(value: float | None) -> str:
        return "—" if value is None else f"{value:g}"

    lines = ["| entry | decoder output | training | presentations | training wall time | "
             "test NLL, k = 1000 (SE) | paper NLL (Table 7) | test MSE | paper MSE | test points | "
             "command |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in (zoo_index() if index is None else index).items():
        config = entry.get("model_config", {})
        paper_nll, paper_mse = report.paper_table7(entry["dataset"], config.get("kind"),
                                                    config.get("beta", 1.0))
        seen, recipe = training_presentations(entry, entry["dataset"])
        lines.append(
            f"| `{name}` | {config.get('decoder_output', 'sigmoid')} | {recipe} | "
            f"{seen / 1e6:.2f} M | {entry['train_seconds'] / 60:.0f} min | {entry['test_nll']:.2f} "
            f"({entry['test_nll_standard_error']:.2f}) | {number(paper_nll)} | "
            f"{entry['test_mse']:.1f} | {number(paper_mse)} | {entry['nll_points']} | "
            f"`{entry['command']}` |")
    return lines


# --------------------------------------------------------------------------------------------
# directives and pages


def _renderers() -> dict:
    from .experiments import EXPERIMENTS  # heavy (torch); only when a page needs it

    return {name: experiment.render for name, experiment in EXPERIMENTS.items()}


def _missing(run: str, experiment: str = "tables") -> list[str]:
    return [f"_Not collected yet. Run `{_planned_command(run, experiment)}`, then "
            f"`python -m benchmarks.docs --collect runs/{run}`._"]


def _with_figures(lines: list[str], run: str, base: str) -> list[str]:
    """Figure links of a report section, made relative to the page at ``base``."""
    prefix = f"{base}{run}/"
    return [re.sub(r"\]\(([a-z_]+\.png)\)", lambda m: f"]({prefix}{m[1]})", line)
            for line in lines]


def directive(text: str, runs: dict[str, dict], *, base: str) -> list[str]:
    """The lines of one ``<!-- generated: ... -->`` region; ``base`` is the results folder
    relative to the page being written."""
    words = text.split()
    kind, arguments = words[0], words[1:]
    if kind == "summary":
        return summary_table(runs, base=base)
    if kind == "zoo":
        return zoo_table()
    if kind == "chains":
        return chains_table(runs, base=base)
    if kind == "training-length":  # training-length RUN RUN ...
        return training_length_table(runs, arguments, base=base)
    if kind == "runs":
        return ["| run | dataset | profile | sampler | decoder output | experiments |",
                "|---|---|---|---|---|---|", *(
                    f"| {_page_link(name, base)} | {DATASET_LABEL.get(r['dataset'], r['dataset'])} "
                    f"| {r['profile']['name']} | {r['sampler']} | {r.get('decoder_output', '')} | "
                    f"{', '.join(r['experiments'])} |" for name, r in runs.items())] \
            if runs else ["_No run collected yet._"]
    run = arguments[0]
    if kind == "figure":  # figure RUN FILE [FALLBACK, relative to the page]
        if (run in runs and len(arguments) > 1
                and (Path(runs[run].get("_folder", "")) / arguments[1]).is_file()):
            return [f"![{run}]({base}{run}/{arguments[1]})"]
        return [f"![{run}]({arguments[2]})"] if len(arguments) > 2 else \
            _missing(run)
    results = runs.get(run)
    experiment = arguments[1] if kind == "experiment" else "tables"
    if results is None or experiment not in results.get("experiments", {}):
        return _missing(run, experiment)
    merged = {**results, **results["experiments"]["tables"]} if "tables" in results[
        "experiments"] else results
    if kind == "run":
        return run_facts(run, results) + ["", f"Full page: {_page_link(run, base)}."]
    if kind == "table":
        return report.robustness_table(merged)
    if kind == "diagnosis":
        entry = _vae_entry(results)
        return report.diagnosis_lines(entry["diagnosis"]) if "diagnosis" in entry else [
            "_This run has no diagnosis section._"]
    if kind == "experiment":
        section = results["experiments"][experiment]
        lines = _renderers()[experiment](results, section)
        if lines and lines[0].startswith("#"):
            lines = lines[1:]  # the page's own heading replaces the report's
        while lines and not lines[0].strip():
            lines = lines[1:]
        while lines and not lines[-1].strip():
            lines = lines[:-1]
        facts = f"`{command(results, experiment)}`: {_wall_time(section)}."
        return [facts, "", *_with_figures(lines, run, base)]
    raise ValueError(f"unknown directive {text!r}")


def run_page(name: str, results: dict) -> str:
    """``docs/results/<run>/README.md``: the facts, then every experiment's section."""
    renderers = _renderers()
    dataset = DATASET_LABEL.get(results["dataset"], results["dataset"])
    lines = [f"# Results: {dataset}, `{name}`", "",
             "<!-- Written by `python -m benchmarks.docs` from results.json beside this page; "
             "do not edit. -->", "", *run_facts(name, results), ""]
    for experiment, section in results["experiments"].items():
        lines += renderers[experiment](results, section)
    lines += ["## Differences from the paper's protocol", "",
              *[f"- {note}" for note in results.get("protocol_notes", [])], ""]
    return "\n".join(lines)


def fill(text: str, runs: dict[str, dict], *, base: str) -> str:
    """``text`` with every generated region rendered afresh."""
    def replace(match: re.Match) -> str:
        body = "\n".join(directive(match["directive"], runs, base=base))
        return f"{match[1]}{body}\n{match[4]}"

    return MARKER.sub(replace, text)


def pages(root: Path, runs: dict[str, dict]) -> dict[Path, str]:
    """Every file this command writes under ``root``, with its new text."""
    root = Path(root)
    results_root = root / RESULTS_DIR
    written = {results_root / name / "README.md": run_page(name, results)
               for name, results in runs.items()}
    documents = [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
    for path in documents:
        if not path.is_file() or path in written:
            continue
        text = path.read_text()
        if "<!-- generated:" not in text:
            continue
        base = os.path.relpath(results_root, path.parent).replace(os.sep, "/") + "/"
        written[path] = fill(text, runs, base=base)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.docs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collect", type=Path, nargs="*", default=[], metavar="RUN_DIR",
                        help="copy these runs' results.json and figures to docs/results first")
    parser.add_argument("--root", type=Path, default=REPO_ROOT,
                        help="the repository whose README.md and docs/ are written")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a page differs from its rendering")
    arguments = parser.parse_args(argv)
    for run_dir in arguments.collect:
        print(f"collected {run_dir} -> {collect(run_dir, arguments.root / RESULTS_DIR)}")
    runs = load_runs(arguments.root / RESULTS_DIR)
    stale = []
    for path, text in pages(arguments.root, runs).items():
        old = path.read_text() if path.is_file() else None
        if old == text:
            continue
        stale.append(path)
        if not arguments.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    verb = "stale" if arguments.check else "written"
    for path in stale:
        shown = path.relative_to(arguments.root) if path.is_relative_to(arguments.root) else path
        print(f"{verb}: {shown}")
    print(f"{len(runs)} collected run(s); {len(stale)} page(s) {verb}")
    return 1 if arguments.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
