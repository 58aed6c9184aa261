"""``python -m benchmarks.train --dataset mnist --zoo``: train a VAE resumably, measure its test NLL
with the paper's k, and (with ``--zoo``) add it to the pretrained zoo with its provenance.

Each model trains in ``runs/train/<entry>-e<epochs>-seed<seed>/``: ``state.pt`` is rewritten after
every epoch (model, optimiser, scheduler, random streams, history), so an interrupted run continues
where it stopped when the same command is run again, and a longer run of the same recipe starts
from the longest shorter run's final state (the schedule does not depend on the epoch count, so
``--epochs 100`` after ``--epochs 80`` is the 100-epoch run, 20 epochs later; the record names the
run it continued); ``model.pt`` is the finished checkpoint and
``quality_k<k>_n<points>.json`` the cached evaluation. The default epochs are the zoo's recipe
(``pyro_vae.zoo.ZOO_EPOCHS``); the schedule is the paper's (Adam 5e-4, batch 128, halved after
10 epochs without validation improvement). ``--models hvae`` trains the hierarchical VAE
(``pyro_vae.hvae``), optionally with a KL warm-up (``--kl-warmup-epochs``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import shutil
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from pyro_vae import (DatasetNotFoundError, TrainConfig, evaluate_vae, load_checkpoint,
                      load_dataset, save_checkpoint, train_vae)
from pyro_vae.interface import MODEL_KINDS, PyroVAE, config_for
from pyro_vae.vae import DECODER_OUTPUTS
from pyro_vae.zoo import ZOO_EPOCHS, add_to_zoo, entry_name

from .artifacts import RunDirectory
from .provenance import current_commit, uncommitted_files
from .run import (MODEL_FORMS, add_shared_arguments, at_least_one, integer_at_least, model_list,
                  resolve_device)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shared_arguments(parser, out_help="training folder root (default runs/train)")
    parser.add_argument("--models", type=model_list, default=(("vae", 1.0),),
                        help=f"forms: {MODEL_FORMS} (default: vae)")
    parser.add_argument("--decoder-output", default="sigmoid", choices=DECODER_OUTPUTS,
                        help="sigmoid (ours) or identity (the authors' ColorMNIST decoder)")
    parser.add_argument("--epochs", type=at_least_one, default=None,
                        help="default: the zoo's recipe for the dataset " + str(ZOO_EPOCHS))
    parser.add_argument("--kl-warmup-epochs", type=integer_at_least(0), default=0,
                        help="linear KL warm-up over this many epochs (default 0: none)")
    parser.add_argument("--all-colours", action="store_true",
                        help="ColorMNIST: every image in all 7 colours (paper) instead of one")
    parser.add_argument("--nll-samples", type=at_least_one, default=1000,
                        help="importance samples k")
    parser.add_argument("--nll-points", type=at_least_one, default=2000,
                        help="evaluate the NLL on the first N test images")
    parser.add_argument("--threads", type=at_least_one, default=None,
                        help="torch threads (default: torch's choice)")
    parser.add_argument("--zoo", action="store_true",
                        help="add the finished model to pyro_vae/zoo with its provenance")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="with --zoo: accept uncommitted changes in the working tree "
                             "(recorded in the provenance with the changed files)")
    arguments = parser.parse_args(argv)
    if arguments.decoder_output != "sigmoid" and any(kind == "hvae"
                                                     for kind, _ in arguments.models):
        parser.error("--decoder-output identity is a ConvVAE option; the hvae has a sigmoid "
                     "output only")
    if arguments.epochs is None:
        arguments.epochs = ZOO_EPOCHS[arguments.dataset]
    return arguments


def check_clean_tree(arguments: argparse.Namespace) -> dict:
    """With ``--zoo``, refuse a working tree with uncommitted changes (a zoo entry must name the
    code that made it) unless ``--allow-dirty``; returns the provenance fields that record it."""
    if not arguments.zoo:
        return {}
    changed = uncommitted_files()
    if changed and not arguments.allow_dirty:
        shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10
                                           else "")
        raise SystemExit(f"error: --zoo needs a clean working tree, so that the entry names the "
                         f"commit that made it; uncommitted changes in: {shown}. Commit them, or "
                         f"pass --allow-dirty (recorded in the entry's provenance).")
    return {"allow_dirty": bool(arguments.allow_dirty), "uncommitted_files": changed}


CONTINUED_FROM = "continued_from.txt"  # names the shorter run a longer one started from


def longest_shorter_run(folder: Path) -> Path | None:
    """The training folder beside ``folder`` of the same recipe (name, KL warm-up, seed) with the
    most epochs below ``folder``'s that has a training state, or None."""
    match = re.fullmatch(r"(?P<name>.+)-e(?P<epochs>\d+)(?P<rest>(-w\d+)?-seed\d+)", folder.name)
    if match is None or not folder.parent.is_dir():
        return None
    epochs = int(match["epochs"])
    shorter = {}
    for other in folder.parent.iterdir():
        found = re.fullmatch(re.escape(match["name"]) + r"-e(\d+)" + re.escape(match["rest"]),
                             other.name)
        if found and int(found[1]) < epochs and (other / "state.pt").exists():
            shorter[int(found[1])] = other
    return shorter[max(shorter)] if shorter else None


