"""``python -m benchmarks.model_quality --dataset mnist --models vae,beta_tcvae:5 --epochs 10``:
train (or reuse) VAEs and measure their test quality (paper Table 7) with a chosen k.

The robustness run (``benchmarks.run``) evaluates the NLL with the profile's cheap settings; this
command is for the figure that needs the paper's k = 1000 importance samples, on the whole test
set or on its first ``--points`` images (the standard error says how much that costs).
Models are trained exactly as ``benchmarks.run`` trains them (same profile, same stage), and are
cached in ``<out>/models/``; every evaluation is cached in ``<out>/quality/`` under a name that
carries k and the number of points, so an interrupted run loses only the evaluation in flight.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from pyro_vae import DatasetNotFoundError, evaluate_vae

from .artifacts import RunDirectory
from .experiment import Experiment, Settings, model_tag
from .profiles import PROFILES, with_overrides
from .run import add_shared_arguments, model_list, resolve_device


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.model_quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shared_arguments(parser, out_help="default runs/<dataset>-models-e<epochs>-seed<seed>")
    parser.add_argument("--models", type=model_list, default=(("vae", 1.0),),
                        help="e.g. vae,beta_vae:5,beta_tcvae:5 (default: vae)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--nll-samples", type=int, default=1000, help="importance samples k")
    parser.add_argument("--points", type=int, default=None,
                        help="evaluate the first N test images (default: all)")
    arguments = parser.parse_args(argv)
    for name in ("epochs", "nll_samples", "points"):
        value = getattr(arguments, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return arguments


def main(argv: list[str] | None = None) -> dict:
    arguments = parse_arguments(argv)
    device = resolve_device(arguments.device)
    # The quick profile's training settings with the requested epochs: the same stage that
    # benchmarks.run uses, so a checkpoint from one is valid for the other.
    profile = with_overrides(PROFILES["quick"], epochs=arguments.epochs, models=arguments.models)
    out = arguments.out or Path("runs") / (f"{arguments.dataset}-models-e{arguments.epochs}"
                                           f"-seed{arguments.seed}")
    settings = Settings(dataset=arguments.dataset, profile=profile, sampler="hmc", device=device,
                        seed=arguments.seed, data_root=arguments.data_root,
                        progress=not arguments.no_progress)
    run_dir = RunDirectory(out)
    try:
        experiment = Experiment(settings, run_dir)
    except DatasetNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    points = arguments.points or len(experiment.splits.test)
    rows = {}
    for kind, beta in arguments.models:
        tag = model_tag(kind, beta)
        vae, training = experiment.model(kind, beta)
        evaluation = run_dir.stage(
            f"quality/{tag}_k{arguments.nll_samples}_n{points}.json",
            lambda: evaluate_vae(vae, experiment.splits.test, device=device,
                                 num_importance_samples=arguments.nll_samples, max_points=points,
                                 seed=arguments.seed,
                                 progress=not arguments.no_progress).to_dict())
        rows[tag] = {**evaluation, "epochs": arguments.epochs,
                     "seconds_per_epoch": statistics.median(training["epoch_seconds"])}
    print(render(rows, dataset=arguments.dataset, out=out))
    return rows


def render(rows: dict, *, dataset: str, out: Path) -> str:
    lines = [f"Test quality on {dataset} ({out})", "",
             "| model | epochs | test points | k | NLL (nats, SE) | −ELBO | MSE (0–255) "
             "| s / epoch (median) |", "|---|---|---|---|---|---|---|---|"]
    for tag, row in rows.items():
        lines.append(f"| {tag} | {row['epochs']} | {row['num_points']} "
                     f"| {row['num_importance_samples']} | {row['nll']:.2f} "
                     f"({row['nll_standard_error']:.2f}) | {-row['elbo']:.2f} | {row['mse']:.1f} "
                     f"| {row['seconds_per_epoch']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
