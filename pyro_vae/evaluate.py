"""Test-set evaluation (PROTOCOL.md §8, Table 7): ELBO, importance-sampled NLL, MSE.

All quantities are in nats per image (ELBO, NLL) or per pixel on the 0–255 scale (MSE), averaged
over the evaluated points. Log densities come from the Pyro model and guide themselves (traces of
the guide and of the model replayed on it), so the evaluation can never drift from what was
trained or what the defence samples, and it holds for any model of the interface, with one
latent site or several: log w = log p(x, z) − log q(z|x) sums over all sites.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from tqdm.auto import tqdm

from .interface import PyroVAE
from .train import minibatches
from .vae import LATENT_SITE


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


def _log_density(trace) -> torch.Tensor:
    """Sum of the per-point log densities of a trace's sample sites (plates excluded)."""
    trace.compute_log_prob(lambda _, site: not site_is_subsample(site))
    return sum(site["log_prob"] for site in trace.nodes.values()
               if site["type"] == "sample" and not site_is_subsample(site))


def log_joint(vae: PyroVAE, x: torch.Tensor,
              z: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    """log p(x, z) = log p(x|z) + Σ_k log p(z_k | z_>k) per point, from the unscaled Pyro model.

    ``z`` is the value of the single site "z" (ConvVAE) or a dict with every latent site.

    Shape:
        x: (B, C, H, W), z: (B, D) or {site: (B, *latent_shapes[site])} → (B,)
    """
    data = z if isinstance(z, dict) else {LATENT_SITE: z}
    return _log_density(poutine.trace(poutine.condition(vae.model, data=data)).get_trace(x))


def importance_log_weights(vae: PyroVAE, x: torch.Tensor, num_samples: int) -> torch.Tensor:
    """log p(x, z_k) − log q(z_k|x) for z_k ~ q(z|x) (every latent site), all points and samples
    in one batch: the guide runs on x tiled ``num_samples`` times (sample-major) and the model is
    replayed on its trace. Both are run unscaled (``kl_scale=1``).

    Shape:
        x: (B, C, H, W) → (num_samples, B)
    """
    x_tiled = x.expand(num_samples, *x.shape).reshape(-1, *x.shape[1:])
    guide_trace = poutine.trace(vae.guide).get_trace(x_tiled)
    model_trace = poutine.trace(poutine.replay(vae.model, trace=guide_trace)).get_trace(x_tiled)
    return (_log_density(model_trace) - _log_density(guide_trace)).view(num_samples, -1)


@torch.no_grad()
def evaluate_vae(vae: PyroVAE, subset, *, num_importance_samples: int = 1000,
                 max_points: int | None = None, samples_per_batch: int = 4000,
                 device: torch.device | str = "cpu", seed: int = 0,
                 progress: bool = True) -> Evaluation:
    """ELBO, NLL (k = ``num_importance_samples``) and MSE on (the first ``max_points`` of) a split.

    Points are processed ``samples_per_batch // k`` at a time with all their k samples in one
    guide and one model call.
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


def entropy_floor(subset, *, batch_size: int = 1000, max_points: int | None = None) -> tuple[float, float]:
    """The lowest NLL any model with this likelihood can reach: Σ_pixels H(x_pixel) per image.

    For an intensity x ∈ [0, 1] and any Bernoulli mean p, −[x log p + (1 − x) log(1 − p)] ≥ H(x)
    = −x log x − (1 − x) log(1 − x) (Gibbs' inequality, equality at p = x). So every decoded
    image has p(x|z) ≤ exp(−Σ H(x)), and so has their average p(x) = E_p(z)[p(x|z)]. A test NLL
    below this floor cannot come from the Bernoulli likelihood on [0, 1] intensities
    (PROTOCOL.md §3) on these images: it was measured on other data or with another estimator.

    Returns (mean, standard error) in nats per image over the first ``max_points`` images.
    """
    totals = []
    count = min(len(subset), max_points or len(subset))
    for x, _ in minibatches(subset, batch_size, limit=count):
        x = x.double().clamp(0.0, 1.0)
        entropy = -(torch.xlogy(x, x) + torch.xlogy(1.0 - x, 1.0 - x))
        totals.append(entropy.flatten(1).sum(1))
    per_image = torch.cat(totals)
    return float(per_image.mean()), float(per_image.std() / math.sqrt(len(per_image)))

