"""``python -m benchmarks.attack_check --dataset mnist --checkpoint <model.pt>``: attack one
trained VAE with the paper's protocol and print how much damage the attacks do.

50 stratified test references × 10 restarts (500 adversarial inputs per radius, one batch), the
unsupervised SKL attack on the guide-as-encoder and the classifier attack on the latent classifier
(PROTOCOL.md §6), scored as in Table 2 (§8): MS-SSIM between reconstructions of reference and
attack, and adversarial accuracy. ``--defend hmc`` (or ``nuts``, ``map``) also runs the defence on
the SKL attacks and the clean references and adds the defended MS-SSIM; the full reproduction with
every table and figure is ``benchmarks.run``.

Everything is cached in ``--out`` (default: beside the checkpoint), which remembers its
configuration and refuses another one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pyro
import torch

from attacks import mean_and_standard_error, ms_ssim
from inference import log_posterior_ratio
from pyro_vae import CheckpointError, ConvVAE, DatasetNotFoundError, load_checkpoint, log_joint

from .artifacts import ConfigurationMismatch, RunDirectory
from .experiment import Experiment, Settings, encoder_latent, model_tag
from .profiles import PROFILES, with_overrides
from .run import RUN_SAMPLERS, add_shared_arguments, radius_list, resolve_device


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.attack_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shared_arguments(parser, out_help="default <checkpoint folder>/../attack-check-"
                                          "<checkpoint name>")
    parser.add_argument("--checkpoint", required=True, type=Path,
                        help="a model saved by benchmarks.run or benchmarks.model_quality")
    parser.add_argument("--references", type=int, default=50)
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--radii", type=radius_list, default=(0.1, 0.2), help="e.g. 0.1,0.2")
    parser.add_argument("--defend", choices=RUN_SAMPLERS, default=None,
                        help="also run this defence on the SKL attacks")
    parser.add_argument("--transitions", type=int, default=100, help="defence: T")
    parser.add_argument("--chains", type=int, default=2, help="defence: chains per input")
    parser.add_argument("--oracle-start", action="store_true",
                        help="defence: also start the chains at the reference's code μ(x_r)")
    arguments = parser.parse_args(argv)
    for name in ("references", "restarts", "transitions", "chains"):
        if getattr(arguments, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if arguments.oracle_start and not arguments.defend:
        parser.error("--oracle-start needs --defend")
    return arguments


@torch.no_grad()
def reference_code_advantage(vae: ConvVAE, x_ref: torch.Tensor, adversarial: torch.Tensor) -> dict:
    """Does the model itself still explain x_a best with the reference's code?

    Per attack, log p(x_a, μ(x_r)) − log p(x_a, μ(x_a)) (eq. 11 with x_a in place of x_r):
    positive means the true posterior of the attacked input prefers the reference's code, as the
    defence assumes (the attack fooled only the encoder); negative means the perturbation also
    moved what the likelihood prefers, so even exact samples of p(z | x_a) need not look like
    the reference (``--oracle-start`` tests this with the chains themselves). Both codes are
    encoder means, not posterior modes: a screening figure, not a proof.

    Shape:
        x_ref: (N, C, H, W); adversarial: (N, R, C, H, W) → mean (SE over references) and the
        fraction of attacks with a positive advantage
    """
    refs, restarts = adversarial.shape[:2]
    x_adv = adversarial.flatten(0, 1)
    code_ref = vae.encode(x_ref)[0].repeat_interleave(restarts, 0)
    with pyro.validation_enabled(False):
        advantage = log_posterior_ratio(vae.model, (x_adv,), code_ref, vae.encode(x_adv)[0])
    advantage = advantage.view(refs, restarts)
    return {"mean": mean_and_standard_error(advantage),
            "fraction_positive": (advantage > 0).float().mean().item()}


@torch.no_grad()
def oracle_start(experiment: Experiment, vae: ConvVAE, x_ref: torch.Tensor,
                 adversarial: torch.Tensor, defended_z: torch.Tensor) -> dict:
    """The defence started at the reference's own code μ(x_r) instead of z₀ ~ q(z | x_a).

    If the chains targeting p(z | x_a) leave μ(x_r) for the attacked region, the posterior
    itself has moved with the attack. Compares with the normal start (``defended_z``, the
    final states of the same sampler started from the guide): MS-SSIM of the final states
    against sampled reference reconstructions, and the log density log p(x_a, z) they reach.

    Shape:
        x_ref: (N, C, H, W); adversarial: (N, R, C, H, W); defended_z: (chains, N·R, D)
    """
    refs, restarts = adversarial.shape[:2]
    x_adv = adversarial.flatten(0, 1)
    start = vae.encode(x_ref)[0].repeat_interleave(restarts, 0)
    with torch.enable_grad():
        oracle_z = experiment.sample(vae, x_adv, init=start).final_z
    generator = torch.Generator(device=x_ref.device).manual_seed(experiment.settings.seed)
    result = {}
    for name, final_z in (("guide_start", defended_z.to(x_ref.device)), ("oracle_start", oracle_z)):
        chains = final_z.shape[0]
        z = final_z.transpose(0, 1).flatten(0, 1)  # point-major: (N·R·chains, D)
        copies = x_ref.repeat_interleave(restarts * chains, 0)
        reference = vae.decode(encoder_latent(vae, copies, generator))
        result[name] = {
            "ms_ssim": mean_and_standard_error(
                ms_ssim(reference, vae.decode(z)).view(refs, restarts * chains)),
            "log_joint": mean_and_standard_error(
                log_joint(vae, x_adv.repeat_interleave(chains, 0), z).view(refs, -1))}
    return result


def main(argv: list[str] | None = None) -> dict:
    arguments = parse_arguments(argv)
    device = resolve_device(arguments.device)
    try:
        vae = load_checkpoint(arguments.checkpoint, map_location=device).requires_grad_(False)
    except (CheckpointError, FileNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    tag = model_tag(vae.config.kind, vae.config.beta)
    profile = with_overrides(PROFILES["quick"], references=arguments.references,
                             restarts=arguments.restarts, radii=arguments.radii,
                             num_transitions=arguments.transitions, num_chains=arguments.chains,
                             models=((vae.config.kind, vae.config.beta),))
    out = arguments.out or (arguments.checkpoint.resolve().parent.parent
                            / f"attack-check-{arguments.checkpoint.stem}")
    run_dir = RunDirectory(out)
    try:
        run_dir.pin_configuration({
            "dataset": arguments.dataset, "checkpoint": str(arguments.checkpoint.resolve()),
            "seed": arguments.seed, "defence": arguments.defend, "profile": profile.to_dict()})
        settings = Settings(dataset=arguments.dataset, profile=profile,
                            sampler=arguments.defend or "hmc", device=device, seed=arguments.seed,
                            data_root=arguments.data_root, progress=not arguments.no_progress)
        experiment = Experiment(settings, run_dir)
    except (ConfigurationMismatch, DatasetNotFoundError) as error:
        raise SystemExit(f"error: {error}") from None
    vae.eval()
    _, x_ref, y_ref = experiment.references()
    classifiers, classifier_accuracy = experiment.classifiers(vae, tag)

    started = time.perf_counter()
    adversarial = experiment.attacks(vae, tag, x_ref, classifiers)
    # Time only an attack computed now; a cached one says nothing about its cost.
    attack_seconds = (time.perf_counter() - started
                      if f"attacks/{tag}.pt" in run_dir.computed else None)
    skl_only = {"skl": adversarial["skl"]}
    defended = experiment.defend(vae, tag, x_ref, skl_only) if arguments.defend else None

    def measure():
        summary = {"checkpoint": str(arguments.checkpoint), "tag": tag,
                   "classifier_test_accuracy": classifier_accuracy,
                   "attacked_inputs_per_radius": len(x_ref) * profile.restarts,
                   "attack_objectives": len(adversarial), "attack_seconds": attack_seconds,
                   "attacks": experiment.robustness(vae, x_ref, y_ref, classifiers, adversarial,
                                                    defended=None),
                   "reference_code_advantage": {
                       f"{radius:g}": reference_code_advantage(vae, x_ref, adversarial["skl"][k])
                       for k, radius in enumerate(profile.radii)}}
        if defended is not None:
            summary["defence"] = {
                "sampler": arguments.defend, "num_transitions": defended["num_transitions"],
                "num_chains": profile.num_chains,
                "seconds_per_point": defended["seconds_per_point"],
                "diagnostics": defended["diagnostics"],
                "robustness": experiment.robustness(vae, x_ref, y_ref, {}, skl_only, defended)}
        return summary

    summary = run_dir.stage("attack_check.json", measure)
    if arguments.oracle_start:
        # Its own stage: the configuration (hence every cached stage) does not depend on it.
        summary["oracle_start"] = run_dir.stage("oracle_start.json", lambda: {
            f"{r:g}": oracle_start(experiment, vae, x_ref, adversarial["skl"][k],
                                   defended["final_z"][f"skl@{r:g}"])
            for k, r in enumerate(profile.radii)})
    text = render(summary, radii=profile.radii)
    run_dir.write_text("attack_check.md", text)
    print(text)
    return summary


def _pair(value) -> str:
    return f"{value[0]:.3f} ({value[1]:.3f})"


def render(summary: dict, *, radii) -> str:
    attacks = summary["attacks"]
    seconds = summary["attack_seconds"]
    per_attack = (f"{seconds / (summary['attack_objectives'] * len(radii)):.1f} s per "
                  f"{summary['attacked_inputs_per_radius']}-input attack and radius"
                  if seconds is not None else "attack time not recorded (attacks were cached)")
    lines = [f"Attacks on {summary['tag']} ({summary['checkpoint']}): "
             f"{summary['attacked_inputs_per_radius']} adversarial inputs per radius; "
             f"{per_attack}.",
             "Mean (standard error over references). MS-SSIM: sampled reconstructions as in the "
             "paper, and decoded encoder means. Accuracy: fraction of attacks that keep the clean "
             "prediction (radius 0: clean accuracy against labels).", "",
             f"MS-SSIM between two sampled reconstructions of the same clean reference (the "
             f"ceiling): {_pair(attacks['ms_ssim_clean'])}", "",
             "| radius | MS-SSIM (sampled) | MS-SSIM (means) | "
             + " | ".join(f"accuracy {task}" for task in attacks["accuracy"]) + " |",
             "|---|---|---|" + "---|" * len(attacks["accuracy"])]
    for radius in ("0", *(f"{r:g}" for r in radii)):
        similarity = ([_pair(attacks["ms_ssim"][radius]["plain"]),
                       _pair(attacks["ms_ssim_mean_reconstruction"][radius]["plain"])]
                      if radius != "0" else ["—", "—"])
        accuracy = [_pair(per_task[radius]["plain"]) for per_task in attacks["accuracy"].values()]
        lines.append(f"| {radius} | " + " | ".join(similarity + accuracy) + " |")
    lines += ["", "Does p(z | x_a) still prefer the reference's code? log p(x_a, μ(x_r)) − "
                  "log p(x_a, μ(x_a)) per SKL attack (> 0: only the encoder was fooled, a sampler "
                  "can undo the attack; < 0: the likelihood itself moved):", ""]
    for radius, advantage in summary["reference_code_advantage"].items():
        lines.append(f"- radius {radius}: {advantage['mean'][0]:.1f} nats "
                     f"(SE {advantage['mean'][1]:.1f}); positive for "
                     f"{advantage['fraction_positive']:.0%} of the attacks")
    if "defence" in summary:
        defence = summary["defence"]
        robustness = defence["robustness"]
        lines += ["", f"Defence: {defence['sampler']}, T = {defence['num_transitions']}, "
                      f"{defence['num_chains']} chains per input, "
                      f"{defence['seconds_per_point']:.3f} s per input (all chains).", "",
                  "| radius | MS-SSIM sampled: none → defended | means: none → defended "
                  "| worst R-hat | acceptance |", "|---|---|---|---|---|"]
        for r in radii:
            key = f"{r:g}"
            sampled, means = (robustness[name][key] for name in
                              ("ms_ssim", "ms_ssim_mean_reconstruction"))
            diagnostics = defence["diagnostics"][f"skl@{key}"]
            lines.append(f"| {key} | {_pair(sampled['plain'])} → {_pair(sampled['defended'])} "
                         f"| {_pair(means['plain'])} → {_pair(means['defended'])} "
                         f"| {diagnostics['max_rhat']:.2f} "
                         f"| {diagnostics['mean_accept_prob']:.2f} |")
    if "oracle_start" in summary:
        lines += ["", "Oracle start: the same chains started at the reference's code μ(x_r) "
                      "(final states; MS-SSIM against sampled reference reconstructions, "
                      "log p(x_a, z) in nats):", "",
                  "| radius | start | MS-SSIM | log p(x_a, z) |", "|---|---|---|---|"]
        for radius, starts in summary["oracle_start"].items():
            for start, label in (("guide_start", "z₀ ~ q(z\\|x_a)"), ("oracle_start", "μ(x_r)")):
                lines.append(f"| {radius} | {label} | {_pair(starts[start]['ms_ssim'])} "
                             f"| {starts[start]['log_joint'][0]:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
