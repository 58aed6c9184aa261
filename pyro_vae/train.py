"""SVI training of the VAEs (PROTOCOL.md §4): Adam 5e-4, batch 128, learning rate halved after 10
epochs without validation improvement, the last epoch's weights kept.

KL warm-up (``TrainConfig.kl_warmup_epochs`` = W, default 0: none): the KL weight grows
linearly with the optimisation step, from β/S·W at the first step to β at the end of epoch W
(S steps per epoch), and stays β after. Hierarchical VAEs use it so the lower groups are not
switched off by the KL before the decoder has learnt to use them (ladder VAE, NVAE). The weight
reaches the loss as the ``kl_scale`` of model and guide (``poutine.scale``, never 0); validation
losses always use β, so the learning-rate schedule sees the objective itself.

Training is resumable: with ``state_path`` given, the model, the optimiser and scheduler state, both
random streams and the loss history are written there atomically after every epoch, and a later
call with the same path and configuration continues from the last finished epoch. A resumed run
takes the same minibatches and the same learning-rate decisions as an uninterrupted one.

``train_vae`` registers the model's parameters (``pyro.module``) and trains inside a private scope
of Pyro's parameter store, so what it leaves behind is the trained module, not entries in a global
store. (``ConvVAE.model``/``guide`` also call ``pyro.module`` themselves; ``HierarchicalVAE``'s do
not; either way the registration here is what the optimiser sees.)
"""

from __future__ import annotations

import math
import os
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyro
import pyro.optim
import torch
from pyro.infer import SVI
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, atomic_torch_save
from .data import DataSplits, batch_of
from .losses import make_elbo
from .interface import PyroVAE
from .vae import BERNOULLI_CLAMP

TRAIN_STATE_FORMAT = "pyro_vae.train_state/1"
MODULE_NAME = "vae"  # the parameter-store prefix of the model's weights (optimiser state keys)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 300
    batch_size: int = 128
    learning_rate: float = 5e-4
    lr_patience: int = 10  # epochs without validation improvement before halving
    lr_factor: float = 0.5
    seed: int = 0
    max_train_points: int | None = None  # cut the training set (quick profiles); None = all
    kl_warmup_epochs: int = 0  # linear KL warm-up over this many epochs (module docstring)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.kl_warmup_epochs < 0:
            raise ValueError(f"kl_warmup_epochs must be >= 0, got {self.kl_warmup_epochs}")

    def kl_scale_at(self, step: int, steps_per_epoch: int, beta: float) -> float:
        """The KL weight of optimisation step ``step`` (0-based, over all epochs)."""
        warmup_steps = self.kl_warmup_epochs * steps_per_epoch
        if step >= warmup_steps:
            return beta
        return beta * (step + 1) / warmup_steps


@dataclass
class TrainHistory:
    """Per-epoch mean training and validation loss (nats per point) and learning rate, and the
    shares of decoder outputs outside the likelihood's clamp, all of them and the stuck ones
    (:func:`clamp_shares`), on the first ``CLAMP_PROBE_POINTS`` validation images, at
    initialisation and after each epoch (a run resumed from a state written before these were
    recorded has fewer entries)."""

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    learning_rate: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    clamped_share: list[float] = field(default_factory=list)
    clamped_share_at_start: float | None = None
    stuck_share: list[float] = field(default_factory=list)
    stuck_share_at_start: float | None = None

    @property
    def epochs_done(self) -> int:
        return len(self.train_loss)

    def record(self) -> dict:
        """The history as checkpoint metadata: epochs done and the per-epoch lists."""
        return {"epochs": self.epochs_done, "train_loss": self.train_loss,
                "validation_loss": self.validation_loss, "learning_rate": self.learning_rate,
                "epoch_seconds": self.seconds, "clamped_share": self.clamped_share,
                "clamped_share_at_start": self.clamped_share_at_start,
                "stuck_share": self.stuck_share, "stuck_share_at_start": self.stuck_share_at_start}


# validation images on which every epoch's clamp_shares are measured
CLAMP_PROBE_POINTS = 1000


