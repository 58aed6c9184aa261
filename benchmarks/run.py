"""``python -m benchmarks.run --dataset colormnist [--experiment NAME]``: reproduce the paper's
Tables 2–4 end to end (``tables``, the default), or run one of the other experiments
(:mod:`benchmarks.experiments`: the posterior ratio, robustness against T, the radius sweep,
every attack objective, every sampler).

Writes into the run directory (default ``runs/<dataset>-<profile>-<sampler>``, with
``-identity`` / ``-train`` appended for those options), which every experiment of the same
settings shares: ``results.json`` (the run's settings, versions and device, and one section per
experiment run so far), ``report.md`` (all those sections), each experiment's figures, the chains
as ArviZ NetCDF (``chains/``), and every intermediate stage, which a rerun or another experiment
reuses (``--fresh`` recomputes).

``--models paper --zoo-only`` runs the paper's seven models (VAE, β-VAE and β-TCVAE with β 2, 5,
10) from the pretrained zoo, stopping before any work when an entry is missing (it names each one
and the command that trains it); ``--eval-points`` / ``--nll-samples`` / ``--fid-points`` /
``--feature-epochs`` size the model evaluation, and a zoo model whose provenance records the same
k and points reuses its recorded ELBO / NLL / MSE.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import torch

from inference import SAMPLERS
from pyro_vae import DATASET_NAMES, MODEL_KINDS, DatasetNotFoundError, load_checkpoint
from pyro_vae.checkpoint import CheckpointError
from pyro_vae.vae import DECODER_OUTPUTS
from pyro_vae.zoo import ZOO_DIR, entry_name, sha256_of, training_command, zoo_index

from .artifacts import ConfigurationMismatch, RunDirectory
from .context import RunContext, Settings
from .experiments import EXPERIMENTS
from .provenance import current_commit, uncommitted_files
from .stages.models import model_tag
from .profiles import PAPER_MODELS, PROFILES, TRAINING_FIELDS, Profile, with_overrides
from .report import render

RUN_SAMPLERS = tuple(s for s in SAMPLERS if not s.startswith("pyro_"))  # batched ones only
SCHEMA_VERSION = 3


def radius_list(text: str) -> tuple[float, ...]:
    try:
        radii = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"radii must be comma-separated numbers, got {text!r}")
    if not all(0 < r <= 1 for r in radii):
        raise argparse.ArgumentTypeError(f"radii must lie in (0, 1], got {text!r}")
    return radii


MODEL_FORMS = ("vae, beta_vae:<β>, beta_tcvae:<β>, hvae or hvae:<β> (the hierarchical VAE, "
               "every group's KL weighted by β; β > 0), comma-separated; or paper (the paper's "
               "seven: vae, beta_vae:2,5,10, beta_tcvae:2,5,10)")
OPTIONAL_BETA = ("hvae",)  # kinds whose β defaults to 1
PAPER_MODELS_NAME = "paper"  # --models paper: the seven models of the paper's Tables 2-4


def model_list(text: str) -> tuple[tuple[str, float], ...]:
    """'vae,beta_vae:5,hvae' → (('vae', 1.0), ('beta_vae', 5.0), ('hvae', 1.0)); 'paper' → the
    paper's seven models (``profiles.PAPER_MODELS``).

    Every form is checked here, at parse time, so a bad value stops the command before any work
    is done or any run directory is pinned.
    """
    if text.strip() == PAPER_MODELS_NAME:
        return PAPER_MODELS
    models = []
    for part in text.split(","):
        kind, has_beta, beta_text = part.strip().partition(":")
        if kind not in MODEL_KINDS:
            raise argparse.ArgumentTypeError(f"unknown model {part!r}; valid forms: {MODEL_FORMS}")
        if kind == "vae" and has_beta and beta_text.strip() not in ("1", "1.0"):
            raise argparse.ArgumentTypeError(
                f"{part!r}: a plain vae has β = 1; for another β use beta_vae:<β>. "
                f"Valid forms: {MODEL_FORMS}")
        if kind not in ("vae", *OPTIONAL_BETA) and not has_beta:
            raise argparse.ArgumentTypeError(f"{part!r} needs its β, e.g. {kind}:5. "
                                             f"Valid forms: {MODEL_FORMS}")
        try:
            beta = float(beta_text) if has_beta else 1.0
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: β must be a number. "
                                             f"Valid forms: {MODEL_FORMS}") from None
        if not beta > 0 or beta != beta or beta == float("inf"):
            raise argparse.ArgumentTypeError(f"{part!r}: β must be a positive finite number")
        models.append((kind, beta))
    return tuple(models)


def integer_at_least(minimum: int):
    """An argparse type: an integer ≥ ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


