"""Checkpoints: ``state_dict``, the model's class name and its config as plain data, written
atomically.

The class name picks the class from the registry of ``interface.py``; a checkpoint written before
there was a choice has none and holds a ``ConvVAE``. An unknown name is a ``CheckpointError``
naming the known classes.

Loading uses ``torch.load(weights_only=True)``, which unpickles tensors and plain containers only,
so a foreign or malicious file can never execute code; anything that is not one of our checkpoints
raises ``CheckpointError``.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from torch import nn

from .interface import DEFAULT_MODEL_CLASS, MODEL_CLASSES, build_model

CHECKPOINT_FORMAT = "pyro_vae.checkpoint/1"


class CheckpointError(ValueError):
    """The file is missing, corrupt, or not a pyro_vae checkpoint."""


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    Readers see either the old file or the complete new one, never a truncated file; on any
    error (an interrupt included) the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def checkpoint_payload(vae: nn.Module, *, metadata: dict | None = None) -> dict:
    """The plain-data checkpoint of ``vae`` (a registered model class): format tag, class name,
    config, CPU weights, metadata."""
    model_class = type(vae).__name__
    if model_class not in MODEL_CLASSES:
        raise ValueError(f"{model_class} is not a registered model class "
                         f"({', '.join(MODEL_CLASSES)}); add it to pyro_vae.interface")
    state = {k: v.detach().cpu() for k, v in vae.state_dict().items()}
    return {"format": CHECKPOINT_FORMAT, "model_class": model_class,
            "config": vae.config.to_dict(), "state_dict": state, "metadata": metadata or {}}


def save_checkpoint(vae: nn.Module, path: str | os.PathLike, *, metadata: dict | None = None) -> None:
    """Save weights, config and optional plain-data metadata (e.g. the training history)."""
    atomic_torch_save(checkpoint_payload(vae, metadata=metadata), path)


def model_from_payload(payload, *, source: str = "checkpoint",
                       map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model (eval mode, of the recorded class) and its metadata from
    :func:`checkpoint_payload`'s dict; ``source`` names where it came from in errors."""
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{source} is not a pyro_vae checkpoint (format {CHECKPOINT_FORMAT!r})")
    class_name = payload.get("model_class", DEFAULT_MODEL_CLASS)
    if class_name not in MODEL_CLASSES:
        raise CheckpointError(f"{source} holds a {class_name!r}, which is not a known model "
                              f"class (known: {', '.join(MODEL_CLASSES)})")
    try:
        vae = build_model(class_name, payload["config"])
        vae.load_state_dict(payload["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"{source}: inconsistent checkpoint: {error}") from None
    return vae.to(map_location).eval(), payload.get("metadata", {})


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu",
                    with_metadata: bool = False):
    """Rebuild the model saved at ``path`` (in eval mode); optionally also its metadata."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable pyro_vae checkpoint: {error}") from None
    vae, metadata = model_from_payload(payload, source=str(path), map_location=map_location)
    return (vae, metadata) if with_metadata else vae