def clamp_shares(vae: PyroVAE, images: torch.Tensor) -> tuple[float, float] | None:
    """Where the likelihood's clamp [1e-5, 1 − 1e-5] is active, for the decoder's outputs at
    the encoder means of ``images`` (either decoder output): there log p(x|z) is constant in the
    output, so that pixel passes no gradient back to the network.

    Returns (clamped, stuck): the share of outputs outside the clamp, and the share that is
    outside on the side the pixel pulls away from (below it where x > 1e-5, above it where
    x < 1 − 1e-5): a loss that no gradient can reduce. Most clamped outputs of a trained model
    are black channels predicted black, which are not stuck. None for a model without one
    ``decoder`` network (the hierarchical VAE).
    """
    decoder = getattr(vae, "decoder", None)
    if decoder is None:
        return None
    was_training = vae.training
    vae.eval()
    with torch.no_grad():
        raw = decoder(vae.encode(images)[0])
    vae.train(was_training)
    low, high = raw < BERNOULLI_CLAMP, raw > 1 - BERNOULLI_CLAMP
    stuck = (low & (images > BERNOULLI_CLAMP)) | (high & (images < 1 - BERNOULLI_CLAMP))
    return float((low | high).double().mean()), float(stuck.double().mean())


def _with_module(fn, vae: PyroVAE):
    """``fn`` (model or guide) with the VAE's parameters registered for the optimiser."""

    def registered(*args, **kwargs):
        pyro.module(MODULE_NAME, vae)
        return fn(*args, **kwargs)

    return registered


def minibatches(subset, batch_size: int, *, generator: torch.Generator | None = None,
                limit: int | None = None):
    """Yield (x, targets) batches; shuffled when a generator is given."""
    size = len(subset) if limit is None else min(limit, len(subset))
    order = (torch.randperm(len(subset), generator=generator)[:size] if generator is not None
             else torch.arange(size))
    for start in range(0, size, batch_size):
        yield batch_of(subset, order[start:start + batch_size])


def train_vae(vae: PyroVAE, splits: DataSplits, config: TrainConfig, *,
              device: torch.device | str = "cpu", progress: bool = True,
              validation_points: int | None = None,
              state_path: str | os.PathLike | None = None) -> TrainHistory:
    """Train ``vae`` in place with ``pyro.infer.SVI`` and return the loss history of all epochs.

    ``vae`` is any model of the interface (``pyro_vae.interface``). The loss is
    ``make_elbo(vae.config)``: the ELBO with the KL scaled by β (β-VAE, every latent group of a
    hierarchical VAE) or the β-TCVAE total-correlation ELBO (one latent site only); both are
    Pyro ELBOs, so this is the only training loop. ``config.kl_warmup_epochs`` ramps the KL
    weight up (module docstring).
    With ``state_path``, every finished epoch is saved there and an existing state is resumed
    (see the module docstring); a state written for another model or configuration is refused.
    """
    device = torch.device(device)
    # Pyro's parameter store keeps a contiguous copy of every parameter it registers: a weight
    # stored channels-last (a frozen model for the defence, benchmarks.stages.models.frozen)
    # would stay behind while the optimiser updated the copy, and the model would not train.
    vae.to(device, memory_format=torch.contiguous_format).train()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    num_train = len(splits.train) if config.max_train_points is None else min(
        config.max_train_points, len(splits.train))
    elbo = make_elbo(vae.config, dataset_size=num_train, latent_sites=vae.latent_sites)
    steps_per_epoch = math.ceil(num_train / config.batch_size)
    scheduler = pyro.optim.ReduceLROnPlateau({
        "optimizer": torch.optim.Adam, "optim_args": {"lr": config.learning_rate},
        "factor": config.lr_factor, "patience": config.lr_patience})
    kl_scale = vae.config.kl_scale
    history = TrainHistory()
    if state_path is not None and Path(state_path).exists():
        history = _resume(Path(state_path), vae, config, scheduler, generator, device)
    probe = batch_of(splits.validation, torch.arange(min(CLAMP_PROBE_POINTS,
                                                         len(splits.validation))))[0].to(device)
    if history.epochs_done == 0:  # the initialisation's
        history.clamped_share_at_start, history.stuck_share_at_start = (
            clamp_shares(vae, probe) or (None, None))
    with pyro.get_param_store().scope():
        svi = SVI(_with_module(vae.model, vae), _with_module(vae.guide, vae), scheduler, elbo)
        epochs = tqdm(range(history.epochs_done, config.epochs), initial=history.epochs_done,
                      total=config.epochs, desc=f"train {vae.config.kind} β={vae.config.beta:g}",
                      disable=not progress, unit="epoch")
        for epoch in epochs:
            started = time.perf_counter()
            total, count = 0.0, 0
            for step, (x, _targets) in enumerate(
                    minibatches(splits.train, config.batch_size, generator=generator,
                                limit=num_train), start=epoch * steps_per_epoch):
                total += svi.step(x.to(device), kl_scale=config.kl_scale_at(
                    step, steps_per_epoch, kl_scale))
                count += len(x)
            validation = _mean_loss(svi, splits.validation, config.batch_size, device, kl_scale,
                                    validation_points)
            scheduler.step(validation)
            history.train_loss.append(total / count)
            history.validation_loss.append(validation)
            history.learning_rate.append(_current_lr(scheduler, config.learning_rate))
            history.seconds.append(time.perf_counter() - started)
            shares = clamp_shares(vae, probe)
            if shares is not None:
                history.clamped_share.append(shares[0])
                history.stuck_share.append(shares[1])
            epochs.set_postfix(train=f"{total / count:.2f}", val=f"{validation:.2f}",
                               lr=f"{history.learning_rate[-1]:.1e}")
            if state_path is not None:
                _save_state(Path(state_path), vae, config, scheduler, generator, history)
    vae.eval()
    return history


