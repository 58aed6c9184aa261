"""``python -m benchmarks.attack_check --dataset mnist``: attack one trained VAE with the paper's
protocol and print how much damage the attacks do (and, with ``--defend``, how much the defence
undoes).

The model is the pretrained zoo's (``--decoder-output`` picks the ColorMNIST variant) or any
checkpoint (``--checkpoint``). 50 stratified test references × 10 restarts (500 adversarial inputs
per radius, one batch), the unsupervised SKL attack on the guide-as-encoder and the classifier
attack on the latent classifier (PROTOCOL.md §6), scored as in Table 2 (§8): MS-SSIM (the paper's
variant, the standard one beside it) between reconstructions of reference and attack, and
adversarial accuracy. ``--defend hmc`` (or any batched sampler) also runs the defence on the SKL
attacks and the clean references; ``--diagnose`` adds the reference-code advantage and
oracle-start chains (see ``benchmarks.stages.metrics.diagnosis``). The full reproduction with
every table and figure is ``benchmarks.run``.

Everything is cached in ``--out``, which remembers its configuration and refuses another one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pyro_vae import DatasetNotFoundError
from pyro_vae.zoo import entry_name

from .artifacts import ConfigurationMismatch, RunDirectory
from .context import RunContext, Settings
from .profiles import PROFILES, with_overrides
from .report import diagnosis_lines, pair
from .run import (RUN_SAMPLERS, add_model_source_arguments, add_shared_arguments, at_least_one,
                  radius_list, resolve_device)
from .stages import attacks as attack_stages
from .stages import defence, metrics, models


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.attack_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shared_arguments(parser, out_help="default runs/attack-check/<model>")
    add_model_source_arguments(parser)
    parser.add_argument("--references", type=at_least_one, default=50)
    parser.add_argument("--restarts", type=at_least_one, default=10)
    parser.add_argument("--radii", type=radius_list, default=(0.1, 0.2), help="e.g. 0.1,0.2")
    parser.add_argument("--defend", choices=RUN_SAMPLERS, default=None,
                        help="also run this defence on the SKL attacks")
    parser.add_argument("--transitions", type=at_least_one, default=100, help="defence: T")
    parser.add_argument("--chains", type=at_least_one, default=2, help="defence: chains per input")
    parser.add_argument("--diagnose", action="store_true",
                        help="defence: reference-code advantage and oracle-start chains")
    arguments = parser.parse_args(argv)
    if arguments.diagnose and not arguments.defend:
        parser.error("--diagnose needs --defend")
    return arguments


def main(argv: list[str] | None = None) -> dict:
    arguments = parse_arguments(argv)
    device = resolve_device(arguments.device)
    model = models.load_checkpoint_or_zoo(arguments.dataset, arguments.checkpoint,
                                          decoder_output=arguments.decoder_output, device=device)
    config = model.vae.config
    profile = with_overrides(PROFILES["quick"], references=arguments.references,
                             restarts=arguments.restarts, radii=arguments.radii,
                             num_transitions=arguments.transitions, num_chains=arguments.chains,
                             models=((config.kind, config.beta),))
    name = (arguments.checkpoint.stem if arguments.checkpoint is not None else entry_name(
        arguments.dataset, config.kind, config.beta, decoder_output=config.decoder_output))
    run_dir = RunDirectory(arguments.out or Path("runs") / "attack-check" / name)
    try:
        run_dir.pin_configuration({
            "dataset": arguments.dataset, "model": model.identity, "seed": arguments.seed,
            "defence": arguments.defend, "profile": profile.to_dict()})
        settings = Settings(dataset=arguments.dataset, profile=profile,
                            sampler=arguments.defend or "hmc", device=device, seed=arguments.seed,
                            data_root=arguments.data_root, progress=not arguments.no_progress,
                            decoder_output=config.decoder_output)
        context = RunContext(settings, run_dir)
    except (ConfigurationMismatch, DatasetNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    _, x_ref, y_ref = attack_stages.references(context)
    classifiers, classifier_accuracy = models.classifiers(context, model)
    started = time.perf_counter()
    attacks = attack_stages.run_attacks(
        context, model, x_ref, attack_stages.table_objectives(model, classifiers),
        after=(f"classifiers/{model.tag}.pt",))
    # Time only an attack computed now; a cached one says nothing about its cost.
    attack_seconds = (time.perf_counter() - started
                      if f"attacks/{model.tag}.pt" in run_dir.computed else None)
    skl_only = {"skl": attacks["skl"]}
    upstream = (f"attacks/{model.tag}.pt",)
    defended = (defence.defend(context, model, defence.attack_groups(context, x_ref, skl_only),
                               after=upstream) if arguments.defend else None)
    downstream = (f"chains/{model.tag}.pt", *upstream) if defended else upstream

    def measure():
        summary = {"model": name, "identity": model.identity, "tag": model.tag,
                   "classifier_test_accuracy": classifier_accuracy,
                   "attacked_inputs_per_radius": len(x_ref) * profile.restarts,
                   "attack_objectives": len(attacks), "attack_seconds": attack_seconds,
                   "attacks": metrics.robustness(context, model, x_ref, y_ref, classifiers,
                                                 attacks, defended=None)}
        if defended is not None:
            summary["defence"] = {
                "sampler": arguments.defend, "num_transitions": defended["num_transitions"],
                "num_chains": profile.num_chains,
                "seconds_per_point": defended["seconds_per_point"],
                "gradient_evaluations_per_point": defended["gradient_evaluations_per_point"],
                "diagnostics": defended["diagnostics"],
                "robustness": metrics.robustness(context, model, x_ref, y_ref, {}, skl_only,
                                                 defended)}
        return summary

    code = ("attacks", "inference", metrics.THIS)
    summary = run_dir.stage("attack_check.json", measure, code=code, after=downstream,
                            identity=model.identity)
    if arguments.diagnose:
        summary["diagnosis"] = run_dir.stage(
            "diagnosis.json", lambda: metrics.diagnosis(context, model, x_ref, attacks, defended),
            code=code, after=downstream, identity=model.identity)
    text = render(summary, radii=profile.radii)
    run_dir.write_text("attack_check.md", text)
    print(text)
    return summary


def render(summary: dict, *, radii) -> str:
    attacks = summary["attacks"]
    seconds = summary["attack_seconds"]
    per_attack = (f"{seconds / (summary['attack_objectives'] * len(radii)):.1f} s per "
                  f"{summary['attacked_inputs_per_radius']}-input attack and radius"
                  if seconds is not None else "attack time not recorded (attacks were cached)")
    lines = [f"Attacks on {summary['model']} ({summary['identity'][:17]}…): "
             f"{summary['attacked_inputs_per_radius']} adversarial inputs per radius; "
             f"{per_attack}.",
             "Mean (standard error over references). MS-SSIM: sampled reconstructions as in the "
             "paper, paper variant (standard variant in brackets), and decoded encoder means. "
             "Accuracy: fraction of attacks that keep the clean prediction (radius 0: clean "
             "accuracy against labels).", "",
             f"MS-SSIM between two sampled reconstructions of the same clean reference (the "
             f"ceiling): {pair(attacks['ms_ssim_clean'])} "
             f"[{pair(attacks['ms_ssim_standard_clean'])}]", "",
             "| radius | SKL reached | MS-SSIM (sampled) [standard] | MS-SSIM (means) | "
             + " | ".join(f"accuracy {task}" for task in attacks["accuracy"]) + " |",
             "|---|---|---|---|" + "---|" * len(attacks["accuracy"])]
    for radius in ("0", *(f"{r:g}" for r in radii)):
        similarity = ([pair(attacks["attack_objective"]["skl"][radius]["plain"]),
                       f"{pair(attacks['ms_ssim'][radius]['plain'])} "
                       f"[{pair(attacks['ms_ssim_standard'][radius]['plain'])}]",
                       pair(attacks["ms_ssim_mean_reconstruction"][radius]["plain"])]
                      if radius != "0" else ["—", "—", "—"])
        accuracy = [pair(per_task[radius]["plain"]) for per_task in attacks["accuracy"].values()]
        lines.append(f"| {radius} | " + " | ".join(similarity + accuracy) + " |")
    if "defence" in summary:
        defence_summary = summary["defence"]
        robustness = defence_summary["robustness"]
        evaluations = defence_summary["gradient_evaluations_per_point"]
        lines += ["", f"Defence: {defence_summary['sampler']}, T = "
                      f"{defence_summary['num_transitions']}, {defence_summary['num_chains']} "
                      f"chains per input, {defence_summary['seconds_per_point']:.3f} s per input "
                      f"(all chains)"
                      + (f", {evaluations:.0f} gradient evaluations per input" if evaluations
                         else "") + ".", "",
                  "| radius | MS-SSIM sampled: none → defended | standard variant | means: none → "
                  "defended | worst R-hat | acceptance |", "|---|---|---|---|---|---|"]
        for r in radii:
            key = f"{r:g}"
            sampled, standard, means = (robustness[name][key] for name in (
                "ms_ssim", "ms_ssim_standard", "ms_ssim_mean_reconstruction"))
            diagnostics = defence_summary["diagnostics"][f"skl@{key}"]
            lines.append(f"| {key} | {pair(sampled['plain'])} → {pair(sampled['defended'])} "
                         f"| {pair(standard['plain'])} → {pair(standard['defended'])} "
                         f"| {pair(means['plain'])} → {pair(means['defended'])} "
                         f"| {diagnostics['max_rhat']:.2f} "
                         f"| {diagnostics['mean_accept_prob']:.2f} |")
    if "diagnosis" in summary:
        lines += ["", *diagnosis_lines(summary["diagnosis"])]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
