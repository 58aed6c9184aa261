"""The ``transitions`` experiment: robustness against the chain's length and cost (paper
Section 4.2, Appendix C.5 and C.7, Table 5, Figure 6).

On the first restart of every reference's SKL attack at the first radius, one chain per input
runs max(T) transitions of the run's sampler with the paper's never-frozen adaptation
(Algorithm 1); the state after t transitions is read off that run, so every T of the grid costs
one run. Reported per T: MS-SSIM (paper variant) of the defended reconstructions, seconds per
point (t times the measured time per transition, plus the encoder pass) and gradient
evaluations per point (counted by the sampler, transition by transition).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from attacks import mean_and_standard_error

from .. import figures
from ..context import RunContext
from ..stages import latents, metrics
from ..stages.defence import sample
from .base import Experiment
from .common import attacked_model

THIS = __name__


@dataclass(frozen=True)
class Knobs:
    transitions: tuple[int, ...]  # the grid of T; the chain runs max(T)


def robustness_over_time(context: RunContext, knobs: Knobs) -> dict:
    attacked = attacked_model(context)
    model, x_ref = attacked.model, attacked.x_ref
    vae = model.vae

    def compute():
        x_adv = attacked.attacks["skl"]["adversarial"][0][:, 0]  # (refs, C, H, W)
        horizon = max(max(knobs.transitions), 1)
        started = time.perf_counter()
        samples = sample(context, model, x_adv, num_chains=1, num_warmup=0, num_samples=horizon,
                         adapt_after_warmup=True)
        seconds_per_transition = (time.perf_counter() - started) / horizon / len(x_adv)
        gradients = samples.sample_stats.get("n_grad_evals")  # (1, T, N) or None
        generator = context.generator()
        with torch.no_grad():
            encode_start = time.perf_counter()
            plain = latents.decode(vae, latents.guide_latents(vae, x_adv, generator))
            encode_seconds = (time.perf_counter() - encode_start) / len(x_adv)
            curve = []
            for steps in knobs.transitions:
                images = plain if steps == 0 else latents.decode(vae, samples.z[0, steps - 1])
                score = metrics.similarity_to_references(vae, x_ref, images, generator=generator)
                per_point = (None if gradients is None else
                             float(gradients[0, :steps].sum(0).double().mean()) + (steps > 0))
                curve.append({"transitions": steps,
                              "ms_ssim": mean_and_standard_error(score[metrics.PAPER_VARIANT]),
                              "seconds_per_point": encode_seconds + steps * seconds_per_transition,
                              "gradient_evaluations_per_point": per_point})
        return {"radius": context.profile.radii[0], "points": len(x_adv),
                "sampler": context.settings.sampler, "curve": curve}

    return context.timed("transitions", lambda: context.run_dir.stage(
        f"metrics/{model.tag}_transitions.json", compute, code=(THIS, "inference", metrics.THIS),
        after=(attacked.attack_stage,), identity=f"{model.identity} {knobs}"))


def render(run: dict, section: dict) -> list[str]:
    lines = ["## Robustness versus the number of transitions (paper Figure 6, Table 5)", "",
             f"SKL attacks at radius {section['radius']:g}, first restart of each of "
             f"{section['points']} references; one `{section['sampler']}` chain per input, "
             "adapting throughout (Algorithm 1); MS-SSIM paper variant.", "",
             "| T | seconds per point | gradient evaluations per point | MS-SSIM |",
             "|---|---|---|---|"]
    for point in section["curve"]:
        evaluations = point["gradient_evaluations_per_point"]
        mean, error = point["ms_ssim"]
        lines.append(f"| {point['transitions']} | {point['seconds_per_point']:.4f} | "
                     f"{'—' if evaluations is None else f'{evaluations:.0f}'} | "
                     f"{mean:.3f} ({error:.3f}) |")
    return lines + ["", "![robustness versus time](robustness_vs_time.png)", ""]


def figure(run: dict, section: dict, folder: Path) -> None:
    figures.robustness_over_time(section, folder / "robustness_vs_time.png")


EXPERIMENT = Experiment(
    name="transitions", summary="MS-SSIM, seconds and gradient evaluations against T",
    run=robustness_over_time, render=render, figure=figure,
    knobs={"smoke": Knobs((0, 2, 6)), "quick": Knobs((0, 10, 50, 100, 200, 500)),
           "paper": Knobs((0, 100, 200, 500, 1000))})
