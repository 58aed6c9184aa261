"""What the attacker sees of the model: an encoder ``x -> (loc, scale)`` read off a Pyro guide.

The attacks never import the VAE classes (DESIGN.md, "The shape of the library"); they take plain
callables. :func:`encoder_from_guide` turns the trained Pyro guide into such a callable, so the
encoder the attacker differentiates through is exactly the guide used for training.

A hierarchical VAE is attacked through its top k_A latent groups (PROTOCOL.md §6): the encoder
reads those guide sites and concatenates their flattened (loc, scale). A divergence between
diagonal Gaussians that sums over dimensions (the symmetric KL) is then the sum over the groups.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from pyro import poutine
from pyro.distributions import Independent
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch import Tensor

Encoder = Callable[[Tensor], tuple[Tensor, Tensor]]
"""``encode(x) -> (loc, scale)`` of a diagonal Gaussian q(z|x); x (B, C, H, W), loc/scale (B, D)."""

Decoder = Callable[[Tensor], Tensor]
"""``decode(z) -> x_mean``; z (B, D), x_mean (B, C, H, W)."""

Classifier = Callable[[Tensor], Tensor]
"""``logits(z) -> (B, K)`` of a downstream classifier on latent codes."""


class _AtMean(Messenger):
    """Sets every sample site of the guide to its distribution's mean instead of drawing from it.

    Reading (loc, scale) only needs a site's distribution; drawing a sample would waste work and
    advance the global RNG on every PGD step, making attacks depend on unrelated randomness. In a
    hierarchical guide each group is then read at the means of the groups above it (the groups
    below the attacked ones are set to their means too, so nothing is drawn), which makes the
    encoder a deterministic function of x.
    """

    def _pyro_sample(self, msg) -> None:
        if msg["value"] is None and not site_is_subsample(msg):  # plates draw no numbers
            msg["value"] = msg["fn"].mean


def _loc_and_scale(trace, site: str) -> tuple[Tensor, Tensor]:
    if site not in trace.nodes:
        raise ValueError(f"the guide has no sample site {site!r}; "
                         f"its sites are {list(trace.stochastic_nodes)}")
    fn = trace.nodes[site]["fn"]
    while isinstance(fn, Independent):
        fn = fn.base_dist
    if not (hasattr(fn, "loc") and hasattr(fn, "scale")):
        raise ValueError(f"site {site!r} is a {type(fn).__name__}, "
                         "not a (diagonal) Normal with loc and scale")
    return fn.loc, fn.scale


def encoder_from_guide(guide: Callable[..., object], *,
                       latent_site: str | Sequence[str] = "z") -> Encoder:
    """Wrap a Pyro guide with diagonal-Gaussian latent sites as an ``encode(x)`` callable.

    The guide is traced with :func:`pyro.poutine.trace`; each site's distribution (after
    unwrapping ``Independent``, e.g. from ``.to_event(1)``) must have ``loc`` and ``scale``.
    Gradients flow from loc and scale back to x, which is what the attacks need.

    ``latent_site`` is one site, returned as it is, or a sequence of sites (the top k_A groups
    of a hierarchical VAE, e.g. its ``attacked_sites``), each flattened and concatenated in the
    given order; every site is read with the groups above it at their means.

    Shape:
        x: (B, C, H, W) → loc, scale: (B, D), D the site's size or the sum of the sites' sizes
    """
    if isinstance(latent_site, str):
        sites = (latent_site,)
    else:
        sites = tuple(latent_site)
        if not sites or not all(isinstance(site, str) for site in sites):
            raise ValueError(f"latent_site must be a site name or a non-empty sequence of "
                             f"names, got {latent_site!r}")

    def encode(x: Tensor) -> tuple[Tensor, Tensor]:
        trace = poutine.trace(_AtMean()(guide)).get_trace(x)
        if isinstance(latent_site, str):
            return _loc_and_scale(trace, latent_site)
        pairs = [_loc_and_scale(trace, site) for site in sites]
        return (torch.cat([loc.flatten(1) for loc, _ in pairs], dim=1),
                torch.cat([scale.flatten(1) for _, scale in pairs], dim=1))

    return encode