at_least_one = integer_at_least(1)
ALL_POINTS = "all"  # --eval-points all: the whole test split (the paper's protocol)


def points_or_all(text: str) -> int | str:
    """An argparse type for ``--eval-points``: a count ≥ 1, or ``all`` (the whole split)."""
    if text.strip().lower() == ALL_POINTS:
        return ALL_POINTS
    try:
        return at_least_one(text)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{error}, or 'all' for the whole test split") from None


def add_shared_arguments(parser: argparse.ArgumentParser, *, out_help: str) -> None:
    """The options every benchmarks command takes: dataset, device, data root, output folder,
    seed and progress bars."""
    parser.add_argument("--dataset", required=True, choices=DATASET_NAMES)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--data-root", default=None,
                        help="folder holding mnist/ and fashion-mnist/ IDX files "
                             "(default: $PYRO_VAE_DATA, else ~/.cache/pyro_vae/data)")
    parser.add_argument("--out", type=Path, default=None, help=out_help)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_model_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The one-model commands' choice of model: ``--checkpoint`` or the zoo's VAE for the dataset
    with ``--decoder-output`` (read by ``stages.models.load_checkpoint_or_zoo``)."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", type=Path, default=None,
                        help="a saved model (default: the pretrained zoo's VAE for the dataset)")
    source.add_argument("--decoder-output", default="sigmoid", choices=DECODER_OUTPUTS,
                        help="which zoo model: sigmoid or the authors' identity decoder")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shared_arguments(parser, out_help="run directory (default "
                                          "runs/<dataset>-<profile>-<sampler>[-identity][-train])")
    parser.add_argument("--experiment", default="tables", choices=tuple(EXPERIMENTS),
                        help="; ".join(f"{name}: {e.summary}" for name, e in EXPERIMENTS.items()))
    parser.add_argument("--profile", default="quick", choices=tuple(PROFILES),
                        help="paper: full protocol (GPU); quick (default): ~15 min on a 2-core "
                             "CPU; smoke: about a minute")
    parser.add_argument("--sampler", default="hmc", choices=RUN_SAMPLERS,
                        help="the defence: batched HMC (paper), NUTS, or MAP mode finding")
    parser.add_argument("--fresh", action="store_true", help="recompute every stage")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--train", action="store_true",
                        help="train every model in the run with the profile's epochs instead of "
                             "using the pretrained zoo's model")
    source.add_argument("--checkpoint", type=Path, default=None,
                        help="run on this saved model (benchmarks.train's model.pt, or any "
                             "pyro_vae checkpoint) instead of the zoo's: it is the run's one "
                             "model, its kind, β and decoder output read from the file")
    source.add_argument("--zoo-only", action="store_true",
                        help="every model must come from the pretrained zoo: stop before any work, "
                             "naming each missing entry and the command that trains it, instead "
                             "of training it here with the profile's epochs")
    parser.add_argument("--model-seed", type=int, default=None,
                        help="seed of the models trained in the run (default: --seed); the "
                             "references, attacks and chains keep --seed")
    parser.add_argument("--decoder-output", default="sigmoid", choices=DECODER_OUTPUTS,
                        help="the ConvVAE's last layer: sigmoid (ours, default) or identity "
                             "(the authors' ColorMNIST decoder)")
    knobs = parser.add_argument_group("profile overrides")
    knobs.add_argument("--epochs", type=at_least_one, help="training epochs (with --train, or "
                                                           "for models the zoo lacks)")
    knobs.add_argument("--references", type=at_least_one)
    knobs.add_argument("--restarts", type=at_least_one)
    knobs.add_argument("--transitions", type=at_least_one, dest="num_transitions",
                       help="HMC steps T")
    knobs.add_argument("--leapfrog-steps", type=at_least_one, dest="num_leapfrog_steps", help="L")
    knobs.add_argument("--step-size", type=float, help="initial step size η₀")
    knobs.add_argument("--chains", type=at_least_one, dest="num_chains")
    knobs.add_argument("--radii", type=radius_list, help="e.g. 0.1,0.2")
    knobs.add_argument("--models", type=model_list, help=f"forms: {MODEL_FORMS}")
    knobs.add_argument("--max-train-points", type=at_least_one,
                       help="cut the training split (models trained in the run, the latent "
                            "classifiers' and the FD-CNN's training data)")
    sizes = parser.add_argument_group(
        "evaluation-size overrides (model quality, Table 7; recorded among the profile's cuts)")
    sizes.add_argument("--eval-points", type=points_or_all,
                       help="test images for the ELBO / NLL / MSE (and validation images during "
                            "training), or 'all' (paper: all; quick: 1000)")
    sizes.add_argument("--nll-samples", type=at_least_one,
                       help="importance samples k of the NLL (paper: 1000; quick: 100)")
    sizes.add_argument("--fid-points", type=integer_at_least(2),
                       help="test images and prior samples of the FD-CNN (paper: 10000; "
                            "quick: 2000)")
    sizes.add_argument("--feature-epochs", type=at_least_one,
                       help="training epochs of the FD-CNN's feature network (paper: 10; "
                            "quick: 1)")
    arguments = parser.parse_args(argv)
    if arguments.checkpoint is not None:
        if not arguments.checkpoint.is_file():
            parser.error(f"--checkpoint {arguments.checkpoint}: no such file")
        if arguments.models is not None or arguments.decoder_output != "sigmoid":
            parser.error("--checkpoint runs the model in the file: its kind, β and decoder "
                         "output come from it, so --models and --decoder-output do not apply")
    if arguments.zoo_only and arguments.epochs is not None:
        parser.error("--epochs sets the training of models trained in the run; --zoo-only trains "
                     "none")
    if arguments.num_chains is not None and arguments.num_chains < 2:
        parser.error("--chains must be at least 2: R-hat needs two chains per point")
    if arguments.step_size is not None and not arguments.step_size > 0:
        parser.error("--step-size must be positive")
    experiment = EXPERIMENTS[arguments.experiment]
    if experiment.samplers is not None and arguments.sampler not in experiment.samplers:
        parser.error(f"--experiment {arguments.experiment} works with --sampler "
                     f"{' or '.join(experiment.samplers)} only, got {arguments.sampler}")
    models = arguments.models or PROFILES[arguments.profile].models
    kinds = {kind for kind, _ in models}
    if arguments.decoder_output != "sigmoid" and kinds - {"vae", "beta_vae", "beta_tcvae"}:
        parser.error(f"--decoder-output {arguments.decoder_output} is a ConvVAE option; "
                     f"{', '.join(sorted(kinds - {'vae', 'beta_vae', 'beta_tcvae'}))} has a "
                     "sigmoid output only")
    if experiment.model_kinds is not None and models[0][0] not in experiment.model_kinds:
        parser.error(f"--experiment {arguments.experiment} works on the first model of --models "
                     f"being one of {', '.join(experiment.model_kinds)}, got {models[0][0]}")
    return arguments


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda was asked for, but torch sees no CUDA device "
                         f"(torch {torch.__version__}); use --device cpu or auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def environment(device: torch.device) -> dict:
    versions = {}
    for package in ("torch", "torchvision", "pyro-ppl", "arviz", "pytorch-msssim", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "device": f"{device.type} ({name or 'cpu'})", "threads": torch.get_num_threads(),
            "packages": versions}


