"""The ``samplers`` experiment: every sampler of the registry side by side on the same attacked
inputs (beyond the paper, which ran HMC only; Appendix B.3 argues for MCMC over mode finding).

SKL attacks at the profile's radii (one attack stage shared by every sampler), then each sampler
with the profile's T, L, η₀ and chains: MS-SSIM[x̃_r, x̃_a] (paper variant) with the defence,
seconds and gradient evaluations per point, worst R-hat, smallest bulk ESS, acceptance and
divergences (ArviZ, kept draws).

The diagnosis per sampler: every MCMC sampler of the experiment (``spec.mcmc``; the paper knobs
take every sampler registered when the experiment runs) is also started at the oracle start, the
clean reference's encoder mean μ(x_r), on the first restart of every reference. MS-SSIM of the
defended reconstruction to the reference's from the defence's start z₀ ~ q(z|x_a) and from the
oracle start separates the sampler's gap from the posterior's: if the oracle-started chains stay
high, the chains (mixing, T) fall short; if they fall to the defence's level, p(z | x_a) itself
has moved and no sampler can recover the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from attacks import EncoderDivergence
from inference import SAMPLERS

from .. import figures
from ..context import RunContext
from ..stages import attacks as attack_stages
from ..stages import defence, latents, metrics
from .base import Experiment
from .common import attack_defend_score, attacked_model

THIS = __name__


@dataclass(frozen=True)
class Knobs:
    """``samplers``: the registry names to compare; None: every sampler registered when the
    experiment runs (so one registered later is included)."""

    samplers: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        unknown = [name for name in self.names() if name not in SAMPLERS]
        if unknown:
            raise ValueError(f"unknown samplers {unknown}; the registry has {list(SAMPLERS)}")

    def names(self) -> tuple[str, ...]:
        return tuple(SAMPLERS) if self.samplers is None else self.samplers


def oracle_diagnosis(context: RunContext, attacked, name: str, objectives: dict) -> dict:
    """Per radius, MS-SSIM (paper variant, mean and SE over references) of the first restart's
    defended reconstruction to the reference's, with sampler ``name`` started as the defence
    (its cached chains, z₀ ~ q(z|x_a)) and at the oracle start μ(x_r) (``init`` = the clean
    reference's encoder mean; otherwise the same settings). Cached as
    ``metrics/<tag>_sampler_<name>_oracle.json``."""
    model, x_ref = attacked.model, attacked.x_ref
    tag, radii = model.tag, context.profile.radii
    stage, attack_file = f"{tag}_sampler_{name}", f"attacks/{tag}_skl.pt"

    def compute():
        attacks = attack_stages.run_attacks(context, model, x_ref, objectives,
                                            stage=f"{tag}_skl", radii=radii)
        groups = defence.attack_groups(context, x_ref, attacks, radii, clean=False)
        defended = defence.defend(context, model, groups, after=(attack_file,), stage=stage,
                                  sampler=name)
        vae, generator = model.vae, context.generator()
        oracle_init = latents.guide_latents(vae, x_ref, None)
        result = {}
        for k, radius in enumerate(radii):
            x_adv = attacks["skl"]["adversarial"][k][:, 0]  # first restart: (N, C, H, W)
            oracle = defence.sample(context, model, x_adv, init=oracle_init, sampler=name,
                                    progress_bar=False).final_z
            guide = defended["final_z"][f"skl@{radius:g}"].to(context.device)
            guide = guide.view(guide.shape[0], len(x_ref), -1, guide.shape[-1])[:, :, 0]
            entry = {}
            with torch.no_grad():
                for start, final_z in (("guide_start", guide), ("oracle_start", oracle)):
                    z = final_z.transpose(0, 1).flatten(0, 1)  # point-major: (N·chains, D)
                    similarity = metrics.similarity_to_references(
                        vae, x_ref, latents.decode(vae, z), generator=generator)
                    entry[start] = {"ms_ssim": metrics.summary(similarity[metrics.PAPER_VARIANT])}
            result[f"{radius:g}"] = entry
        return result

    return context.timed("metrics", lambda: context.run_dir.stage(
        f"metrics/{stage}_oracle.json", compute, code=("attacks", "inference", metrics.THIS, THIS),
        after=(f"chains/{stage}.pt", attack_file), identity=model.identity))


def run(context: RunContext, knobs: Knobs) -> dict:
    attacked = attacked_model(context)
    tag = attacked.model.tag
    objectives = {"skl": EncoderDivergence(latents.guide_encoder(attacked.model.vae))}
    names = knobs.names()
    per_sampler = {name: attack_defend_score(context, attacked.model, attacked.x_ref,
                                             objectives, radii=context.profile.radii,
                                             stage=f"{tag}_sampler_{name}",
                                             attack_stage=f"{tag}_skl", sampler=name)
                   for name in names}
    diagnosis = {name: oracle_diagnosis(context, attacked, name, objectives)
                 for name in names if SAMPLERS[name].mcmc}
    return {"radii": list(context.profile.radii), "samplers": per_sampler, "diagnosis": diagnosis}


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
    return lines + ["", "![samplers](samplers.png)", "", *diagnosis_lines(section), ""]


def diagnosis_lines(section: dict) -> list[str]:
    """The diagnosis per sampler: defence start against oracle start, per radius."""
    diagnosis = section.get("diagnosis")
    if not diagnosis:
        return []
    lines = ["### Which gap is the sampler's and which the posterior's", "",
             "Every MCMC sampler on the first restart of every reference, started as the defence "
             "(z₀ ~ q(z|x_a)) and at the oracle start μ(x_r), the clean reference's encoder "
             "mean: MS-SSIM (paper variant) of the final state's reconstruction to the "
             "reference's, mean (standard error) over references. A high oracle start with a "
             "low defence start is the sampler's gap (the chains do not reach the region the "
             "posterior still holds); both low is the posterior's (p(z | x_a) itself moved).", "",
             "| sampler | radius | defence start | oracle start | oracle − defence |",
             "|---|---|---|---|---|"]
    for name, per_radius in diagnosis.items():
        for radius, entry in per_radius.items():
            guide = entry["guide_start"]["ms_ssim"]["plain"]
            oracle = entry["oracle_start"]["ms_ssim"]["plain"]
            gap = f"{oracle[0] - guide[0]:+.3f}".replace("-", "−")
            lines.append(f"| {name} | {radius} | {guide[0]:.3f} ({guide[1]:.3f}) | "
                         f"{oracle[0]:.3f} ({oracle[1]:.3f}) | {gap} |")
    return lines


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
           "paper": Knobs(None)})
