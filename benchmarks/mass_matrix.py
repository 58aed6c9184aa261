"""``python -m benchmarks.mass_matrix --dataset mnist``: the defence's chains with each source of
the mass matrix, and each way of spending the gradient budget, side by side on the same clean and
attacked inputs.

On the zoo's model, the stratified references and their SKL attack at one radius (first
restart), every setting runs once on the clean references and once on the attacked inputs, and
once more on the attacked inputs started at the reference's own code (the oracle start, see
:func:`benchmarks.stages.metrics.diagnosis`). Per group it reports what a reader of the chain
diagnostics needs (:func:`inference.summarize`): mean acceptance, the share of kept transitions
that diverged, the median and 90th percentile over points of each point's worst-coordinate split
R-hat, the median over points of each point's smallest bulk ESS per 1,000 gradient evaluations,
the gradient evaluations per input (all chains, warm-up included), and the defended MS-SSIM
(paper variant) with the oracle start's beside it.

The mass-matrix settings run the quick profile's budget: the paper's step-size rule with unit
mass, dual averaging with unit mass, and dual averaging with each mass matrix of
:mod:`inference.mass`. The budget settings keep the default adaptation and change how the
gradient evaluations are spent: chains × transitions (half of them warm-up unless the row says
otherwise) × leapfrog steps L.
Writes ``mass.json`` and ``mass.md``; every setting is a cached stage.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from inference import summarize, to_inference_data

from .profiles import PROFILES, with_overrides
from .run import add_model_source_arguments, add_shared_arguments, at_least_one
from .single_model import skl_setting
from .stages import defence, latents, metrics


@dataclass(frozen=True)
class Setting:
    """One row: sampler, adaptation, mass matrix and, where not None, the budget's allocation
    (chains, transitions T, the share of them that is warm-up, leapfrog steps L) instead of the
    quick profile's."""

    label: str
    sampler: str
    adapt: str
    mass_matrix: str
    num_chains: int | None = None
    num_transitions: int | None = None
    num_leapfrog_steps: int | None = None
    warmup_fraction: float = 0.5
    parametrisation: str = "auto"  # inference.parametrisation: "auto" non-centres hierarchies

    def budget(self, profile) -> dict:
        """``benchmarks.stages.defence.sample`` overrides for this setting's allocation."""
        if self.num_transitions is None:  # the mass-matrix rows: the profile's own budget
            return {}
        num_warmup = int(round(self.warmup_fraction * self.num_transitions))
        return {"num_chains": self.num_chains or profile.num_chains,
                "num_warmup": num_warmup, "num_samples": self.num_transitions - num_warmup,
                "num_leapfrog_steps": self.num_leapfrog_steps or profile.num_leapfrog_steps}


SETTINGS = (
    Setting("hmc, paper rule, unit mass", "hmc", "paper", "identity"),
    Setting("hmc, dual averaging, unit mass", "hmc", "dual_averaging", "identity"),
    Setting("hmc, dual averaging, encoder mass", "hmc", "dual_averaging", "encoder"),
    Setting("hmc, dual averaging, windowed mass", "hmc", "dual_averaging", "windowed"),
    Setting("hmc, dual averaging, encoder + windowed mass", "hmc", "dual_averaging", "encoder_windowed"),
    Setting("nuts, unit mass", "nuts", "dual_averaging", "identity"),
    Setting("nuts, encoder + windowed mass", "nuts", "dual_averaging", "encoder_windowed"),
    Setting("chees, encoder + windowed mass", "chees", "dual_averaging", "encoder_windowed"),
    # the budget's allocation, default adaptation (dual averaging, encoder + windowed mass)
    Setting("hmc, 2 chains × 100, L = 20", "hmc", "dual_averaging", "encoder_windowed", 2, 100, 20),
    Setting("hmc, 4 chains × 100, L = 20", "hmc", "dual_averaging", "encoder_windowed", 4, 100, 20),
    Setting("hmc, 4 chains × 200, L = 10", "hmc", "dual_averaging", "encoder_windowed", 4, 200, 10),
    Setting("hmc, 4 chains × 300, L = 6", "hmc", "dual_averaging", "encoder_windowed", 4, 300, 6),
    Setting("nuts, 4 chains × 200", "nuts", "dual_averaging", "encoder_windowed", 4, 200),
    Setting("chees, 4 chains × 300", "chees", "dual_averaging", "encoder_windowed", 4, 300, 6),
    Setting("hmc, 4 chains × 199 (50 warm-up), L = 10", "hmc", "dual_averaging", "encoder_windowed",
            4, 199, 10, warmup_fraction=0.25),
    # a hierarchical model's groups as they are, against the default non-centred ones (the row
    # above); identical to it on a flat VAE
    Setting("hmc, 4 chains × 199 (50 warm-up), L = 10, centred groups", "hmc", "dual_averaging",
            "encoder_windowed", 4, 199, 10, warmup_fraction=0.25, parametrisation="centred"),
)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mass_matrix", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shared_arguments(parser, out_help="default runs/<dataset>-mass-matrix-eps<radius>")
    add_model_source_arguments(parser)
    parser.add_argument("--references", type=at_least_one, default=20)
    parser.add_argument("--radius", type=float, default=0.1)
    parser.add_argument("--only", default=None,
                        help="comma-separated numbers (1-based) of the settings to run; "
                             + "; ".join(f"{i}: {s.label}" for i, s in enumerate(SETTINGS, 1)))
    arguments = parser.parse_args(argv)
    if not 0 < arguments.radius <= 1:
        parser.error(f"--radius must lie in (0, 1], got {arguments.radius}")
    if arguments.only:
        try:
            chosen = [int(item) for item in arguments.only.split(",")]
        except ValueError:
            parser.error(f"--only takes numbers 1..{len(SETTINGS)}, got {arguments.only!r}")
        if not all(1 <= i <= len(SETTINGS) for i in chosen):
            parser.error(f"--only takes numbers 1..{len(SETTINGS)}, got {arguments.only!r}")
        arguments.only = chosen
    return arguments


