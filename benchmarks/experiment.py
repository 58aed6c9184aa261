"""The ``tables`` experiment: the paper's Tables 2–4 end to end (PROTOCOL.md, all sections).

data → models (zoo or SVI) → latent classifiers → stratified references → attacks (SKL on the
guide, classifier attack per task) → defence (MCMC on p(z | x_a), one batched call per model) →
metrics; for the first model also the posterior ratio (Figure 2), robustness versus time
(Figure 6), the diagnosis of where the defence falls short, and the example rows (Figure 3).
Each stage lives in :mod:`benchmarks.stages` and caches its output in the run directory.
"""

from __future__ import annotations

from .context import RunContext
from .stages import attacks as attack_stages
from .stages import defence, metrics, models


def run_tables(context: RunContext) -> dict:
    """Every stage for every model of the profile; returns the results dictionary."""
    profile, run_dir = context.profile, context.run_dir
    network, feature_accuracy = models.feature_network(context)
    indices, x_ref, y_ref = attack_stages.references(context)
    results = {"references": indices.tolist(), "feature_network_accuracy": feature_accuracy,
               "models": {}}
    for position, (kind, beta) in enumerate(profile.models):
        model = models.load_model(context, kind, beta)
        tag = model.tag
        quality = models.quality(context, model, network)
        classifiers, accuracy = models.classifiers(context, model)
        attacks = attack_stages.run_attacks(context, model, x_ref, classifiers)
        upstream = (f"attacks/{tag}.pt",)
        defended = defence.defend(context, model, defence.attack_groups(context, x_ref, attacks),
                                  after=upstream)
        downstream = (f"chains/{tag}.pt", *upstream)

        def metric_stage(name, compute, after=downstream):
            return context.timed("metrics" + name, lambda: run_dir.stage(
                f"metrics/{tag}{name}.json", compute, code=("attacks", "inference", metrics.THIS),
                after=after, identity=model.identity))

        entry = {"kind": kind, "beta": beta, "decoder_output": model.vae.config.decoder_output,
                 "training": model.training, "provenance": model.provenance, "quality": quality,
                 "classifier_test_accuracy": accuracy,
                 "robustness": metric_stage("", lambda: metrics.robustness(
                     context, model, x_ref, y_ref, classifiers, attacks, defended)),
                 "defence": {k: v for k, v in defended.items() if k not in ("final_z", "mean_z")}}
        if position == 0:  # figures 2, 3 and 6 and the diagnosis are about the first model
            entry["posterior_ratio"] = metric_stage("_posterior_ratio", lambda: (
                metrics.posterior_ratio(context, model, x_ref, attacks, defended)))
            entry["robustness_over_time"] = metric_stage("_time_curve", lambda: (
                metrics.robustness_over_time(context, model, x_ref, attacks)), after=upstream)
            entry["diagnosis"] = metric_stage("_diagnosis", lambda: (
                metrics.diagnosis(context, model, x_ref, attacks, defended)))
            entry["examples"] = metrics.examples(model, x_ref, attacks, defended,
                                                 radius=profile.radii[0],
                                                 restarts=profile.restarts)
        results["models"][tag] = entry
    results["wall_seconds"] = dict(context.wall_times)
    return results
