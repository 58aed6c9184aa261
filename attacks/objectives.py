"""Attack objectives: small per-example functions that PGD maximises (paper Table 1, App. C.6).

An objective is a frozen record of what it needs (encoder, decoder, classifier, targets) with one
method, ``bind(x_ref, restarts=R)``. Binding computes everything that depends only on the N
references (their posteriors, decoded outputs, clean predictions) once, without gradients, and
repeats it R times along the batch (``repeat_interleave``: row n·R + r is restart r of reference
n). The bound ``value(x_adv)`` returns one number per row, so that summing rows for the gradient
keeps each row's perturbation dependent on its own objective only; all objectives are "maximise".

Objectives holding tensors use ``eq=False``: comparing them field by field would compare tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from .divergences import Divergence, Gaussian, symmetric_kl
from .encoders import Classifier, Decoder, Encoder


@dataclass(frozen=True)
class BoundObjective:
    """An objective specialised to one batch of references, as PGD consumes it.

    ``value(x_adv)`` is the per-example objective to maximise; ``success(x_adv)``, where defined,
    says per example whether the attack reached its goal (e.g. changed a classifier's prediction).

    Shape:
        x_adv: (N·R, C, H, W) → value: (N·R,), success: (N·R,) bool
    """

    value: Callable[[Tensor], Tensor]
    success: Callable[[Tensor], Tensor] | None = None


class Objective(Protocol):
    """Anything with ``bind(x_ref, *, restarts) -> BoundObjective``; x_ref is (N, C, H, W)."""

    def bind(self, x_ref: Tensor, *, restarts: int) -> BoundObjective: ...


def _rows(per_reference: Tensor, restarts: int) -> Tensor:
    """Repeat per-reference data (N, ...) to one row per attack (N·R, ...)."""
    return per_reference.repeat_interleave(restarts, dim=0)


def _check_per_reference(name: str, tensor: Tensor, x_ref: Tensor) -> None:
    if tensor.shape[0] != x_ref.shape[0]:
        raise ValueError(f"{name} must have one row per reference ({x_ref.shape[0]}), "
                         f"got shape {tuple(tensor.shape)}")


def _fixed_posterior(encode: Encoder, x: Tensor, restarts: int) -> Gaussian:
    """q(z|x) of references or targets: computed once, detached, repeated per restart."""
    with torch.no_grad():
        loc, scale = encode(x)
    return Gaussian(_rows(loc, restarts), _rows(scale, restarts))


def _latent_code(posterior: Gaussian, noise: Tensor | None) -> Tensor:
    """z = loc + scale·ξ with the fixed per-reference noise ξ, or the posterior mean if none."""
    return posterior.loc if noise is None else posterior.loc + posterior.scale * noise


def _squared_image_distance(a: Tensor, b: Tensor) -> Tensor:
    return (a - b).pow(2).flatten(1).sum(-1)


@dataclass(frozen=True)
class EncoderDivergence:
    """Unsupervised encoder attack (Section 2.2): maximise D[q(z|x_a), q(z|x_r)].

    ``divergence`` is one of :mod:`attacks.divergences` (default: symmetric KL, the paper's main
    attack; forward KL, reverse KL and squared mean distance are the Table 1 variants).
    """

    encode: Encoder
    divergence: Divergence = symmetric_kl

    def bind(self, x_ref: Tensor, *, restarts: int) -> BoundObjective:
        reference = _fixed_posterior(self.encode, x_ref, restarts)

        def value(x_adv: Tensor) -> Tensor:
            return self.divergence(Gaussian(*self.encode(x_adv)), reference)

        return BoundObjective(value=value)


@dataclass(frozen=True, eq=False)
class LatentTarget:
    """Supervised latent attack (Table 1): bring q(z|x_a) close to a target's posterior q(z|x_t).

    Maximises −D[q(z|x_a), q(z|x_t)]; ``x_target`` holds one target image per reference.
    Its optimum usually lies inside the ball, where the paper's lr-1 steps on raw gradients
    overshoot and bounce between corners; give :class:`~attacks.pgd.PGDConfig` a smaller
    ``learning_rate`` (0.1 reached the target on the test model where 1 did no better than
    random perturbations).

    Shape:
        x_target: (N, C, H, W)
    """

    encode: Encoder
    x_target: Tensor
    divergence: Divergence = symmetric_kl

    def bind(self, x_ref: Tensor, *, restarts: int) -> BoundObjective:
        _check_per_reference("x_target", self.x_target, x_ref)
        target = _fixed_posterior(self.encode, self.x_target, restarts)

        def value(x_adv: Tensor) -> Tensor:
            return -self.divergence(Gaussian(*self.encode(x_adv)), target)

        return BoundObjective(value=value)


@dataclass(frozen=True, eq=False)
class OutputTarget:
    """Targeted output attack (Table 1): make the decoded x_a match the decoded target.

    Maximises −‖g(z_a) − g(z_t)‖² over pixels, with g the decoder mean, z_a from q(z|x_a) and z_t
    from q(z|x_t). Both codes are loc + scale·ξ with the same fixed ``noise`` ξ for a reference
    and all its restarts (common random numbers keep the objective a deterministic function of
    x_a, so PGD ascends one surface); without ``noise`` both are posterior means.
    The optimum usually lies inside the ball, where the paper's lr-1 steps on raw gradients
    overshoot and bounce between corners; give :class:`~attacks.pgd.PGDConfig` a smaller
    ``learning_rate`` (0.1 reached the target on the test model where 1 did no better than
    random perturbations).

    Shape:
        x_target: (N, C, H, W);  noise: (N, D) or None
    """

    encode: Encoder
    decode: Decoder
    x_target: Tensor
    noise: Tensor | None = None

    def bind(self, x_ref: Tensor, *, restarts: int) -> BoundObjective:
        _check_per_reference("x_target", self.x_target, x_ref)
        noise = None
        if self.noise is not None:
            _check_per_reference("noise", self.noise, x_ref)
            noise = _rows(self.noise, restarts)
        target = _fixed_posterior(self.encode, self.x_target, restarts)
        with torch.no_grad():
            target_output = self.decode(_latent_code(target, noise))

        def value(x_adv: Tensor) -> Tensor:
            output = self.decode(_latent_code(Gaussian(*self.encode(x_adv)), noise))
            return -_squared_image_distance(output, target_output)

        return BoundObjective(value=value)


@dataclass(frozen=True, eq=False)
class MaximumDamage:
    """Maximum-damage attack (Table 1): maximise ‖g(z_a) − g(z_r)‖² over pixels.

    g is the decoder mean; z_a and z_r are codes from q(z|x_a) and q(z|x_r) built with the same
    fixed ``noise`` ξ (see :class:`OutputTarget`), so the damage is exactly 0 at x_a = x_r.

    Shape:
        noise: (N, D) or None
    """

    encode: Encoder
    decode: Decoder
    noise: Tensor | None = None

    def bind(self, x_ref: Tensor, *, restarts: int) -> BoundObjective:
        noise = None
        if self.noise is not None:
            _check_per_reference("noise", self.noise, x_ref)
            noise = _rows(self.noise, restarts)
        reference = _fixed_posterior(self.encode, x_ref, restarts)
        with torch.no_grad():
            reference_output = self.decode(_latent_code(reference, noise))

        def value(x_adv: Tensor) -> Tensor:
            output = self.decode(_latent_code(Gaussian(*self.encode(x_adv)), noise))
            return _squared_image_distance(output, reference_output)

        return BoundObjective(value=value)


@dataclass(frozen=True)
class ClassifierCrossEntropy:
    """Downstream attack (Section 2.2, PROTOCOL.md §6): maximise the cross-entropy of a latent
    classifier on μ(x_a) against the class it predicts for the clean reference μ(x_r).

    Success means the adversarial prediction differs from the clean one.
    """

    encode: Encoder
    classifier: Classifier

    def bind(self, x_ref: Tensor, *, restarts: int) -> BoundObjective:
        with torch.no_grad():
            clean_class = _rows(self.classifier(self.encode(x_ref)[0]).argmax(-1), restarts)

        def value(x_adv: Tensor) -> Tensor:
            logits = self.classifier(self.encode(x_adv)[0])
            return F.cross_entropy(logits, clean_class, reduction="none")

        def success(x_adv: Tensor) -> Tensor:
            return self.classifier(self.encode(x_adv)[0]).argmax(-1) != clean_class

        return BoundObjective(value=value, success=success)
