"""The ``samplers`` experiment: every sampler of the registry side by side on the same attacked
inputs (beyond the paper, which ran HMC only; Appendix B.3 argues for MCMC over mode finding).

SKL attacks at the profile's radii (one attack stage shared by every sampler), then each sampler
with the profile's T, L, η₀ and chains: MS-SSIM[x̃_r, x̃_a] (paper variant) with the defence,
seconds and gradient evaluations per point, worst R-hat, smallest bulk ESS, acceptance and
divergences (ArviZ, kept draws).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from attacks import EncoderDivergence
from inference import SAMPLERS

from .. import figures
from ..context import RunContext
from ..stages import latents
from .base import Experiment
from .common import attack_defend_score, attacked_model


@dataclass(frozen=True)
class Knobs:
    samplers: tuple[str, ...]

    def __post_init__(self) -> None:
        unknown = [name for name in self.samplers if name not in SAMPLERS]
        if unknown:
            raise ValueError(f"unknown samplers {unknown}; the registry has {list(SAMPLERS)}")


def run(context: RunContext, knobs: Knobs) -> dict:
    attacked = attacked_model(context)
    tag = attacked.model.tag
    objectives = {"skl": EncoderDivergence(latents.guide_encoder(attacked.model.vae))}
    per_sampler = {name: attack_defend_score(context, attacked.model, attacked.x_ref,
                                             objectives, radii=context.profile.radii,
                                             stage=f"{tag}_sampler_{name}",
                                             attack_stage=f"{tag}_skl", sampler=name)
                   for name in knobs.samplers}
    return {"radii": list(context.profile.radii), "samplers": per_sampler}


def _number(value, digits: int) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def render(run: dict, section: dict) -> list[str]:
    lines = ["## Every sampler side by side (beyond the paper)", "",
             "The same SKL attacks for every sampler; MS-SSIM paper variant, mean (standard "
             "error) over references; diagnostics over the kept draws of all attacked inputs.",
             "",
             "| sampler | radius | no defence | defence | seconds / point | gradient evals / "
             "point | worst R-hat | smallest ESS | acceptance | divergences |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, scored in section["samplers"].items():
        cost = scored["defence"]
        for radius in section["radii"]:
            group = scored["groups"][f"skl@{radius:g}"]
            plain, defended = group["ms_ssim"]["plain"], group["ms_ssim"]["defended"]
            diagnostics = group["diagnostics"]
            lines.append(
                f"| {name} | {radius:g} | {plain[0]:.3f} ({plain[1]:.3f}) | "
                f"{defended[0]:.3f} ({defended[1]:.3f}) | {cost['seconds_per_point']:.3f} | "
                f"{_number(cost['gradient_evaluations_per_point'], 0)} | "
                f"{_number(diagnostics.get('max_rhat'), 2)} | "
                f"{_number(diagnostics.get('min_ess_bulk'), 0)} | "
                f"{_number(diagnostics.get('mean_accept_prob'), 2)} | "
                f"{diagnostics.get('num_divergent', '—')} |")
    return lines + ["", "![samplers](samplers.png)", ""]


def figure(run: dict, section: dict, folder: Path) -> None:
    groups = {}
    for radius in section["radii"]:
        bars = {}
        for name, scored in section["samplers"].items():
            score = scored["groups"][f"skl@{radius:g}"]["ms_ssim"]
            bars.setdefault("no defence", tuple(score["plain"]))
            bars[name] = tuple(score["defended"])
        groups[f"radius {radius:g}"] = bars
    figures.grouped_bars(groups, folder / "samplers.png", ylabel="MS-SSIM (paper variant)",
                         title="Every sampler on the same attacks")


EXPERIMENT = Experiment(
    name="samplers", summary="every registered sampler on the same attacks: robustness, cost, "
                             "diagnostics",
    run=run, render=render, figure=figure,
    knobs={"smoke": Knobs(("hmc", "mala", "map")), "quick": Knobs(("hmc", "nuts", "mala", "map")),
           "paper": Knobs(tuple(SAMPLERS))})
