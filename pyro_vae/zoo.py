"""The pretrained zoo: ``pretrained("mnist")`` returns a trained VAE, offline, on a fresh clone.

Like RobustBench's ``load_model``: a registry of entries (``zoo/index.json``), each a checkpoint
in ``zoo/`` with its provenance (command, commit, epochs, seed, wall time, test NLL with k and the
points it was measured on, sha256 of the file). Every entry is produced by this repository's own
command, ``python -m benchmarks.train ... --zoo``; a missing entry raises
:class:`PretrainedNotFound` naming that command. Files load with ``weights_only=True`` and are
checked against their sha256 before use.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from .checkpoint import CheckpointError, atomic_path, load_checkpoint
from .data import DATASET_NAMES
from .interface import MODEL_KINDS, PyroVAE
from .vae import DECODER_OUTPUTS, ConvVAE

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
INDEX_FILE = "index.json"
# Epochs of the zoo's recipe per dataset (MNIST: the paper's 300, about 3 hours on a 2-core CPU;
# the others reach paper-level NLL sooner, see the README). ``benchmarks.train`` uses them as its
# default.
ZOO_EPOCHS = {"mnist": 300, "fashionmnist": 30, "colormnist": 30}


class PretrainedNotFound(LookupError):
    """The zoo has no entry for the requested model."""


def entry_name(dataset: str, kind: str = "vae", beta: float = 1.0, *,
               decoder_output: str = "sigmoid") -> str:
    """'mnist-vae_beta1', 'colormnist-vae_beta1-identity', 'mnist-hvae_beta1', ..."""
    suffix = "" if decoder_output == "sigmoid" else f"-{decoder_output}"
    return f"{dataset}-{kind}_beta{beta:g}{suffix}"


def training_command(dataset: str, kind: str = "vae", beta: float = 1.0, *,
                     decoder_output: str = "sigmoid") -> str:
    """The command that trains the entry and adds it to the zoo."""
    model = kind if kind in ("vae", "hvae") and beta == 1 else f"{kind}:{beta:g}"
    extra = "" if decoder_output == "sigmoid" else f" --decoder-output {decoder_output}"
    return f"python -m benchmarks.train --dataset {dataset} --models {model}{extra} --zoo"


def zoo_index(zoo_dir: Path = ZOO_DIR) -> dict[str, dict]:
    """Entry name → provenance record, for every model in the zoo."""
    path = zoo_dir / INDEX_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _check_request(dataset: str, kind: str, beta: float, decoder_output: str) -> None:
    if dataset not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASET_NAMES)}")
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    if decoder_output not in DECODER_OUTPUTS:
        raise ValueError(f"unknown decoder_output {decoder_output!r}; choose one of "
                         f"{', '.join(DECODER_OUTPUTS)}")
    if decoder_output != "sigmoid" and MODEL_KINDS[kind] is not ConvVAE:
        raise ValueError(f"decoder_output={decoder_output!r} is a ConvVAE option; the {kind!r} "
                         "model has a sigmoid output only")
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta}")


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pretrained(dataset: str, kind: str = "vae", beta: float = 1.0, *,
               decoder_output: str = "sigmoid", map_location="cpu", with_provenance: bool = False,
               zoo_dir: Path = ZOO_DIR):
    """The zoo's trained model for ``dataset`` (eval mode, on ``map_location``); ``kind`` is
    any kind of ``pyro_vae.interface.MODEL_KINDS`` (``"hvae"``: the hierarchical VAE).

    Returns the model, or ``(vae, provenance)`` with ``with_provenance=True``.
    Raises ``PretrainedNotFound`` (with the command that trains it) when the entry is missing and
    ``CheckpointError`` when its file does not match the recorded sha256.
    """
    _check_request(dataset, kind, beta, decoder_output)
    name = entry_name(dataset, kind, beta, decoder_output=decoder_output)
    index = zoo_index(zoo_dir)
    if name not in index:
        available = ", ".join(sorted(index)) or "none"
        raise PretrainedNotFound(
            f"the zoo has no {name!r} (available: {available}); train it with: "
            f"{training_command(dataset, kind, beta, decoder_output=decoder_output)}")
    provenance = index[name]
    path = zoo_dir / provenance["file"]
    if not path.is_file():
        raise CheckpointError(f"zoo entry {name!r} lists {path}, which is missing")
    if sha256_of(path) != provenance["sha256"]:
        raise CheckpointError(f"{path} does not match the sha256 recorded for {name!r}; "
                              f"retrain it with: {provenance['command']}")
    vae = load_checkpoint(path, map_location=map_location)
    return (vae, provenance) if with_provenance else vae


def add_to_zoo(checkpoint: str | os.PathLike, provenance: dict, *, vae: PyroVAE,
               dataset: str, zoo_dir: Path = ZOO_DIR) -> dict:
    """Copy ``checkpoint`` into the zoo under its entry name and record ``provenance`` (plus the
    file name and its sha256) in the index; returns the recorded entry."""
    config = vae.config
    # Only the ConvVAE has the authors' identity-output variant.
    decoder_output = getattr(config, "decoder_output", "sigmoid")
    name = entry_name(dataset, config.kind, config.beta, decoder_output=decoder_output)
    target = zoo_dir / f"{name}.pt"
    with atomic_path(target) as tmp:
        shutil.copyfile(checkpoint, tmp)
    entry = {**provenance, "file": target.name, "sha256": sha256_of(target),
             "size_bytes": target.stat().st_size, "model_config": config.to_dict()}
    index = zoo_index(zoo_dir) | {name: entry}
    with atomic_path(zoo_dir / INDEX_FILE) as tmp:
        tmp.write_text(json.dumps(dict(sorted(index.items())), indent=2) + "\n")
    return entry
