"""What every stage of a benchmark run shares: its settings, its data, its run directory, its
device, seeded random streams and a wall-time ledger."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pyro_vae import load_dataset

from .artifacts import RunDirectory
from .profiles import Profile

MODEL_SOURCES = ("zoo", "train", "checkpoint")


@dataclass(frozen=True)
class Settings:
    """One run's choices besides the profile.

    ``model_source``: ``"zoo"`` uses the pretrained zoo's model where the zoo has one (and trains
    otherwise), ``"train"`` always trains with the profile's epochs, ``"checkpoint"`` reads the
    one model from ``checkpoint``. ``decoder_output`` picks the
    ConvVAE's last layer (``"identity"`` is the authors' ColorMNIST decoder). ``model_seed``
    seeds the training of models trained in the run (None: ``seed``); everything else —
    references, attacks, chains, metrics — follows ``seed``, so runs that differ only in
    ``model_seed`` measure model-to-model spread.
    """

    dataset: str
    profile: Profile
    sampler: str
    device: torch.device
    seed: int
    data_root: str | None
    progress: bool
    model_source: str = "zoo"
    decoder_output: str = "sigmoid"
    model_seed: int | None = None
    checkpoint: Path | None = None

    def __post_init__(self) -> None:
        if self.model_source not in MODEL_SOURCES:
            raise ValueError(f"model_source must be one of {MODEL_SOURCES}, "
                             f"got {self.model_source!r}")
        if (self.model_source == "checkpoint") != (self.checkpoint is not None):
            raise ValueError("a checkpoint is given exactly when model_source is 'checkpoint'")

    @property
    def training_seed(self) -> int:
        return self.seed if self.model_seed is None else self.model_seed

    @property
    def tasks(self) -> tuple[str, ...]:
        return ("digit", "colour") if self.dataset == "colormnist" else ("class",)


class RunContext:
    """Settings, data splits and run directory of one run; stages are functions of it."""

    def __init__(self, settings: Settings, run_dir: RunDirectory) -> None:
        self.settings = settings
        self.profile = settings.profile
        self.device = settings.device
        self.run_dir = run_dir
        self.wall_times: dict[str, float] = {}
        self.splits = load_dataset(settings.dataset, settings.data_root,
                                   all_colours=self.profile.all_colours, seed=settings.seed)

    def generator(self, stream: int = 0) -> torch.Generator:
        """A fresh generator on the run's device, seeded from the run's seed; distinct
        ``stream`` numbers give independent streams, so that one computation's draws never
        depend on whether another ran before it."""
        seed = self.settings.seed + 1_000_003 * stream
        return torch.Generator(device=self.device).manual_seed(seed)

    def timed(self, name: str, work):
        """``work()``, its wall time added to the ledger under ``name``."""
        started = time.perf_counter()
        result = work()
        self.wall_times[name] = self.wall_times.get(name, 0.0) + time.perf_counter() - started
        return result