def chain_figures(samples) -> dict:
    """The figures of one group's chains that the table shows, from :func:`inference.summarize`
    (its distributions over points: order statistics on the worse side)."""
    summary = summarize(to_inference_data(samples))
    return {"acceptance": summary.mean_accept_prob, "divergent_share": summary.divergence_rate,
            "rhat_median": summary.rhat_median, "rhat_p90": summary.rhat_p90,
            "ess_per_1000_evaluations_median": summary.ess_bulk_per_1k_grad_median,
            "gradient_evaluations_per_point": float(
                samples.num_grad_evals.sum(0).double().mean())}


def main(argv: list[str] | None = None) -> dict:
    arguments = parse_arguments(argv)
    profile = with_overrides(PROFILES["quick"], references=arguments.references, restarts=1,
                             radii=(arguments.radius,))
    setting = skl_setting(arguments, profile,
                          Path("runs") / f"{arguments.dataset}-mass-matrix-eps{arguments.radius:g}")
    run_dir, context, model = setting.run_dir, setting.context, setting.model
    x_ref, x_adv = setting.x_ref, setting.x_adv  # x_adv: the first restart, (N, C, H, W)
    oracle_start = latents.guide_latents(model.vae, x_ref, None)
    groups = {"clean": (x_ref, "sample"), f"skl@{arguments.radius:g}": (x_adv, "sample"),
              f"skl@{arguments.radius:g} oracle start": (x_adv, oracle_start)}

    def run(setting: Setting) -> dict:
        row = {"label": setting.label, "sampler": setting.sampler, "adapt": setting.adapt,
               "mass_matrix": setting.mass_matrix, "parametrisation": setting.parametrisation,
               "groups": {}}
        for name, (inputs, init) in groups.items():
            started = time.perf_counter()
            samples = defence.sample(context, model, inputs, init=init, sampler=setting.sampler,
                                     adapt=setting.adapt, mass_matrix=setting.mass_matrix,
                                     parametrisation=setting.parametrisation,
                                     progress_bar=False, **setting.budget(profile))
            seconds = time.perf_counter() - started
            with torch.no_grad():
                score = metrics.similarity_to_references(
                    model.vae, x_ref, metrics.decode_chains(model.vae, samples.final_z),
                    generator=context.generator())
            row["groups"][name] = {**chain_figures(samples), "seconds": seconds,
                                   "ms_ssim": metrics.summary(score[metrics.PAPER_VARIANT])["plain"]}
        return row

    code = ("inference", defence.THIS, metrics.THIS, __name__)
    after = (f"attacks/{model.tag}.pt",)
    chosen = [SETTINGS[i - 1] for i in arguments.only] if arguments.only else list(SETTINGS)
    rows = []
    for setting in chosen:
        print(f"  {setting.label}", flush=True)
        stage = "mass/" + (setting.label.replace(", ", "_").replace(" + ", "+").replace(" × ", "x")
                           .replace(" = ", "").replace(" ", "-")) + ".json"
        rows.append(run_dir.stage(stage, lambda s=setting: run(s), code=code, after=after,
                                  identity=model.identity))
    summary = {"dataset": arguments.dataset, "radius": arguments.radius,
               "references": len(x_ref), "model": model.identity, "rows": rows}
    run_dir.write_text("mass.json", json.dumps(summary, indent=2))
    text = render(summary)
    run_dir.write_text("mass.md", text)
    print(text)
    return summary


def render(summary: dict) -> str:
    lines = [f"Chains on {summary['dataset']} ({summary['model']}), {summary['references']} "
             f"references, SKL attack at radius {summary['radius']:g} (first restart). R-hat: "
             "each point's worst coordinate, median / 90th percentile over points; ESS: each "
             "point's smallest bulk ESS per 1,000 gradient evaluations, median over points; "
             "divergent: share of kept transitions; MS-SSIM: paper variant (SE).", "",
             "| setting | inputs | acceptance | divergent | R-hat median / p90 | ESS per 1k | "
             "gradients | MS-SSIM | seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        for name, group in row["groups"].items():
            lines.append(
                f"| {row['label']} | {name} | {group['acceptance']:.2f} "
                f"| {group['divergent_share']:.1%} | {group['rhat_median']:.2f} / "
                f"{group['rhat_p90']:.2f} | {group['ess_per_1000_evaluations_median']:.1f} "
                f"| {group['gradient_evaluations_per_point']:.0f} "
                f"| {group['ms_ssim'][0]:.3f} ({group['ms_ssim'][1]:.3f}) | {group['seconds']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