def _save_state(path: Path, vae: PyroVAE, config: TrainConfig,
                scheduler: pyro.optim.PyroLRScheduler, generator: torch.Generator,
                history: TrainHistory) -> None:
    atomic_torch_save({
        "format": TRAIN_STATE_FORMAT, "train_config": asdict(config),
        "vae_config": vae.config.to_dict(),
        "model": {k: v.detach().cpu() for k, v in vae.state_dict().items()},
        "optimizer": scheduler.get_state(), "torch_rng": torch.get_rng_state(),
        "generator_rng": generator.get_state(), "history": asdict(history)}, path)


def _resume(path: Path, vae: PyroVAE, config: TrainConfig,
            scheduler: pyro.optim.PyroLRScheduler, generator: torch.Generator,
            device: torch.device) -> TrainHistory:
    """Load the state at ``path`` into the model, scheduler and random streams."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable training state: {error}") from None
    if not isinstance(state, dict) or state.get("format") != TRAIN_STATE_FORMAT:
        raise CheckpointError(f"{path} is not a pyro_vae training state")
    # The epoch count may grow (continue a finished run for longer); nothing else may change.
    # States written before the KL warm-up existed trained without one.
    mine = {**asdict(config), "epochs": None}
    theirs = {"kl_warmup_epochs": 0, **state["train_config"], "epochs": None}
    if mine != theirs or state["vae_config"] != vae.config.to_dict():
        raise CheckpointError(
            f"{path} was written by a run with another model or training configuration "
            f"(saved: {state['vae_config']}, {state['train_config']}; now: "
            f"{vae.config.to_dict()}, {asdict(config)}); delete it or train into another folder")
    vae.load_state_dict(state["model"])
    scheduler.set_state(state["optimizer"])
    torch.set_rng_state(state["torch_rng"].cpu())
    generator.set_state(state["generator_rng"].cpu())
    return TrainHistory(**state["history"])


@torch.no_grad()
def _mean_loss(svi: SVI, subset, batch_size: int, device, kl_scale: float,
               limit: int | None) -> float:
    total, count = 0.0, 0
    for x, _ in minibatches(subset, 4 * batch_size, limit=limit):
        total += svi.evaluate_loss(x.to(device), kl_scale=kl_scale)
        count += len(x)
    if not math.isfinite(total):
        raise FloatingPointError("validation loss is not finite; training diverged")
    return total / count


def _current_lr(scheduler: pyro.optim.PyroLRScheduler, default: float) -> float:
    for torch_scheduler in scheduler.optim_objs.values():
        return torch_scheduler.optimizer.param_groups[0]["lr"]
    return default