def protocol_notes(profile: Profile, dataset: str, sampler: str, *,
                   ignore: tuple[str, ...]) -> list[str]:
    notes = [f"profile `{profile.name}` differs from the paper in: {cut}"
             for cut in profile.cuts(dataset, ignore=ignore)]
    if dataset == "colormnist" and not profile.all_colours:
        notes.append("ColorMNIST drawn with one random colour per image (60k train, 10k test), "
                     "not all 7 colours per image (420k / 70k).")
    notes += [
        "MS-SSIM: the paper's variant (the authors' code multiplies the coarsest level's SSIM "
        "into each of the four contrast-structure factors) in every table beside the paper's "
        "numbers; the standard formula in the 'beyond the paper' section. Both: 5 levels, "
        "Gaussian window σ 1.5 of size min(14, side) at each level (28→14→7→3→1), data range 1, "
        "negative factors clipped at 0, built from pytorch-msssim's SSIM pieces.",
        "FID replaced by FD-CNN: Fréchet distance on the 64-d features of a small CNN trained "
        "on this dataset's labels (Inception weights cannot be fetched offline); not comparable "
        "to the paper's FID numbers.",
        f"Defence: {profile.num_chains} chains per input; the step size adapts per chain during "
        f"the first {profile.warmup_fraction:.0%} of the T transitions (the paper's rule for "
        "HMC, dual averaging for NUTS) and is then frozen; the paper adapted one shared step "
        "size on the batch-mean acceptance throughout. The defended latent is each chain's "
        "final state; metrics average over chains.",
        "MSE columns compare the references with their reconstructions without and with the "
        "defence (clean inputs); the test-set MSE of every model is in the quality table.",
        "Adversarial accuracy with the defence: the latent classifier sees the MCMC latent of "
        "the classifier-attacked input (attacked once per task); radius 0 runs the defence on "
        "the clean references.",
        "β rows in the main table show, per column, the most robust β of the grid judged on "
        "the undefended value (the paper picks the most robust β per metric).",
    ]
    if sampler != "hmc":
        notes.append(f"Sampler `{sampler}` instead of the paper's HMC.")
    return notes


