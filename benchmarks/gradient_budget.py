"""``python -m benchmarks.gradient_budget --dataset mnist``: defended MS-SSIM against the number of
potential-gradient evaluations each defended input costs, for every sampler and budget.

Robustness per gradient evaluation: the unit in which every sampler's cost is comparable (a
gradient of log p(x|z) p(z) is one decoder forward and backward pass, on any device). On the SKL
attacks of the zoo's model at one radius (first restart of every stratified reference), the
paper's HMC (fixed L = 20, the paper's step-size rule, no jitter) runs from a few transitions up to
the paper's budget (250 warm-up + 500 transitions, ≈ 15,750 evaluations per chain), beside
jittered HMC with the paper's rule, HMC, NUTS and MALA with their defaults (dual averaging and
the mass matrix of ``inference.samplers``), and MAP. Writes ``budget.json``, ``budget.md`` and ``budget.png`` into
the output folder; every setting is its own cached stage. The table names the cheapest setting
that reaches 95 % of the paper-budget gain, and the cheapest MCMC one (mode finding left out).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from inference import SAMPLERS

from .figures import gradient_budget_curve
from .profiles import PAPER_SAMPLER, PROFILES, with_overrides
from .run import add_model_source_arguments, add_shared_arguments, at_least_one
from .single_model import skl_setting
from .stages import defence, latents, metrics

GAIN_SHARE = 0.95  # "reaches the paper's gain": at least this share of the paper-budget gain


@dataclass(frozen=True)
class Budget:
    """One sampler setting: warm-up and kept transitions (the defended latent is the final
    state), leapfrog steps where the sampler has them, its step-size jitter, adaptation and mass
    matrix (None: the sampler's default)."""

    label: str
    sampler: str
    num_warmup: int
    num_samples: int
    num_leapfrog_steps: int = 20
    jitter: float | None = None
    adapt: str | None = None
    mass_matrix: str | None = None

    @property
    def stage(self) -> str:
        return f"budget/{self.label.replace(' ', '_').replace(',', '')}.json"


def budgets() -> list[Budget]:
    """The grid: the paper's HMC from 4 to 750 transitions (its budget), then the others."""
    paper = dict(jitter=0.0, adapt="paper", mass_matrix="identity")
    grid = [Budget(f"hmc paper T={t}", "hmc", t // 2, t - t // 2, **paper) for t in (4, 10, 20, 50, 100)]
    grid.append(Budget("hmc paper budget T=250+500", "hmc", 250, 500, **paper))
    grid += [Budget(f"hmc jittered T={t}", "hmc", t // 2, t - t // 2, adapt="paper",
                    mass_matrix="identity") for t in (10, 20, 50, 100)]
    grid += [Budget(f"hmc default T={t}", "hmc", t // 2, t - t // 2) for t in (20, 50, 100)]
    grid += [Budget(f"nuts T={t}", "nuts", t // 2, t - t // 2) for t in (10, 20, 50)]
    grid += [Budget(f"mala T={t}", "mala", t // 2, t - t // 2, num_leapfrog_steps=1)
             for t in (50, 200)]
    grid += [Budget(f"map T={t}", "map", 0, t) for t in (20, 200)]
    return grid


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gradient_budget",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shared_arguments(parser, out_help="default runs/<dataset>-gradient-budget-eps<radius>")
    add_model_source_arguments(parser)
    parser.add_argument("--references", type=at_least_one, default=50)
    parser.add_argument("--radius", type=float, default=0.1)
    parser.add_argument("--chains", type=at_least_one, default=2)
    parser.add_argument("--only", default=None,
                        help="comma-separated labels of the grid to run (default: all)")
    arguments = parser.parse_args(argv)
    if not 0 < arguments.radius <= 1:
        parser.error(f"--radius must lie in (0, 1], got {arguments.radius}")
    known = {budget.label for budget in budgets()}
    if arguments.only:
        unknown = set(arguments.only.split(",")) - known
        if unknown:
            parser.error(f"unknown settings {sorted(unknown)}; choose from {sorted(known)}")
    return arguments


def main(argv: list[str] | None = None) -> dict:
    arguments = parse_arguments(argv)
    profile = with_overrides(PROFILES["quick"], references=arguments.references, restarts=1,
                             radii=(arguments.radius,), num_chains=arguments.chains)
    setting = skl_setting(arguments, profile,
                          Path("runs") / f"{arguments.dataset}-gradient-budget-eps{arguments.radius:g}")
    run_dir, context, model = setting.run_dir, setting.context, setting.model
    x_ref, x_adv = setting.x_ref, setting.x_adv  # x_adv: the first restart, (N, C, H, W)
    step_size = PAPER_SAMPLER[arguments.dataset][1]
    generator = context.generator
    chosen = [b for b in budgets()
              if not arguments.only or b.label in arguments.only.split(",")]

    def undefended():
        images = latents.decode(model.vae, latents.guide_latents(model.vae, x_adv, generator()))
        score = metrics.similarity_to_references(model.vae, x_ref, images, generator=generator())
        return {"label": "no defence", "sampler": None, "gradient_evaluations_per_point": 0.0,
                "seconds_per_point": 0.0, **_scores(score)}

    def defended(budget: Budget):
        started = time.perf_counter()
        samples = defence.sample(context, model, x_adv, num_warmup=budget.num_warmup,
                                 num_samples=budget.num_samples, sampler=budget.sampler,
                                 step_size=step_size,
                                 num_leapfrog_steps=budget.num_leapfrog_steps,
                                 jitter=budget.jitter, progress_bar=False,
                                 **{key: value for key, value in (("adapt", budget.adapt),
                                                                  ("mass_matrix", budget.mass_matrix))
                                    if value is not None})
        seconds = time.perf_counter() - started
        with torch.no_grad():
            score = metrics.similarity_to_references(
                model.vae, x_ref, metrics.decode_chains(model.vae, samples.final_z),
                generator=generator())
        return {"label": budget.label, "sampler": budget.sampler,
                "num_transitions": budget.num_warmup + budget.num_samples,
                "num_leapfrog_steps": budget.num_leapfrog_steps, "jitter": samples.config.jitter,
                "gradient_evaluations_per_point":
                    defence.gradient_evaluations_per_point(samples) / arguments.chains,
                "seconds_per_point": seconds / len(x_adv) / arguments.chains, **_scores(score)}

    code = ("inference", defence.THIS, metrics.THIS, __name__)
    after = (f"attacks/{model.tag}.pt",)
    rows = [run_dir.stage("budget/none.json", undefended, code=code, after=after,
                          identity=model.identity)]
    for budget in chosen:
        print(f"  {budget.label}")
        rows.append(run_dir.stage(budget.stage, lambda b=budget: defended(b), code=code,
                                  after=after, identity=model.identity))
    summary = {"dataset": arguments.dataset, "radius": arguments.radius,
               "references": len(x_ref), "chains": arguments.chains, "model": model.identity,
               "rows": rows, "cheapest": cheapest(rows),
               "cheapest_mcmc": cheapest(rows, mcmc_only=True)}
    run_dir.write_text("budget.json", json.dumps(summary, indent=2))
    text = render(summary)
    run_dir.write_text("budget.md", text)
    gradient_budget_curve(rows, run_dir.path("budget.png"), radius=arguments.radius)
    print(text)
    return summary


def _scores(score: dict[str, torch.Tensor]) -> dict:
    paper = metrics.summary(score[metrics.PAPER_VARIANT])
    return {"ms_ssim": paper["plain"], "ms_ssim_per_reference": paper["per_reference"]["plain"],
            "ms_ssim_standard": metrics.summary(score["standard"])["plain"]}


def cheapest(rows: list[dict], *, mcmc_only: bool = False) -> dict | None:
    """The setting with the fewest gradient evaluations whose gain over no defence is at least
    95 % of the paper budget's gain, among the MCMC samplers only with ``mcmc_only`` (mode
    finding left out); None when the paper budget was not run."""
    baseline = next(row for row in rows if row["sampler"] is None)["ms_ssim"][0]
    paper = next((row for row in rows if row["label"].startswith("hmc paper budget")), None)
    if paper is None:
        return None
    target = baseline + GAIN_SHARE * (paper["ms_ssim"][0] - baseline)
    reaching = [row for row in rows if row["sampler"] and row["ms_ssim"][0] >= target
                and (SAMPLERS[row["sampler"]].mcmc or not mcmc_only)]
    best = min(reaching, key=lambda row: row["gradient_evaluations_per_point"])
    return {"label": best["label"], "target": target,
            "gradient_evaluations_per_point": best["gradient_evaluations_per_point"],
            "share_of_paper_budget": best["gradient_evaluations_per_point"]
            / paper["gradient_evaluations_per_point"]}


def render(summary: dict) -> str:
    lines = [f"Defended MS-SSIM (paper variant; standard in the next column) per gradient "
             f"evaluation on {summary['dataset']}: SKL attacks at radius {summary['radius']:g}, "
             f"{summary['references']} references (first restart), {summary['chains']} chains "
             "each; evaluations and seconds are per chain and input, warm-up included.", "",
             "| setting | gradient evaluations | seconds | MS-SSIM | standard |",
             "|---|---|---|---|---|"]
    for row in summary["rows"]:
        lines.append(f"| {row['label']} | {row['gradient_evaluations_per_point']:.0f} "
                     f"| {row['seconds_per_point']:.4f} | {row['ms_ssim'][0]:.3f} "
                     f"({row['ms_ssim'][1]:.3f}) | {row['ms_ssim_standard'][0]:.3f} |")
    for key, what in (("cheapest", "setting"), ("cheapest_mcmc", "MCMC setting")):
        best = summary[key]
        if best:
            lines += ["", f"Cheapest {what} reaching {GAIN_SHARE:.0%} of the paper-budget gain "
                          f"(MS-SSIM ≥ {best['target']:.3f}): {best['label']}, "
                          f"{best['gradient_evaluations_per_point']:.0f} evaluations "
                          f"({best['share_of_paper_budget']:.1%} of the paper budget)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