def train_one(splits, config, arguments, device, folder: Path) -> tuple[PyroVAE, dict]:
    """Train (or resume, or reuse, or continue a shorter run of the same recipe) one model in
    ``folder``; returns it and its training record."""
    checkpoint = folder / "model.pt"
    origin = folder / CONTINUED_FROM  # kept beside the state, so a resumed run still knows it
    if checkpoint.exists():
        vae, metadata = load_checkpoint(checkpoint, map_location=device, with_metadata=True)
        if origin.exists():  # checkpoints written before the record moved into their metadata
            metadata.setdefault("continued_from", origin.read_text().strip())
        return vae, metadata
    if not (folder / "state.pt").exists() and (shorter := longest_shorter_run(folder)):
        folder.mkdir(parents=True, exist_ok=True)
        origin.write_text(shorter.name)
        partial = folder / "state.pt.partial"
        shutil.copyfile(shorter / "state.pt", partial)
        os.replace(partial, folder / "state.pt")  # an interrupted copy never looks like a state
        print(f"  continuing the finished run {shorter} (same recipe, fewer epochs)")
    continued_from = origin.read_text().strip() if origin.exists() else None
    vae = MODEL_KINDS[config.kind](config)
    training_commit = current_commit()  # the code as this process imported it
    train_config = TrainConfig(epochs=arguments.epochs, seed=arguments.seed,
                               kl_warmup_epochs=arguments.kl_warmup_epochs)
    history = train_vae(vae, splits, train_config, device=device,
                        progress=not arguments.no_progress, state_path=folder / "state.pt")
    metadata = {"train_config": asdict(train_config), "training_commit": training_commit,
                "train_seconds": sum(history.seconds), "train_points": len(splits.train),
                "all_colours": arguments.all_colours if arguments.dataset == "colormnist" else None,
                **history.record()}
    if continued_from:
        metadata["continued_from"] = continued_from
    save_checkpoint(vae, checkpoint, metadata=metadata)
    return vae.eval(), metadata


def main(argv: list[str] | None = None) -> dict:
    arguments = parse_arguments(argv)
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    device = resolve_device(arguments.device)
    command = "python -m benchmarks.train " + shlex.join(sys.argv[1:] if argv is None else argv)
    tree = check_clean_tree(arguments)  # before hours of training, not after
    # the code this process imported, which trains, evaluates and registers the model (the tree
    # may change under a long run; what ran is what was there at the start)
    commit = current_commit()
    try:
        splits = load_dataset(arguments.dataset, arguments.data_root,
                              all_colours=arguments.all_colours, seed=arguments.seed)
    except DatasetNotFoundError as error:
        raise SystemExit(f"error: {error}") from None
    root = arguments.out or Path("runs") / "train"
    rows = {}
    for kind, beta in arguments.models:
        config = config_for(kind, beta=beta, num_channels=splits.num_channels,
                            decoder_output=arguments.decoder_output)
        name = entry_name(arguments.dataset, kind, beta, decoder_output=arguments.decoder_output)
        warmup = f"-w{arguments.kl_warmup_epochs}" if arguments.kl_warmup_epochs else ""
        # the colour distribution is part of the recipe: an all-colour run never resumes or
        # continues a one-colour run (their folders differ)
        colours = "-allc" if arguments.dataset == "colormnist" and arguments.all_colours else ""
        folder = root / f"{name}{colours}-e{arguments.epochs}{warmup}-seed{arguments.seed}"
        print(f"benchmarks.train: {name}, {arguments.epochs} epochs, seed {arguments.seed}, "
              f"device {device}, folder {folder}")
        vae, training = train_one(splits, config, arguments, device, folder)
        points = min(arguments.nll_points, len(splits.test))
        quality = RunDirectory(folder).stage(
            f"quality_k{arguments.nll_samples}_n{points}.json",
            lambda: evaluate_vae(vae, splits.test, device=device,
                                 num_importance_samples=arguments.nll_samples, max_points=points,
                                 seed=arguments.seed, progress=not arguments.no_progress).to_dict())
        provenance = {
            "command": command, "commit": commit,
            "training_commit": training.get("training_commit", "not recorded"),
            "dataset": arguments.dataset,
            "all_colours": arguments.all_colours if arguments.dataset == "colormnist" else None,
            "epochs": training["epochs"], "train_points": training.get("train_points"),
            "seed": arguments.seed,
            "schedule": "Adam 5e-4, batch 128, halved after 10 epochs without validation gain",
            "kl_warmup_epochs": arguments.kl_warmup_epochs,
            "continued_from": training.get("continued_from"),
            "train_seconds": training["train_seconds"],
            "seconds_per_epoch_median": statistics.median(training["epoch_seconds"]),
            "final_validation_loss": training["validation_loss"][-1],
            "test_nll": quality["nll"], "test_nll_standard_error": quality["nll_standard_error"],
            "test_elbo": quality["elbo"], "test_mse": quality["mse"],
            "nll_importance_samples": quality["num_importance_samples"],
            "nll_points": f"first {quality['num_points']} of the test set",
            "device": str(device), "torch": torch.__version__,
            "date": datetime.date.today().isoformat(), **tree}
        if arguments.zoo:
            provenance = add_to_zoo(folder / "model.pt", provenance, vae=vae,
                                    dataset=arguments.dataset)
            print(f"  added to the zoo as {name} ({provenance['size_bytes'] / 1e6:.1f} MB)")
        rows[name] = provenance
        print(f"  {name}: test NLL {quality['nll']:.2f} (SE {quality['nll_standard_error']:.2f}), "
              f"k = {quality['num_importance_samples']}, first {quality['num_points']} test "
              f"images; {training['epochs']} epochs in {training['train_seconds'] / 60:.1f} min")
    return rows


if __name__ == "__main__":
    main()
