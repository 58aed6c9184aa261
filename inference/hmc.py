"""Batched Hamiltonian Monte Carlo as pure functions over state records (Algorithm 1).

Every chain of every point is an independent Markov chain: its own momentum, step size,
Metropolis test and divergence flag, advanced together by one batched potential+gradient call
per leapfrog step. Non-finite values never leave a chain: a proposal with a non-finite energy or
gradient is rejected and flagged divergent, and a chain whose current state is non-finite never
accepts anything. No host synchronisation happens here (no ``.item()``, no Python ``if`` on
tensors), so the same code runs on a GPU without stalls.
"""

from __future__ import annotations

from typing import NamedTuple, TypeVar

import torch
from torch import Tensor

from inference.integrator import leapfrog
from inference.target import ValueAndGrad

MAX_DELTA_ENERGY = 1000.0  # energy error above which a transition counts as divergent (Stan's)


class HMCState(NamedTuple):
    """Position of every chain with its potential and gradient (reused by the next transition).

    Shape: z (*B, D), potential (*B), grad (*B, D); *B = (num_chains, num_points).
    """

    z: Tensor
    potential: Tensor
    grad: Tensor


class HMCInfo(NamedTuple):
    """What one HMC transition did, per chain. Every field has shape (*B).

    accept_prob: min(1, exp(−ΔH)), 0 when ΔH is not finite.  accepted: the Metropolis outcome.
    diverging: ΔH > 1000 or a non-finite energy/gradient.  energy: H = U + ½|p|² at the returned
    state with its momentum.  potential: U at the returned state.  step_size: the η used (the
    jittered one when the kernel jitters).  num_steps: leapfrog steps integrated.
    num_grad_evals: potential-and-gradient evaluations spent on this chain (= num_steps: the
    gradient at the start is carried over from the previous transition).
    """

    accept_prob: Tensor
    accepted: Tensor
    diverging: Tensor
    energy: Tensor
    potential: Tensor
    step_size: Tensor
    num_steps: Tensor
    num_grad_evals: Tensor


Record = TypeVar("Record", bound=tuple)


def select_chains(take: Tensor, new: Record, old: Record) -> Record:
    """Per chain, ``new``'s fields where ``take`` and ``old``'s elsewhere: one ``torch.where`` per
    field of a record of tensors (an :class:`HMCState`, an Adam state, a NUTS tree edge), the
    mask widened to each field's trailing dims. Differentiable along the chosen branch.

    Shape: take (*B); every field (*B) or (*B, D).
    """
    return type(new)(*(torch.where(take.reshape(take.shape + (1,) * (a.dim() - take.dim())), a, b)
                       for a, b in zip(new, old)))


def _finite_rows(x: Tensor) -> Tensor:
    return torch.isfinite(x).all(dim=-1)


def hmc_init(z: Tensor, value_and_grad: ValueAndGrad) -> HMCState:
    """Initial state. Non-finite entries of z are replaced by 0 (the prior mean) so that NaN
    never enters the chain's positions; such a point's potential usually stays non-finite and
    the point is then rejected at every transition.

    Shape: z (*B, D).
    """
    z = torch.where(torch.isfinite(z), z, torch.zeros((), dtype=z.dtype, device=z.device))
    potential, grad = value_and_grad(z)
    return HMCState(z, potential, grad)


def kinetic_energy(momentum: Tensor) -> Tensor:
    """½ pᵀp (unit mass). Shape: (*B, D) -> (*B)."""
    return 0.5 * (momentum * momentum).sum(dim=-1)


class HMCNoise(NamedTuple):
    """The random numbers of one HMC transition. Shape: momentum (*B, D), uniform (*B)."""

    momentum: Tensor
    uniform: Tensor


def draw_hmc_noise(z: Tensor, generator: torch.Generator | None) -> HMCNoise:
    """p ~ N(0, I) then one U(0, 1) per chain, in fixed shapes, so a chain's randomness does not
    depend on the values of any other chain. Shape: z (*B, D)."""
    momentum = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
    uniform = torch.rand(z.shape[:-1], generator=generator, dtype=z.dtype, device=z.device)
    return HMCNoise(momentum, uniform)


def hmc_step(
    state: HMCState,
    value_and_grad: ValueAndGrad,
    step_size: Tensor,
    num_steps: int,
    generator: torch.Generator | None,
) -> tuple[HMCState, HMCInfo]:
    """One HMC transition per chain: :func:`draw_hmc_noise` from ``generator``, then
    :func:`hmc_move`.

    Shape: step_size (*B); returns the new state and an :class:`HMCInfo` of shape (*B).
    """
    return hmc_move(state, value_and_grad, step_size, num_steps, draw_hmc_noise(state.z, generator))


def hmc_move(
    state: HMCState,
    value_and_grad: ValueAndGrad,
    step_size: Tensor,
    num_steps: int,
    noise: HMCNoise,
) -> tuple[HMCState, HMCInfo]:
    """The deterministic part of a transition, given its random numbers: ``num_steps`` leapfrog
    steps from momentum ``noise.momentum``, then the Metropolis test against ``noise.uniform``.

    The next state is chosen with ``torch.where``, so when ``value_and_grad`` keeps its graph
    the transition is differentiable along the chosen branch (:mod:`inference.unrolled`).

    Shape: step_size (*B); returns the new state and an :class:`HMCInfo` of shape (*B).
    """
    z, potential, grad = state
    momentum, uniform = noise
    energy = potential + kinetic_energy(momentum)

    z_new, momentum_new, potential_new, grad_new = leapfrog(
        z, momentum, grad, step_size, num_steps, value_and_grad
    )
    energy_new = potential_new + kinetic_energy(momentum_new)
    delta = energy_new - energy
    finite = torch.isfinite(delta) & _finite_rows(grad_new) & _finite_rows(z_new)
    delta = torch.where(finite, delta, torch.full_like(delta, float("inf")))
    accept_prob = torch.exp(torch.clamp(-delta, max=0.0))
    accepted = finite & (uniform < accept_prob)

    new_state = select_chains(accepted, HMCState(z_new, potential_new, grad_new), state)
    info = HMCInfo(
        accept_prob=accept_prob,
        accepted=accepted,
        diverging=delta > MAX_DELTA_ENERGY,
        energy=torch.where(accepted, energy_new, energy),
        potential=new_state.potential,
        step_size=step_size,
        num_steps=torch.full_like(potential, num_steps, dtype=torch.int64),
        num_grad_evals=torch.full_like(potential, num_steps, dtype=torch.int64),
    )
    return new_state, info
