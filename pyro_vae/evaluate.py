"""Test-set evaluation (PROTOCOL.md §8, Table 7): ELBO, importance-sampled NLL, MSE.

All quantities are in nats per image (ELBO, NLL) or per pixel on the 0–255 scale (MSE), averaged
over the evaluated points. Log densities come from the Pyro model itself (``log_joint``), so the
evaluation can never drift from what was trained or what the defence samples.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pyro
import torch
from pyro import poutine
from tqdm.auto import tqdm

from .train import minibatches
from .vae import LATENT_SITE, ConvVAE


@dataclass(frozen=True)
class Evaluation:
    elbo: float  # nats per image, one-sample estimate, higher is better
    nll: float  # −log p(x) by importance sampling with k samples, lower is better
    nll_standard_error: float  # over the evaluated points
    mse: float  # per pixel, 0–255 scale, x against decode(encoder mean)
    num_points: int
    num_importance_samples: int

    def to_dict(self) -> dict:
        return asdict(self)


def log_joint(vae: ConvVAE, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x, z) = log p(x|z) + log p(z) per point, from the unscaled Pyro model.

    Shape:
        x: (B, C, H, W), z: (B, D) → (B,)
    """
    conditioned = poutine.condition(vae.model, data={LATENT_SITE: z})
    trace = poutine.trace(conditioned).get_trace(x)
    trace.compute_log_prob()
    return sum(site["log_prob"] for site in trace.nodes.values() if site["type"] == "sample")


def importance_log_weights(vae: ConvVAE, x: torch.Tensor, num_samples: int) -> torch.Tensor:
    """log p(x, z_k) − log q(z_k|x) for z_k ~ q(z|x), all points and samples in one batch.

    Shape:
        x: (B, C, H, W) → (num_samples, B)
    """
    loc, scale = vae.encode(x)
    posterior = torch.distributions.Normal(loc, scale)
    z = posterior.sample((num_samples,))  # (K, B, D)
    x_tiled = x.expand(num_samples, *x.shape).reshape(-1, *x.shape[1:])
    joint = log_joint(vae, x_tiled, z.reshape(-1, z.shape[-1])).view(num_samples, -1)
    return joint - posterior.log_prob(z).sum(-1)


@torch.no_grad()
def evaluate_vae(vae: ConvVAE, subset, *, num_importance_samples: int = 1000,
                 max_points: int | None = None, samples_per_batch: int = 4000,
                 device: torch.device | str = "cpu", seed: int = 0,
                 progress: bool = True) -> Evaluation:
    """ELBO, NLL (k = ``num_importance_samples``) and MSE on (the first ``max_points`` of) a split.

    Points are processed ``samples_per_batch // k`` at a time with all their k samples in one
    decoder call.
    """
    if num_importance_samples < 1:
        raise ValueError("num_importance_samples must be at least 1")
    vae.to(device).eval()
    torch.manual_seed(seed)
    points_per_batch = max(1, samples_per_batch // num_importance_samples)
    total = len(subset) if max_points is None else min(max_points, len(subset))
    sums = {"elbo": 0.0, "nll": 0.0, "nll_squared": 0.0, "mse": 0.0}
    bar = tqdm(total=total, desc="evaluate", unit="img", disable=not progress)
    with pyro.validation_enabled(True):
        for x, _ in minibatches(subset, points_per_batch, limit=total):
            x = x.to(device)
            log_w = importance_log_weights(vae, x, num_importance_samples)
            sums["elbo"] += log_w[0].sum().item()
            nll = math.log(num_importance_samples) - torch.logsumexp(log_w, 0)
            sums["nll"] += nll.sum().item()
            sums["nll_squared"] += (nll**2).sum().item()
            reconstruction = vae.reconstruct(x)
            sums["mse"] += ((255 * (x - reconstruction)) ** 2).flatten(1).mean(1).sum().item()
            bar.update(len(x))
    bar.close()
    nll_mean = sums["nll"] / total
    variance = max(sums["nll_squared"] / total - nll_mean**2, 0.0) * total / max(total - 1, 1)
    return Evaluation(elbo=sums["elbo"] / total, nll=nll_mean,
                      nll_standard_error=math.sqrt(variance / total), mse=sums["mse"] / total,
                      num_points=total, num_importance_samples=num_importance_samples)
