"""Divergences between diagonal Gaussians q(z|x) = N(loc, diag(scale²)), one value per example.

These are the encoder-attack objectives of paper Table 1 / Appendix C.6: symmetric KL (the
default of the unsupervised attack, Section 2.2), forward KL, reverse KL and the squared distance
between means. Every divergence is called as ``divergence(adversarial, reference)``, where the
reference is q(z|x_r) for unsupervised attacks and the target's posterior for supervised ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from torch import Tensor


class Gaussian(NamedTuple):
    """A diagonal Gaussian posterior. Shape: loc, scale: (B, D)."""

    loc: Tensor
    scale: Tensor


Divergence = Callable[[Gaussian, Gaussian], Tensor]
"""``divergence(adversarial, reference) -> (B,)``."""


def gaussian_kl(p: Gaussian, q: Gaussian) -> Tensor:
    """KL(p ‖ q) for diagonal Gaussians, summed over latent dimensions.

    Shape:
        p, q: loc and scale (B, D) → (B,)
    """
    variance_ratio = (p.scale / q.scale).pow(2)
    mahalanobis = ((p.loc - q.loc) / q.scale).pow(2)
    return 0.5 * (variance_ratio + mahalanobis - 1.0 - variance_ratio.log()).sum(-1)


def symmetric_kl(adversarial: Gaussian, reference: Gaussian) -> Tensor:
    """SKL = (KL(a ‖ r) + KL(r ‖ a)) / 2, the unsupervised attack objective of Section 2.2.

    Shape:
        adversarial, reference: loc and scale (B, D) → (B,)
    """
    return 0.5 * (gaussian_kl(adversarial, reference) + gaussian_kl(reference, adversarial))


def forward_kl(adversarial: Gaussian, reference: Gaussian) -> Tensor:
    """Forward KL(q(z|x_r) ‖ q(z|x_a)) (Table 1).

    Shape:
        adversarial, reference: loc and scale (B, D) → (B,)
    """
    return gaussian_kl(reference, adversarial)


def reverse_kl(adversarial: Gaussian, reference: Gaussian) -> Tensor:
    """Reverse KL(q(z|x_a) ‖ q(z|x_r)) (Table 1).

    Shape:
        adversarial, reference: loc and scale (B, D) → (B,)
    """
    return gaussian_kl(adversarial, reference)


def squared_mean_distance(adversarial: Gaussian, reference: Gaussian) -> Tensor:
    """‖μ(x_a) − μ(x_r)‖², ignoring the scales (Table 1, "L2 between means").

    Shape:
        adversarial, reference: loc and scale (B, D) → (B,)
    """
    return (adversarial.loc - reference.loc).pow(2).sum(-1)
