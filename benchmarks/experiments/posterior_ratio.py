"""The ``posterior_ratio`` experiment (paper Section 4.1, eq. 11, Figure 2).

Does the defence move the latent back to where the model's own posterior of the *clean*
reference puts it? For every SKL attack at the first radius,

    log p(x_r | z₁) + log p(z₁) − log p(x_r | z₂) − log p(z₂),  z₁ ~ q(z|x_r),

with z₂ = z_a ~ q(z|x_a) (no defence) or z₂ = the first chain's final state on x_a (the tables'
chains, reused); two histograms and a two-sample Kolmogorov–Smirnov test.
"""

from __future__ import annotations

from pathlib import Path

import torch

from inference import ks_two_sample, log_posterior_ratio

from .. import figures
from ..context import RunContext
from ..stages import latents
from .base import Experiment
from .common import attacked_model, tables_defence

THIS = __name__


def run(context: RunContext, knobs: None) -> dict:
    attacked = attacked_model(context)
    model, x_ref = attacked.model, attacked.x_ref
    defended = tables_defence(context, attacked)

    @torch.no_grad()
    def compute():
        vae, radius = model.vae, context.profile.radii[0]
        x_adv = attacked.attacks["skl"]["adversarial"][0].flatten(0, 1)
        x_ref_tiled = x_ref.repeat_interleave(context.profile.restarts, 0)
        generator = context.generator()
        z_ref = latents.guide_latents(vae, x_ref_tiled, generator)
        z_adv = latents.guide_latents(vae, x_adv, generator)
        z_defended = defended["final_z"][f"skl@{radius:g}"][0].to(context.device)
        without, with_mcmc = (log_posterior_ratio(vae.model, (x_ref_tiled,), z_ref, z,
                                                  latent_site=vae.latent_sites)
                              for z in (z_adv, z_defended))
        test = ks_two_sample(without.cpu().numpy(), with_mcmc.cpu().numpy())
        return {"radius": radius, "without_defence": without.cpu().tolist(),
                "with_defence": with_mcmc.cpu().tolist(),
                "ks_statistic": float(test.statistic), "ks_pvalue": float(test.pvalue)}

    return context.timed("posterior ratio", lambda: context.run_dir.stage(
        f"metrics/{model.tag}_posterior_ratio.json", compute, code=(THIS, "inference"),
        after=(f"chains/{model.tag}.pt", attacked.attack_stage), identity=model.identity))


def render(run: dict, section: dict) -> list[str]:
    def median(values):
        return float(torch.tensor(values).median())

    return ["## Posterior ratio (paper eq. 11, Figure 2)", "",
            f"Radius {section['radius']:g}, {len(section['without_defence'])} SKL attacks: median "
            f"log ratio {median(section['without_defence']):.1f} without the defence, "
            f"{median(section['with_defence']):.1f} with it (0 = as likely as the reference's "
            f"own code); two-sample KS statistic {section['ks_statistic']:.3f}, "
            f"p = {section['ks_pvalue']:.3g} (paper: p = 0.029 with 500 attacks and 500 HMC "
            "steps).", "", "![posterior ratio](posterior_ratio.png)", ""]


def figure(run: dict, section: dict, folder: Path) -> None:
    figures.posterior_ratio_histogram(section, folder / "posterior_ratio.png")


EXPERIMENT = Experiment(
    name="posterior_ratio", summary="eq. 11 with and without the defence, KS test",
    run=run, render=render, figure=figure,
    knobs={"smoke": None, "quick": None, "paper": None})
