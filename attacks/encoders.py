"""What the attacker sees of the model: an encoder ``x -> (loc, scale)`` read off a Pyro guide.

The attacks never import the VAE classes (DESIGN.md, "The shape of the library"); they take plain
callables. :func:`encoder_from_guide` turns the trained Pyro guide into such a callable, so the
encoder the attacker differentiates through is exactly the guide used for training.
"""

from __future__ import annotations

from collections.abc import Callable

from pyro import poutine
from pyro.distributions import Independent
from pyro.poutine.messenger import Messenger
from torch import Tensor

Encoder = Callable[[Tensor], tuple[Tensor, Tensor]]
"""``encode(x) -> (loc, scale)`` of a diagonal Gaussian q(z|x); x (B, C, H, W), loc/scale (B, D)."""

Decoder = Callable[[Tensor], Tensor]
"""``decode(z) -> x_mean``; z (B, D), x_mean (B, C, H, W)."""

Classifier = Callable[[Tensor], Tensor]
"""``logits(z) -> (B, K)`` of a downstream classifier on latent codes."""


class _SiteAtMean(Messenger):
    """Sets the named sample site to its distribution's mean instead of drawing from it.

    Reading (loc, scale) only needs the site's distribution; drawing a sample would waste work and
    advance the global RNG on every PGD step, making attacks depend on unrelated randomness.
    """

    def __init__(self, site: str) -> None:
        super().__init__()
        self.site = site

    def _pyro_sample(self, msg) -> None:
        if msg["name"] == self.site and msg["value"] is None:
            msg["value"] = msg["fn"].mean


def encoder_from_guide(guide: Callable[..., object], *, latent_site: str = "z") -> Encoder:
    """Wrap a Pyro guide with a diagonal-Gaussian latent site as an ``encode(x)`` callable.

    The guide is traced with :func:`pyro.poutine.trace`; the site's distribution (after unwrapping
    ``Independent``, e.g. from ``.to_event(1)``) must have ``loc`` and ``scale``. Gradients flow
    from loc and scale back to x, which is what the attacks need.

    Shape:
        x: (B, C, H, W) → loc, scale: (B, D)
    """

    def encode(x: Tensor) -> tuple[Tensor, Tensor]:
        trace = poutine.trace(_SiteAtMean(latent_site)(guide)).get_trace(x)
        if latent_site not in trace.nodes:
            raise ValueError(f"the guide has no sample site {latent_site!r}; "
                             f"its sites are {list(trace.stochastic_nodes)}")
        fn = trace.nodes[latent_site]["fn"]
        while isinstance(fn, Independent):
            fn = fn.base_dist
        if not (hasattr(fn, "loc") and hasattr(fn, "scale")):
            raise ValueError(f"site {latent_site!r} is a {type(fn).__name__}, "
                             "not a (diagonal) Normal with loc and scale")
        return fn.loc, fn.scale

    return encode
