"""SVI training of the VAEs (PROTOCOL.md §4): Adam 5e-4, batch 128, learning rate halved after 10
epochs without validation improvement, the last epoch's weights kept.

The model's parameters enter Pyro's parameter store only inside ``train_vae`` and only in a private
scope of that store: ``ConvVAE.model``/``guide`` themselves never call ``pyro.module``, so tracing the
guide of one trained model (attacks) or conditioning its model (defence) can never pick up another
model's weights from a global store.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import pyro
import pyro.optim
import torch
from pyro.infer import SVI
from tqdm.auto import tqdm

from .data import DataSplits, batch_of
from .losses import make_elbo
from .vae import ConvVAE


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 300
    batch_size: int = 128
    learning_rate: float = 5e-4
    lr_patience: int = 10  # epochs without validation improvement before halving
    lr_factor: float = 0.5
    seed: int = 0
    max_train_points: int | None = None  # cut the training set (quick profiles); None = all

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")


@dataclass
class TrainHistory:
    """Per-epoch mean training and validation loss (nats per point) and learning rate."""

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    learning_rate: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def _with_module(fn, vae: ConvVAE):
    """``fn`` (model or guide) with the VAE's parameters registered for the optimiser."""

    def registered(*args, **kwargs):
        pyro.module("vae", vae)
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


def train_vae(vae: ConvVAE, splits: DataSplits, config: TrainConfig, *,
              device: torch.device | str = "cpu", progress: bool = True,
              validation_points: int | None = None) -> TrainHistory:
    """Train ``vae`` in place with ``pyro.infer.SVI`` and return the loss history.

    The loss is ``make_elbo(vae.config)``: Trace_ELBO with the KL scaled by β (β-VAE) or
    the β-TCVAE total-correlation ELBO; both are Pyro ELBOs, so this is the only training loop.
    """
    device = torch.device(device)
    vae.to(device).train()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    num_train = len(splits.train) if config.max_train_points is None else min(
        config.max_train_points, len(splits.train))
    elbo = make_elbo(vae.config, dataset_size=num_train)
    scheduler = pyro.optim.ReduceLROnPlateau({
        "optimizer": torch.optim.Adam, "optim_args": {"lr": config.learning_rate},
        "factor": config.lr_factor, "patience": config.lr_patience})
    kl_scale = vae.config.kl_scale
    history = TrainHistory()
    with pyro.get_param_store().scope():
        svi = SVI(_with_module(vae.model, vae), _with_module(vae.guide, vae), scheduler, elbo)
        epochs = tqdm(range(config.epochs), desc=f"train {vae.config.kind} β={vae.config.beta:g}",
                      disable=not progress, unit="epoch")
        for _ in epochs:
            started = time.perf_counter()
            total, count = 0.0, 0
            for x, _targets in minibatches(splits.train, config.batch_size, generator=generator,
                                           limit=num_train):
                total += svi.step(x.to(device), kl_scale=kl_scale)
                count += len(x)
            validation = _mean_loss(svi, splits.validation, config.batch_size, device, kl_scale,
                                    validation_points)
            scheduler.step(validation)
            history.train_loss.append(total / count)
            history.validation_loss.append(validation)
            history.learning_rate.append(_current_lr(scheduler, config.learning_rate))
            history.seconds.append(time.perf_counter() - started)
            epochs.set_postfix(train=f"{total / count:.2f}", val=f"{validation:.2f}",
                               lr=f"{history.learning_rate[-1]:.1e}")
    vae.eval()
    return history


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
