"""Adaptive attacks on the MCMC defence (Section 4.4, Appendix C.3, eq. 64–66; issue 11).

The defended latent of an input x is z̃ = the chain's final state, started at z₀ = loc(x) +
scale(x)·ξ (Algorithm 1). A defence-aware attacker maximises ‖z̃_a − z̃_r‖² (eq. 64–66), where
z̃_r, the defended latent of the reference, is one run of the chain computed once at bind time
without gradients. The objectives differ in how the gradient gets through the chain:

- ``"unrolled"``: through the K-step chain itself (a differentiable chain such as
  :class:`inference.unrolled.UnrolledHMC`; the potential's dependence on x included);
- ``"bpda"`` (Athalye et al. 2018): the real chain forward, the identity backward, so the
  gradient reaches x through z₀ only;
- ``"detached"``: the gradient the authors' defence-aware attack got (facts read from
  AKuzina/defend_vae_mcmc, ``attack/attacker.py`` and ``vae/model/hmc.py``): every transition
  started its proposal from a detached copy of the state and wrote accepted proposals into the
  state in place (masked assignment), so the final state kept its graph to the chain's start in
  chains that never accepted a proposal and had none in any chain that moved; the Metropolis
  ratio, though a function of x, only fed a boolean test. Their attack also differed in what is
  kept the defence's here, so the three modes differ in the gradient only: the chain started at
  the encoder mean μ(x_a), not a sample, and ran 1.5·T transitions with one step size adapted
  at every transition; the reference was μ(x_r) without the chain; and their SKL variant put the
  chain's output in place of μ(x_a) beside the encoder's variance of x_a.

EOT (expectation over transformation, Athalye et al. 2018): ``draws`` > 1 runs that many chains
per row (the chain's randomness: start noise, momenta, jitter, Metropolis uniforms) and
averages the objective; the random numbers are fresh at every evaluation (PGD step) and fixed
within it. :class:`PosteriorShift` and :class:`ScoreFunctionDistance` attack the posterior
p(z|x_a) the chain samples instead of the chain's path.

The attacks see the model through callables only (DESIGN.md): ``encode(x) -> (loc, scale)``,
a :data:`DefenceChain` and a :data:`LogLikelihood`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .divergences import Gaussian, symmetric_kl
from .encoders import Encoder
from .objectives import BoundObjective, _check_per_reference, _fixed_posterior, _rows

DefenceChain = Callable[[Tensor, Tensor, torch.Generator], Tensor]
"""``chain(x, z0, generator) -> z_K``: the defence's transitions from z₀ on inputs x, drawing its
random numbers from ``generator`` (e.g. :class:`inference.unrolled.UnrolledHMC`).
x (B, C, H, W); z0 and z_K (E, B, D), E chains per input."""

LogLikelihood = Callable[[Tensor, Tensor], Tensor]
"""``log_likelihood(x, z) -> (E, B)``: log p(x|z), differentiable in x; x (B, C, H, W), z (E, B, D).
log p(x, z) serves as well: it differs by log p(z), which does not depend on x."""

GradientPath = Literal["unrolled", "bpda", "detached"]
GRADIENT_PATHS = ("unrolled", "bpda", "detached")


def _generator(seed: int, like: Tensor) -> torch.Generator:
    return torch.Generator(device=like.device).manual_seed(seed)


def _chain_start(posterior: Gaussian, draws: int, generator: torch.Generator) -> Tensor:
    """z₀ = loc + scale·ξ, ξ ~ N(0, I) per draw, reparameterised (Algorithm 1).
    Shape: loc, scale (B, D) -> (draws, B, D)."""
    noise = torch.randn((draws, *posterior.loc.shape), generator=generator,
                        dtype=posterior.loc.dtype, device=posterior.loc.device)
    return posterior.loc + posterior.scale * noise


def _defended_reference(encode: Encoder, chain: DefenceChain, x_ref: Tensor, restarts: int,
                        generator: torch.Generator) -> Tensor:
    """z̃_r: one run of the chain on each reference, without gradients, repeated per restart.
    Shape: x_ref (N, ...) -> (N·R, D)."""
    with torch.no_grad():
        start = _chain_start(Gaussian(*encode(x_ref)), 1, generator)
        return _rows(chain(x_ref, start, generator)[0], restarts)


def _check_draws(draws: int, minimum: int) -> None:
    if draws < minimum:
        raise ValueError(f"draws must be >= {minimum}, got {draws}")


def _squared_distance(z: Tensor, z_ref: Tensor) -> Tensor:
    """‖z − z_ref‖² per chain. Shape: (E, B, D), (B, D) -> (E, B)."""
    return (z - z_ref).pow(2).sum(-1)


@dataclass(frozen=True, eq=False)
class DefendedLatentDistance:
    """Defence-aware attack (eq. 64–66): maximise E‖z̃_a − z̃_r‖² + w·SKL[q(z|x_a), q(z|x_r)].

    ``gradient``: ``"unrolled"``, ``"bpda"`` or ``"detached"`` (see the module docstring);
    ``draws``: chains averaged per evaluation (1: a single draw; EOT: 8 or more);
    ``skl_weight`` w ≥ 0: adds the encoder attack's SKL (Section 2.2), which also moves the
    chain's start. ``seed`` seeds the reference's chain and all later draws.

    Usage: ``pgd_attack(DefendedLatentDistance(encode, UnrolledHMC(vae.model, step_size=0.1,
    num_transitions=10), gradient="bpda", draws=8), x_ref, radii=[0.1], generator=g)``.

    Shape: value (N·R,).
    """

    encode: Encoder
    chain: DefenceChain
    gradient: GradientPath = "unrolled"
    draws: int = 1
    skl_weight: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if self.gradient not in GRADIENT_PATHS:
            raise ValueError(f"gradient must be one of {GRADIENT_PATHS}, got {self.gradient!r}")
        _check_draws(self.draws, 1)
        if not self.skl_weight >= 0:
            raise ValueError(f"skl_weight must be >= 0, got {self.skl_weight}")

    def _defended(self, x_adv: Tensor, start: Tensor, generator: torch.Generator) -> Tensor:
        """z̃_a with the chosen gradient path. Shape: start (E, B, D) -> (E, B, D)."""
        if self.gradient == "unrolled":
            return self.chain(x_adv, start, generator)
        with torch.no_grad():
            final = self.chain(x_adv.detach(), start.detach(), generator)
        if self.gradient == "bpda":
            # The real chain's value with the identity's gradient: start − start.detach() is 0.
            return final + (start - start.detach())
        # The authors' chain: a chain that never accepted still is its start, with its graph.
        never_moved = (final == start.detach()).all(-1, keepdim=True)
        return torch.where(never_moved, start, final)

    def bind(self, x_ref: Tensor, *, restarts: int) -> BoundObjective:
        generator = _generator(self.seed, x_ref)
        reference = _fixed_posterior(self.encode, x_ref, restarts)
        defended_reference = _defended_reference(self.encode, self.chain, x_ref, restarts, generator)

        def value(x_adv: Tensor) -> Tensor:
            posterior = Gaussian(*self.encode(x_adv))
            defended = self._defended(x_adv, _chain_start(posterior, self.draws, generator), generator)
            objective = _squared_distance(defended, defended_reference).mean(0)
            if self.skl_weight:
                objective = objective + self.skl_weight * symmetric_kl(posterior, reference)
            return objective

        return BoundObjective(value=value)


@dataclass(frozen=True, eq=False)
class ScoreFunctionDistance:
    """Maximise E_{p(z|x_a)}‖z − z̃_r‖², the posterior the defence samples, by its score-function
    gradient ∇_x E[f(z)] = Cov(f(z), ∇_x log p(x_a|z)) (since ∇_x log p(z|x) = ∇_x log p(x|z) −
    E_{p(z|x)}[∇_x log p(x|z)]), estimated from ``draws`` chain draws (≥ 2) with the sample
    covariance. The chain's draws stand in for p(z|x_a); how its start depends on x is ignored.

    The value is the draws' mean of f, so PGD reports the estimated objective; its gradient is
    the covariance estimate.

    Usage: ``pgd_attack(ScoreFunctionDistance(encode, chain, log_likelihood, draws=16), x_ref,
    radii=[0.1], generator=g)``.

    Shape: value (N·R,).
    """

    encode: Encoder
    chain: DefenceChain
    log_likelihood: LogLikelihood
    draws: int = 8
    seed: int = 0

    def __post_init__(self):
        _check_draws(self.draws, 2)

    def bind(self, x_ref: Tensor, *, restarts: int) -> BoundObjective:
        generator = _generator(self.seed, x_ref)
        defended_reference = _defended_reference(self.encode, self.chain, x_ref, restarts, generator)

        def value(x_adv: Tensor) -> Tensor:
            with torch.no_grad():
                start = _chain_start(Gaussian(*self.encode(x_adv)), self.draws, generator)
                draws = self.chain(x_adv, start, generator)
                distance = _squared_distance(draws, defended_reference)
            # Σ_e (f_e − f̄)·log p(x|z_e) / (E − 1): its gradient is the sample covariance.
            surrogate = ((distance - distance.mean(0)) * self.log_likelihood(x_adv, draws)).sum(0)
            surrogate = surrogate / (self.draws - 1)
            return distance.mean(0) + (surrogate - surrogate.detach())

        return BoundObjective(value=value)


@dataclass(frozen=True, eq=False)
class PosteriorShift:
    """Move the posterior the chain samples towards a target code: maximise
    log p(x_a|z_t) − log p(x_a|z_r) + w·SKL[q(z|x_a), q(z|x_r)].

    z_t = μ(x_t) of one target image per reference (e.g. another reference), z_r = μ(x_r). The
    likelihood ratio raises p(z_t|x_a) / p(z_r|x_a), the posterior odds of the target code
    against the reference's, whatever the chain's path; the SKL term moves the encoder, where the
    chain starts. Both terms are in nats; ``skl_weight`` w = 1 adds them as they are (the ratio
    sums over pixels and usually dominates; a larger w favours fooling the encoder as well).

    Usage: ``pgd_attack(PosteriorShift(encode, log_likelihood, x_ref.roll(1, 0)), x_ref,
    radii=[0.1], generator=g)``.

    Shape: x_target (N, C, H, W); value (N·R,).
    """

    encode: Encoder
    log_likelihood: LogLikelihood
    x_target: Tensor
    skl_weight: float = 1.0

    def __post_init__(self):
        if not self.skl_weight >= 0:
            raise ValueError(f"skl_weight must be >= 0, got {self.skl_weight}")

    def bind(self, x_ref: Tensor, *, restarts: int) -> BoundObjective:
        _check_per_reference("x_target", self.x_target, x_ref)
        reference = _fixed_posterior(self.encode, x_ref, restarts)
        codes = torch.stack([_fixed_posterior(self.encode, self.x_target, restarts).loc, reference.loc])

        def value(x_adv: Tensor) -> Tensor:
            # One likelihood call for both codes: chains (2, B, D) over the same inputs.
            target, own = self.log_likelihood(x_adv, codes)
            objective = target - own
            if self.skl_weight:
                objective = objective + self.skl_weight * symmetric_kl(Gaussian(*self.encode(x_adv)), reference)
            return objective

        return BoundObjective(value=value)