def read_checkpoint(arguments: argparse.Namespace) -> tuple[str, dict]:
    """``--checkpoint``'s model, checked against the dataset's channels before any work:
    (sha256, its kind, β, epochs, training commit, and the training images per epoch and colour
    distribution where recorded). Sets the run's ``models`` and
    ``decoder_output`` to the file's."""
    try:
        vae, training = load_checkpoint(arguments.checkpoint, with_metadata=True)
    except CheckpointError as error:
        raise SystemExit(f"error: {error}") from None
    channels = 3 if arguments.dataset == "colormnist" else 1
    if vae.config.num_channels != channels:
        raise SystemExit(f"error: --checkpoint {arguments.checkpoint} is a {vae.config.num_channels}"
                         f"-channel model; {arguments.dataset} images have {channels}")
    arguments.models = ((vae.config.kind, vae.config.beta),)
    arguments.decoder_output = getattr(vae.config, "decoder_output", "sigmoid")
    return sha256_of(arguments.checkpoint), {
        "kind": vae.config.kind, "beta": vae.config.beta, "epochs": training.get("epochs"),
        "training_commit": training.get("training_commit"),
        # images per epoch and colour distribution, where benchmarks.train recorded them
        "train_points": training.get("train_points"), "all_colours": training.get("all_colours")}


def zoo_entries(arguments: argparse.Namespace, profile: Profile) -> dict[str, dict | None]:
    """Entry name → the zoo entry each model of the run will use, or None when it is trained in
    the run (``--train``, or not in the zoo) or read from ``--checkpoint``."""
    index = {} if arguments.train or arguments.checkpoint is not None else zoo_index()
    names = [entry_name(arguments.dataset, kind, beta, decoder_output=arguments.decoder_output)
             for kind, beta in profile.models]
    return {name: index.get(name) for name in names}


def missing_zoo_models(dataset: str, models, *, decoder_output: str,
                       zoo_dir: Path = ZOO_DIR) -> list[str]:
    """One line per model of ``models`` that the zoo cannot give (no entry, or its file is
    absent), each naming the entry and the command that trains it into the zoo."""
    index = zoo_index(zoo_dir)
    lines = []
    for kind, beta in models:
        name = entry_name(dataset, kind, beta, decoder_output=decoder_output)
        entry = index.get(name)
        if entry is not None and (zoo_dir / entry["file"]).is_file():
            continue
        problem = "no entry" if entry is None else f"its file {entry['file']} is missing"
        lines.append(f"{name} ({problem}): "
                     f"{training_command(dataset, kind, beta, decoder_output=decoder_output)}")
    return lines


