"""Threat model: an L∞ ball of radius ε around the reference, intersected with the pixel box [0, 1].

Paper Section 2.2 and Appendix D.2 (PROTOCOL.md §6): x_a = x_r + δ with ‖δ‖∞ ≤ ε and x_a ∈ [0, 1].
The authors clamped to each reference's own min/max instead of [0, 1] (PROTOCOL.md §10); here the
box is always [0, 1].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def check_radius(radius: float) -> float:
    """Return ``radius`` as a float, or raise ``ValueError`` unless it is a number in [0, 1].

    Radii above 1 are meaningless for images in [0, 1] (the box already contains the whole ball),
    so they signal a unit mistake (e.g. 0–255 pixel scale) rather than a strong attack.
    """
    try:
        value = float(radius)
    except (TypeError, ValueError):
        raise ValueError(f"attack radius must be a number in [0, 1], got {radius!r}") from None
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"attack radius must lie in [0, 1] (L∞ on [0, 1] pixels), got {radius!r}")
    return value


def check_images(x: Tensor, *, name: str = "x") -> None:
    """Raise ``ValueError`` unless ``x`` is a floating (B, C, H, W) tensor with values in [0, 1].

    Called once per attack, outside the optimisation loop, because it synchronises with the device.
    """
    if not isinstance(x, Tensor) or x.dim() != 4 or not x.is_floating_point():
        described = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) \
            else type(x).__name__
        raise ValueError(f"{name} must be a floating tensor of shape (B, C, H, W), "
                         f"got {described}")
    if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError(f"{name} must have pixel values in [0, 1] (NaN not allowed); got min "
                         f"{x.min().item():.4g}, max {x.max().item():.4g}")


def project(x_ref: Tensor, delta: Tensor, *, radius: float) -> Tensor:
    """Project x_ref + delta onto {x : ‖x − x_ref‖∞ ≤ radius} ∩ [0, 1]^n: ball first, then box.

    Both sets are per-pixel intervals and x_ref lies in both, so clamping to the ball and then to
    the box is the exact Euclidean projection onto their intersection.

    Shape:
        x_ref, delta: (B, C, H, W) → x_adv: (B, C, H, W)
    """
    return torch.clamp(x_ref + torch.clamp(delta, -radius, radius), 0.0, 1.0)
