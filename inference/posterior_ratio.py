"""Log posterior ratio (paper eq. 11) and the two-sample Kolmogorov–Smirnov test of Section 4.

    log p(x_r|z₁) + log p(z₁) − log p(x_r|z₂) − log p(z₂)

with z₁ = z_r and z₂ = z_a (no defence) or z₂ = z_a after HMC; both terms are the joint log
density of the model conditioned on the reference x_r, from the same target as the sampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from scipy.stats import ks_2samp
from torch import Tensor

from inference.target import PosteriorTarget


def log_posterior_ratio(
    model: Callable,
    model_args: tuple,
    z1: Tensor,
    z2: Tensor,
    *,
    latent_site: str = "z",
    model_kwargs: dict | None = None,
) -> Tensor:
    """Eq. 11 per point (and per draw), evaluated in one batched model call.

    Shape:
        z1, z2: (N, D) -> (N,); or (K, N, D) -> (K, N) (e.g. K draws per point).
    """
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}")
    single = z1.dim() == 2
    if single:
        z1, z2 = z1.unsqueeze(0), z2.unsqueeze(0)
    copies = z1.shape[0]
    # One evaluation: tracing a program for it would cost more than it saves.
    target = PosteriorTarget(model, model_args, latent_site=latent_site, num_chains=2 * copies,
                             model_kwargs=model_kwargs, compile=False)
    with torch.no_grad():
        log_joint = target.log_joint(torch.cat([z1, z2]))
    ratio = log_joint[:copies] - log_joint[copies:]
    return ratio[0] if single else ratio


@dataclass(frozen=True)
class KSResult:
    """Two-sample Kolmogorov–Smirnov statistic and p-value."""

    statistic: float
    pvalue: float


def ks_two_sample(sample1, sample2) -> KSResult:
    """Two-sided two-sample KS test (``scipy.stats.ks_2samp``) of two flattened samples, e.g.
    the log posterior ratios without and with the defence."""
    a = np.asarray(torch.as_tensor(sample1).detach().cpu(), dtype=float).ravel()
    b = np.asarray(torch.as_tensor(sample2).detach().cpu(), dtype=float).ravel()
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("KS test samples must be finite")
    result = ks_2samp(a, b)
    return KSResult(float(result.statistic), float(result.pvalue))
