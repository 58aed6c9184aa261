"""Checkpoints: ``state_dict`` plus the ``VAEConfig`` as plain data, written atomically.

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

from .vae import ConvVAE, VAEConfig

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


def checkpoint_payload(vae: ConvVAE, *, metadata: dict | None = None) -> dict:
    """The plain-data checkpoint of ``vae``: format tag, config, CPU weights, metadata."""
    state = {k: v.detach().cpu() for k, v in vae.state_dict().items()}
    return {"format": CHECKPOINT_FORMAT, "config": vae.config.to_dict(), "state_dict": state,
            "metadata": metadata or {}}


def save_checkpoint(vae: ConvVAE, path: str | os.PathLike, *, metadata: dict | None = None) -> None:
    """Save weights, config and optional plain-data metadata (e.g. the training history)."""
    atomic_torch_save(checkpoint_payload(vae, metadata=metadata), path)


def model_from_payload(payload, *, source: str = "checkpoint",
                       map_location: str | torch.device = "cpu") -> tuple[ConvVAE, dict]:
    """Rebuild the model (eval mode) and its metadata from :func:`checkpoint_payload`'s dict;
    ``source`` names where it came from in errors."""
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{source} is not a pyro_vae checkpoint (format {CHECKPOINT_FORMAT!r})")
    try:
        vae = ConvVAE(VAEConfig(**payload["config"]))
        vae.load_state_dict(payload["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"{source}: inconsistent checkpoint: {error}") from None
    return vae.to(map_location).eval(), payload.get("metadata", {})


def load_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu",
                    with_metadata: bool = False):
    """Rebuild the ``ConvVAE`` saved at ``path`` (in eval mode); optionally also its metadata."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable pyro_vae checkpoint: {error}") from None
    vae, metadata = model_from_payload(payload, source=str(path), map_location=map_location)
    return (vae, metadata) if with_metadata else vae
