"""Stages several experiments share, composed once: the run's first model, its stratified
references, the tables' attacks on them and the tables' chains (all cached in the run
directory, so an experiment run after ``tables`` recomputes none of them)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attacks import ms_ssim

from ..context import RunContext
from ..stages import attacks as attack_stages
from ..stages import defence, metrics, models


@dataclass(frozen=True)
class AttackedModel:
    """A model with its references and the tables' attacks (``skl`` and ``classifier_<task>``,
    each adversarial (K radii, N, R, C, H, W)); ``attack_stage`` names their cached stage."""

    model: models.LoadedModel
    indices: torch.Tensor
    x_ref: torch.Tensor
    y_ref: torch.Tensor
    classifiers: dict
    classifier_accuracy: dict
    attacks: dict
    attack_stage: str


def attacked_model(context: RunContext, kind: str | None = None,
                   beta: float | None = None) -> AttackedModel:
    """The tables' attack stages for one model (default: the profile's first)."""
    if kind is None:
        kind, beta = context.profile.models[0]
    model = models.load_model(context, kind, beta)
    indices, x_ref, y_ref = attack_stages.references(context)
    classifiers, accuracy = models.classifiers(context, model)
    attacks = attack_stages.run_attacks(context, model, x_ref,
                                        attack_stages.table_objectives(model, classifiers),
                                        after=(f"classifiers/{model.tag}.pt",))
    return AttackedModel(model, indices, x_ref, y_ref, classifiers, accuracy, attacks,
                         f"attacks/{model.tag}.pt")


def tables_defence(context: RunContext, attacked: AttackedModel) -> dict:
    """The run's sampler on the clean references and every tables attack, one batched call
    (the ``chains/<tag>.pt`` stage)."""
    groups = defence.attack_groups(context, attacked.x_ref, attacked.attacks)
    return defence.defend(context, attacked.model, groups, after=(attacked.attack_stage,))


def attack_defend_score(context: RunContext, model: models.LoadedModel, x_ref: torch.Tensor,
                        objectives: dict, *, radii, stage: str, attack_stage: str | None = None,
                        pgd_options: dict[str, dict] | None = None,
                        attack_after: tuple[str, ...] = (), **sampler_overrides) -> dict:
    """Attack the references with every objective at every radius (stage
    ``attacks/<attack_stage or stage>``, so experiments that vary only the defence share one),
    defend every attacked input with the run's sampler or ``sampler_overrides`` (stage
    ``chains/<stage>``), and score each group (stage ``metrics/<stage>.json``);
    ``pgd_options`` and ``attack_after`` (the attack stage's ``after``) as in
    :func:`~benchmarks.stages.attacks.run_attacks`.

    Returns group ``<objective>@<radius>`` → {"ms_ssim" / "ms_ssim_standard": summary without
    and with the defence, "inputs": MS-SSIM[x_r, x_a] of the inputs themselves (paper variant),
    "attack_objective": what the attack reached, "diagnostics": the chains' ArviZ summary}, and
    "defence": seconds and gradient evaluations per point, the sampler's configuration.
    """
    attack_file = f"attacks/{attack_stage or stage}.pt"
    attacks = attack_stages.run_attacks(context, model, x_ref, objectives,
                                        stage=attack_stage or stage, radii=radii,
                                        pgd_options=pgd_options, after=attack_after)
    groups = defence.attack_groups(context, x_ref, attacks, radii, clean=False)
    defended = defence.defend(context, model, groups, after=(attack_file,), stage=stage,
                              **sampler_overrides)

    @torch.no_grad()
    def score():
        scores = {}
        copies = context.profile.restarts
        for name, entry in attacks.items():
            for k, radius in enumerate(radii):
                group = f"{name}@{radius:g}"
                x_adv = groups[group]
                similarity = metrics.attack_similarity(context, model.vae, x_ref, x_adv,
                                                       defended["final_z"][group])
                inputs = ms_ssim(x_ref.repeat_interleave(copies, 0), x_adv,
                                 variant=metrics.PAPER_VARIANT).view(len(x_ref), copies)
                scores[group] = {"ms_ssim": similarity[metrics.PAPER_VARIANT],
                                 "ms_ssim_standard": similarity["standard"],
                                 "inputs": metrics.summary(inputs),
                                 "attack_objective": metrics.summary(entry["objective"][k]),
                                 "diagnostics": defended["diagnostics"][group]}
        kept = ("seconds_per_point", "gradient_evaluations_per_point", "sampler_config",
                "final_step_size_mean")
        return {"groups": scores, "defence": {key: defended[key] for key in kept}}

    return context.timed("metrics", lambda: context.run_dir.stage(
        f"metrics/{stage}.json", score, code=("attacks", metrics.THIS),
        after=(f"chains/{stage}.pt", attack_file), identity=model.identity))