def describe_source(name: str, entry: dict | None, *, train: bool, epochs: int) -> str:
    """One line: the zoo entry a model uses, with its provenance, or that it is trained."""
    if entry is None:
        reason = "--train" if train else "not in the zoo"
        return f"{name}: trained in this run, {epochs} epochs ({reason})"
    return (f"{name}: pretrained zoo model, {entry['epochs']} epochs, test NLL "
            f"{entry['test_nll']:.2f} (k = {entry['nll_importance_samples']}, "
            f"{entry['nll_points']}), commit {entry['commit'][:12]}, "
            f"sha256 {entry['sha256'][:12]}; made by `{entry['command']}`")


def default_run_directory(arguments: argparse.Namespace, profile: Profile) -> Path:
    """``runs/<dataset>-<profile>-<sampler>[-<models>][-identity][-train]``: the choices that
    change the models get their own folder, since a run directory refuses a second
    configuration (``<models>``: the ``--models`` tags, when they differ from the profile's)."""
    name = f"{arguments.dataset}-{profile.name}-{arguments.sampler}"
    if arguments.models is not None and arguments.models != PROFILES[profile.name].models:
        name += ("-paper_models" if arguments.models == PAPER_MODELS
                 else "-" + "-".join(model_tag(kind, beta) for kind, beta in arguments.models))
    if arguments.decoder_output != "sigmoid":
        name += f"-{arguments.decoder_output}"
    if arguments.train:
        name += "-train"
    if arguments.checkpoint is not None:
        name += f"-checkpoint-{sha256_of(arguments.checkpoint)[:8]}"
    return Path("runs") / name


OVERRIDES = ("epochs", "references", "restarts", "num_transitions", "num_leapfrog_steps",
             "step_size", "num_chains", "radii", "models", "max_train_points", "eval_points",
             "nll_samples", "fid_points", "feature_epochs")


def run_profile(arguments: argparse.Namespace) -> Profile:
    """The chosen profile with the command line's overrides (``--eval-points all``: None)."""
    profile = with_overrides(PROFILES[arguments.profile], **{
        name: getattr(arguments, name) for name in OVERRIDES if name != "eval_points"})
    if arguments.eval_points == ALL_POINTS:
        return replace(profile, eval_points=None)
    return with_overrides(profile, eval_points=arguments.eval_points)


