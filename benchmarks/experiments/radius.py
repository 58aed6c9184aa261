"""The ``radius`` experiment: robustness against the attack radius (paper Appendix C.4,
Figure 13).

The SKL attack through the guide at every radius of the grid, the run's sampler on every attacked
input, and per radius: MS-SSIM[x̃_r, x̃_a] (paper variant) without and with the defence, and
MS-SSIM[x_r, x_a] of the inputs themselves (how visible the perturbation is).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attacks import EncoderDivergence

from .. import figures
from ..context import RunContext
from ..stages import latents
from .base import Experiment
from .common import attack_defend_score, attacked_model


@dataclass(frozen=True)
class Knobs:
    radii: tuple[float, ...]


def run(context: RunContext, knobs: Knobs) -> dict:
    attacked = attacked_model(context)
    objectives = {"skl": EncoderDivergence(latents.guide_encoder(attacked.model.vae))}
    scored = attack_defend_score(context, attacked.model, attacked.x_ref, objectives,
                                 radii=knobs.radii, stage=f"{attacked.model.tag}_radius")
    return {"radii": list(knobs.radii), **scored}


def rows(section: dict) -> list[tuple[float, dict]]:
    return [(radius, section["groups"][f"skl@{radius:g}"]) for radius in section["radii"]]


def render(run: dict, section: dict) -> list[str]:
    lines = ["## Robustness against the attack radius (paper Figure 13)", "",
             f"SKL attack, sampler `{run['sampler']}`; MS-SSIM paper variant, mean (standard "
             "error) over references.", "",
             "| radius | MS-SSIM[x_r, x_a] (inputs) | no defence | defence | gain | SKL reached |",
             "|---|---|---|---|---|---|"]
    for radius, group in rows(section):
        plain, defended = group["ms_ssim"]["plain"], group["ms_ssim"]["defended"]
        lines.append(f"| {radius:g} | {group['inputs']['plain'][0]:.3f} | "
                     f"{plain[0]:.3f} ({plain[1]:.3f}) | {defended[0]:.3f} ({defended[1]:.3f}) | "
                     f"{defended[0] - plain[0]:+.3f} | {group['attack_objective']['plain'][0]:.1f} |")
    return lines + ["", "![radius](radius.png)", ""]


def figure(run: dict, section: dict, folder: Path) -> None:
    series = {"no defence": [], f"{run['sampler']} defence": [], "inputs x_a vs x_r": []}
    for radius, group in rows(section):
        series["no defence"].append((radius, *group["ms_ssim"]["plain"]))
        series[f"{run['sampler']} defence"].append((radius, *group["ms_ssim"]["defended"]))
        series["inputs x_a vs x_r"].append((radius, *group["inputs"]["plain"]))
    figures.curves(series, folder / "radius.png", xlabel="attack radius (L∞)",
                   ylabel="MS-SSIM (paper variant)", title="Robustness against the radius")


EXPERIMENT = Experiment(
    name="radius", summary="MS-SSIM with and without the defence over radii 0.01–0.5",
    run=run, render=render, figure=figure,
    knobs={"smoke": Knobs((0.05, 0.2)), "quick": Knobs((0.01, 0.05, 0.1, 0.2, 0.3, 0.5)),
           "paper": Knobs((0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5))})
