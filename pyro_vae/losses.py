"""Training objectives built on Pyro's ELBO.

* VAE / β-VAE: ``pyro.infer.TraceMeanField_ELBO`` with ``kl_scale=β`` passed to model and guide
  (see ``vae.py``: ``poutine.scale`` on the latent site). TraceMeanField_ELBO is Trace_ELBO with
  the KL of the Gaussian latent in closed form (scaled by the site's scale), which removes the
  Monte Carlo noise of the KL term from the gradients.
* β-TCVAE (Chen et al. 2018): the KL splits into index-code mutual information, total correlation
  TC = KL(q(z) ‖ Π_d q(z_d)) and dimension-wise KL; only TC gets the weight β, so the loss is
  −ELBO + (β − 1)·TC. ``TotalCorrelationELBO`` adds that penalty to ``TraceMeanField_ELBO`` per particle,
  reading z and q(z|x) from the guide trace, so it trains through ``pyro.infer.SVI`` unchanged.

Minibatch-weighted sampling (MWS, Chen et al. 2018, eq. S6). For a minibatch x_1..x_M drawn from a
dataset of N points and z_i ~ q(z|x_i), the aggregate posterior q(z) = (1/N) Σ_n q(z|x_n) is
estimated at z_i by

    log q(z_i)   ≈ logsumexp_j log q(z_i | x_j)   − log(N·M)
    log q_d(z_id) ≈ logsumexp_j log q(z_id | x_j) − log(N·M)          (one per dimension d)

and TC(z_i) = log q(z_i) − Σ_d log q_d(z_id). The estimator is biased for small M (it is
consistent as M grows) and its constant (D − 1)·log(N·M) makes single values depend on N and M,
but not its gradient.
"""

from __future__ import annotations

import math

import torch
from pyro.infer import TraceMeanField_ELBO
from pyro.infer.util import torch_item

from .vae import LATENT_SITE


def total_correlation_mws(z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor,
                          dataset_size: int) -> torch.Tensor:
    """Per-sample total correlation estimated by minibatch-weighted sampling.

    Shape:
        z, loc, scale: (M, D) → (M,)
    """
    batch_size = z.shape[0]
    if dataset_size < batch_size:
        raise ValueError(f"dataset_size ({dataset_size}) is smaller than the batch ({batch_size})")
    # log q(z_id | x_j) for all pairs (i, j) and dimensions d: (M, M, D)
    pairwise = torch.distributions.Normal(loc.unsqueeze(0), scale.unsqueeze(0)).log_prob(
        z.unsqueeze(1))
    log_norm = math.log(dataset_size * batch_size)
    log_q_joint = torch.logsumexp(pairwise.sum(-1), dim=1) - log_norm
    log_q_marginals = (torch.logsumexp(pairwise, dim=1) - log_norm).sum(-1)
    return log_q_joint - log_q_marginals


class TotalCorrelationELBO(TraceMeanField_ELBO):
    """``TraceMeanField_ELBO`` plus (β − 1)·TC for the β-TCVAE: loss = −ELBO + tc_weight·Σ_i TC(z_i).

    Both the reported loss and the surrogate that is differentiated carry the penalty; TC is summed
    over the minibatch because Pyro's ELBO is a sum over the data plate too.
    """

    def __init__(self, *, dataset_size: int, tc_weight: float, latent_site: str = LATENT_SITE,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.dataset_size = dataset_size
        self.tc_weight = tc_weight
        self.latent_site = latent_site

    def _penalty(self, guide_trace) -> torch.Tensor:
        site = guide_trace.nodes[self.latent_site]
        posterior = site["fn"].base_dist  # Independent(Normal) → Normal
        tc = total_correlation_mws(site["value"], posterior.loc, posterior.scale,
                                   self.dataset_size)
        return self.tc_weight * tc.sum()

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        loss, surrogate_loss = super()._differentiable_loss_particle(model_trace, guide_trace)
        penalty = self._penalty(guide_trace)
        return loss + torch_item(penalty), surrogate_loss + penalty

    def loss(self, model, guide, *args, **kwargs) -> float:
        total = 0.0
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            particle_loss, _ = self._differentiable_loss_particle(model_trace, guide_trace)
            total += torch_item(particle_loss) / self.num_particles
        return total


def make_elbo(config, *, dataset_size: int,
              latent_sites: tuple[str, ...] = (LATENT_SITE,)) -> TraceMeanField_ELBO:
    """The Pyro ELBO that trains a model of this config (KL scale goes to model/guide).

    The total-correlation penalty is defined for one flat latent site (the ConvVAE's); a config
    asking for it with several ``latent_sites`` is a ``ValueError``.
    """
    if config.tc_weight and tuple(latent_sites) != (LATENT_SITE,):
        raise ValueError(f"the β-TCVAE total-correlation loss needs the single latent site "
                         f"{LATENT_SITE!r}; this model has {tuple(latent_sites)}")
    if config.tc_weight:
        return TotalCorrelationELBO(dataset_size=dataset_size, tc_weight=config.tc_weight)
    return TraceMeanField_ELBO()