def main(argv: list[str] | None = None) -> dict:
    commit = current_commit()  # the code as this process started, before any long work
    changed = uncommitted_files()  # what '-dirty' stands for
    command = "python -m benchmarks.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    arguments = parse_arguments(argv)
    checkpoint_sha256 = None
    if arguments.checkpoint is not None:
        checkpoint_sha256, checkpoint = read_checkpoint(arguments)
    profile = run_profile(arguments)
    if arguments.zoo_only:
        missing = missing_zoo_models(arguments.dataset, profile.models,
                                     decoder_output=arguments.decoder_output)
        if missing:
            raise SystemExit(
                f"error: --zoo-only, but the pretrained zoo lacks {len(missing)} of the "
                f"{len(profile.models)} models; train each into the zoo first (or drop --zoo-only "
                f"to train them here with the profile's {profile.epochs} epochs):\n  "
                + "\n  ".join(missing))
    device = resolve_device(arguments.device)
    out = arguments.out or default_run_directory(arguments, profile)
    print(f"benchmarks.run: dataset {arguments.dataset}, profile {profile.name}, sampler "
          f"{arguments.sampler}, device {device}, output {out}")
    entries = zoo_entries(arguments, profile)
    if checkpoint_sha256 is not None:
        print(f"  model {arguments.checkpoint}: {checkpoint['kind']} β={checkpoint['beta']:g}, "
              f"{checkpoint['epochs']} epochs, training commit {checkpoint['training_commit']}, "
              f"sha256 {checkpoint_sha256[:12]}")
    else:
        for name, entry in entries.items():
            line = describe_source(name, entry, train=arguments.train, epochs=profile.epochs)
            print(f"  model {line}")
    # With every model from the zoo or a file, the profile's training knobs cut nothing from the
    # protocol; without a hierarchical model, neither does its step size.
    ignore = TRAINING_FIELDS if checkpoint_sha256 is not None or all(
        entry is not None for entry in entries.values()) else ()
    if all(MODEL_KINDS[kind].latent_sites == ("z",) for kind, _ in profile.models):
        ignore += ("hierarchical_step_size",)
    for cut in profile.cuts(arguments.dataset, ignore=ignore):
        print(f"  profile cut: {cut}")
    model_source = ("checkpoint" if checkpoint_sha256 is not None
                    else "train" if arguments.train else "zoo")
    settings = Settings(dataset=arguments.dataset, profile=profile, sampler=arguments.sampler,
                        device=device, seed=arguments.seed, data_root=arguments.data_root,
                        progress=not arguments.no_progress, model_source=model_source,
                        decoder_output=arguments.decoder_output, model_seed=arguments.model_seed,
                        checkpoint=arguments.checkpoint)
    run_dir = RunDirectory(out, fresh=arguments.fresh)
    configuration = {"dataset": arguments.dataset, "sampler": arguments.sampler,
                     "seed": arguments.seed, "profile": profile.to_dict(),
                     "model_source": model_source, "decoder_output": arguments.decoder_output,
                     "model_seed": settings.training_seed}
    if checkpoint_sha256 is not None:
        configuration["checkpoint_sha256"] = checkpoint_sha256
    try:
        run_dir.pin_configuration(configuration)
    except ConfigurationMismatch as error:
        raise SystemExit(f"error: {error}") from None
    try:
        context = RunContext(settings, run_dir)
    except DatasetNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    experiment = EXPERIMENTS[arguments.experiment]
    knobs = experiment.knobs_for(profile.name)
    section_started = time.perf_counter()
    section = experiment.run(context, knobs)
    section.update({"commit": commit, "uncommitted_files": changed, "command": command,
                    "knobs": experiment.knobs_dict(profile.name),
                    "wall_seconds": dict(context.wall_times),
                    "wall_seconds_total": time.perf_counter() - section_started,
                    "stages_computed": list(run_dir.computed)})
    results = previous_results(run_dir)
    section["computed_in"] = computed_in(section, results.get("experiments", {})
                                         .get(experiment.name))
    results.update({
        "schema_version": SCHEMA_VERSION, "dataset": arguments.dataset,
        "sampler": arguments.sampler, "seed": arguments.seed, "profile": profile.to_dict(),
        "model_source": model_source, "decoder_output": arguments.decoder_output,
        "model_seed": settings.training_seed, "tasks": list(settings.tasks),
        "environment": environment(device),
        "protocol_notes": protocol_notes(profile, arguments.dataset, arguments.sampler,
                                         ignore=ignore),
    })
    if checkpoint_sha256 is not None:
        results["checkpoint"] = {"path": str(arguments.checkpoint), "sha256": checkpoint_sha256,
                                 **checkpoint}
    experiment.figure(results, section, run_dir.root)  # before saving: may take images out
    sections = results.get("experiments", {}) | {experiment.name: section}
    results["experiments"] = {name: sections[name] for name in EXPERIMENTS if name in sections}
    run_dir.write_text("results.json", json.dumps(results, indent=2, default=float))
    run_dir.write_text("report.md", render(results, {name: EXPERIMENTS[name].render
                                                     for name in results["experiments"]}))
    print(f"done: {experiment.name} in {section['wall_seconds_total']:.0f} s; "
          f"{run_dir.path('report.md')}")
    return results


def computed_in(section: dict, previous: dict | None) -> dict | None:
    """The commit and wall time of the invocation that last computed any of the section's
    stages: this one, or, when every stage came from the cache (a report rendered again), the
    previous section's, so a re-render keeps what the computation cost. None when unknown (a
    re-render of results written before this was recorded)."""
    if section["stages_computed"]:
        return {"commit": section["commit"], "wall_seconds_total": section["wall_seconds_total"]}
    return None if previous is None else previous.get("computed_in")


def previous_results(run_dir: RunDirectory) -> dict:
    """The run directory's ``results.json`` when it holds this schema's sections (other
    experiments of the same pinned configuration), else a fresh dictionary."""
    path = run_dir.path("results.json")
    if not path.exists() or run_dir.fresh:
        return {}
    results = json.loads(path.read_text())
    return results if results.get("schema_version") == SCHEMA_VERSION else {}


if __name__ == "__main__":
    main()
