"""``python -m benchmarks.seed_spread --dataset mnist --epochs 5 --model-seeds 0,1,2``: how much
the cells of Tables 2–4 move between models that differ only in their training seed.

Runs ``benchmarks.run`` once per model seed (``--train --model-seed s``; every other option is
passed through, so references, attacks and chains are the same in every run) into
``<out>/model-seed<s>/``, and writes ``<out>/spread.md`` and ``spread.json``: every VAE and
VAE + defence cell per seed, their mean and the standard deviation between seeds. A difference
from the paper smaller than this spread is model-to-model noise, not a finding.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from . import run as runner
from .artifacts import atomic_write_text
from .report import _columns


def seed_list(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"model seeds must be comma-separated integers, "
                                         f"got {text!r}") from None
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError("give at least two distinct model seeds")
    return seeds


def parse_arguments(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.seed_spread", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Other options go to benchmarks.run.")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model-seeds", type=seed_list, default=(0, 1, 2))
    parser.add_argument("--epochs", type=runner.at_least_one, default=5)
    parser.add_argument("--out", type=Path, default=None,
                        help="default runs/<dataset>-seed-spread-e<epochs>")
    arguments, passed_on = parser.parse_known_args(argv)
    for forbidden in ("--train", "--model-seed", "--out", "--models"):
        if forbidden in passed_on:
            parser.error(f"{forbidden} is set by seed_spread itself")
    return arguments, passed_on


def main(argv: list[str] | None = None) -> dict:
    arguments, passed_on = parse_arguments(argv)
    out = arguments.out or Path("runs") / f"{arguments.dataset}-seed-spread-e{arguments.epochs}"
    per_seed = {}
    for seed in arguments.model_seeds:
        results = runner.main(["--dataset", arguments.dataset, "--train", "--models", "vae",
                               "--epochs", str(arguments.epochs), "--model-seed", str(seed),
                               "--out", str(out / f"model-seed{seed}"), *passed_on])
        per_seed[seed] = {**results, **results["experiments"]["tables"]}
    spread = tabulate(per_seed)
    atomic_write_text(out / "spread.json", json.dumps(spread, indent=2))
    text = render(spread, dataset=arguments.dataset, epochs=arguments.epochs)
    atomic_write_text(out / "spread.md", text)
    print(text)
    return spread


def tabulate(per_seed: dict[int, dict]) -> dict:
    """Cell → {"per_seed": {seed: mean}, "mean", "between_seed_sd", "within_run_se"} for the
    VAE rows without and with the defence."""
    first = next(iter(per_seed.values()))
    cells = {}
    for header, getter, _ in _columns(first):
        for defended in (False, True):
            values = {seed: getter(results["models"]["vae_beta1"], defended)
                      for seed, results in per_seed.items()}
            means = [value[0] for value in values.values()]
            name = f"{'VAE + defence' if defended else 'VAE'} · {header}"
            cells[name] = {"per_seed": {str(seed): value[0] for seed, value in values.items()},
                           "mean": statistics.fmean(means),
                           "between_seed_sd": statistics.stdev(means),
                           "within_run_se": statistics.fmean(value[1] for value in values.values())}
    return cells


def render(spread: dict, *, dataset: str, epochs: int) -> str:
    seeds = list(next(iter(spread.values()))["per_seed"])
    lines = [f"Model-seed spread on {dataset}: VAE trained {epochs} epochs with model seeds "
             f"{', '.join(seeds)}; references, attacks and chains identical across runs.", "",
             "| cell | " + " | ".join(f"seed {s}" for s in seeds)
             + " | mean | SD between seeds | mean SE within a run |",
             "|---|" + "---|" * (len(seeds) + 3)]
    for name, cell in spread.items():
        digits = 1 if "MSE" in name else 3
        values = " | ".join(f"{cell['per_seed'][s]:.{digits}f}" for s in seeds)
        lines.append(f"| {name} | {values} | {cell['mean']:.{digits}f} "
                     f"| {cell['between_seed_sd']:.{digits}f} | {cell['within_run_se']:.{digits}f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
