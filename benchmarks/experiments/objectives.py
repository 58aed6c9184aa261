"""The ``objectives`` experiment: the defence against every attack objective of the paper's
Table 1 (Appendix C.6, Figure 16).

Unsupervised encoder attacks (symmetric KL — the main one —, forward KL, reverse KL, squared
distance between the means), the supervised latent attack (towards a target's posterior), the
targeted output attack (towards a target's decoded sample) and the maximum-damage attack (away
from the reference's decoded sample). The target of reference n is the reference half the list
away (another class: the stratified references are ordered by class). Reported per objective and
radius: MS-SSIM[x̃_r, x̃_a] (paper variant) without and with the run's sampler.

The two targeted objectives use PGD learning rate 0.1 instead of the paper's 1: their optimum lies
inside the ball, where steps of 1 bounce between corners (see :class:`attacks.LatentTarget`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from attacks import (EncoderDivergence, LatentTarget, MaximumDamage, OutputTarget,
                     forward_kl, reverse_kl, squared_mean_distance)

from .. import figures
from ..context import RunContext
from ..stages import latents
from .base import Experiment
from .common import attack_defend_score, attacked_model

TARGETED_LEARNING_RATE = 0.1
NOISE_STREAM = 7  # RunContext.generator stream of the fixed codes of the decoder attacks
LABELS = {"skl": "SKL", "forward_kl": "forward KL", "reverse_kl": "reverse KL",
          "mean_l2": "L2 of means", "latent_target": "supervised latent",
          "output_target": "targeted output", "maximum_damage": "maximum damage"}


@dataclass(frozen=True)
class Knobs:
    radii: tuple[float, ...]


def objectives_for(context: RunContext, vae, x_ref: torch.Tensor) -> dict:
    """Every objective of Table 1 for these references (targets: half the list away)."""
    encode = latents.guide_encoder(vae)
    x_target = x_ref.roll(len(x_ref) // 2, dims=0)
    with torch.no_grad():
        latent_dim = vae.encode(x_ref[:1])[0].shape[-1]
    noise = torch.randn((len(x_ref), latent_dim), generator=context.generator(NOISE_STREAM),
                        device=context.device)
    return {"skl": EncoderDivergence(encode),
            "forward_kl": EncoderDivergence(encode, forward_kl),
            "reverse_kl": EncoderDivergence(encode, reverse_kl),
            "mean_l2": EncoderDivergence(encode, squared_mean_distance),
            "latent_target": LatentTarget(encode, x_target),
            "output_target": OutputTarget(encode, vae.decode, x_target, noise),
            "maximum_damage": MaximumDamage(encode, vae.decode, noise)}


def run(context: RunContext, knobs: Knobs) -> dict:
    attacked = attacked_model(context)
    objectives = objectives_for(context, attacked.model.vae, attacked.x_ref)
    scored = attack_defend_score(
        context, attacked.model, attacked.x_ref, objectives, radii=knobs.radii,
        stage=f"{attacked.model.tag}_objectives",
        pgd_options={name: {"learning_rate": TARGETED_LEARNING_RATE}
                     for name in ("latent_target", "output_target")})
    return {"radii": list(knobs.radii), "objectives": list(objectives), **scored}


def render(run: dict, section: dict) -> list[str]:
    radii = section["radii"]
    header = " | ".join(f"{r:g}: none | {r:g}: defence" for r in radii)
    lines = ["## Every attack objective (paper Table 1, Figure 16)", "",
             f"MS-SSIM[x̃_r, x̃_a] (paper variant) without and with the `{run['sampler']}` "
             "defence; mean (standard error) over references.", "",
             f"| objective | {header} |", "|---|" + "---|" * (2 * len(radii))]
    for name in section["objectives"]:
        cells = []
        for radius in radii:
            score = section["groups"][f"{name}@{radius:g}"]["ms_ssim"]
            cells += [f"{score[key][0]:.3f} ({score[key][1]:.3f})" for key in ("plain", "defended")]
        lines.append(f"| {LABELS[name]} | {' | '.join(cells)} |")
    return lines + ["", "![objectives](objectives.png)", ""]


def figure(run: dict, section: dict, folder: Path) -> None:
    radius = section["radii"][-1]
    groups = {LABELS[name]: {
        "no defence": tuple(section["groups"][f"{name}@{radius:g}"]["ms_ssim"]["plain"]),
        f"{run['sampler']} defence": tuple(
            section["groups"][f"{name}@{radius:g}"]["ms_ssim"]["defended"])}
        for name in section["objectives"]}
    figures.grouped_bars(groups, folder / "objectives.png", ylabel="MS-SSIM (paper variant)",
                         title=f"Every attack objective, radius {radius:g}")


EXPERIMENT = Experiment(
    name="objectives", summary="the defence against every attack objective of Table 1",
    run=run, render=render, figure=figure,
    model_kinds=("vae", "beta_vae", "beta_tcvae"),  # the decoder attacks decode one encoder code
    knobs={"smoke": Knobs((0.1,)), "quick": Knobs((0.1,)), "paper": Knobs((0.1, 0.2))})
