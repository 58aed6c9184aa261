"""The ``tables`` experiment (the default): the paper's Tables 2–4 end to end (PROTOCOL.md).

data → models (zoo or SVI) → latent classifiers → stratified references → attacks (SKL on the
guide, classifier attack per task) → defence (MCMC on p(z | x_a), one batched call per model) →
metrics; for the first model also the diagnosis of where the defence falls short and the example
rows (Figure 3). Each stage lives in :mod:`benchmarks.stages` and caches its output in the run
directory; the other experiments reuse them.
"""

from __future__ import annotations

from pathlib import Path

from .. import figures, report
from ..context import RunContext
from ..stages import metrics, models
from .base import Experiment
from .common import attacked_model, tables_defence


def run(context: RunContext, knobs: None) -> dict:
    """Every stage for every model of the profile; returns the section."""
    profile, run_dir = context.profile, context.run_dir
    network, feature_accuracy = models.feature_network(context)
    section = {"feature_network_accuracy": feature_accuracy, "models": {}}
    for position, (kind, beta) in enumerate(profile.models):
        attacked = attacked_model(context, kind, beta)
        model, x_ref = attacked.model, attacked.x_ref
        section["references"] = attacked.indices.tolist()
        tag = model.tag
        quality = models.quality(context, model, network)
        defended = tables_defence(context, attacked)
        downstream = (f"chains/{tag}.pt", attacked.attack_stage)

        def metric_stage(name, compute):
            return context.timed("metrics" + name, lambda: run_dir.stage(
                f"metrics/{tag}{name}.json", compute, code=("attacks", "inference", metrics.THIS),
                after=downstream, identity=model.identity))

        entry = {"kind": kind, "beta": beta,
                 "decoder_output": getattr(model.vae.config, "decoder_output", "sigmoid"),
                 "training": model.training, "provenance": model.provenance, "quality": quality,
                 "classifier_test_accuracy": attacked.classifier_accuracy,
                 "robustness": metric_stage("", lambda: metrics.robustness(
                     context, model, x_ref, attacked.y_ref, attacked.classifiers,
                     attacked.attacks, defended)),
                 "defence": {k: v for k, v in defended.items() if k not in ("final_z", "mean_z")}}
        if position == 0:  # Figure 3 and the diagnosis are about the first model
            entry["diagnosis"] = metric_stage("_diagnosis", lambda: (
                metrics.diagnosis(context, model, x_ref, attacked.attacks, defended)))
            entry["examples"] = metrics.examples(model, x_ref, attacked.attacks, defended,
                                                 radius=profile.radii[0],
                                                 restarts=profile.restarts)
        section["models"][tag] = entry
    return section


def figure(run: dict, section: dict, folder: Path) -> None:
    """``examples.png`` (Figure 3) of the first model; the rows leave the section here (images
    do not belong in results.json)."""
    first = next(iter(section["models"].values()))
    examples = first.pop("examples", None)
    if examples is not None:
        figures.example_grid(examples["rows"], examples["radius"], folder / "examples.png")


EXPERIMENT = Experiment(
    name="tables", summary="the paper's Tables 2–4 with verdicts, diagnosis and examples",
    run=run, render=report.render_tables, figure=figure,
    knobs={"smoke": None, "quick": None, "paper": None})
