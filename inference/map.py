"""Mode finding (MAP) on the same potential: Adam on z, every chain and point on its own.

The cheaper alternative to MCMC discussed in the paper's Appendix B.3. Adam is elementwise, so
every point's trajectory depends on its own potential only; a step that produces a non-finite
potential or gradient is undone for that chain and flagged divergent.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from inference.hmc import hmc_init, select_chains
from inference.target import ValueAndGrad

BETA1, BETA2, ADAM_EPS = 0.9, 0.999, 1e-8


class MAPState(NamedTuple):
    """Current iterate with its potential and gradient and Adam's moments.

    Shape: z, grad, first_moment, second_moment (*B, D); potential (*B); num_updates (*B).
    """

    z: Tensor
    potential: Tensor
    grad: Tensor
    first_moment: Tensor
    second_moment: Tensor
    num_updates: Tensor


class MAPInfo(NamedTuple):
    """What one optimisation step did, per chain. Every field has shape (*B).

    accepted: the step was kept (finite potential and gradient).  diverging: it was undone.
    potential: U after the step.  step_size: Adam's learning rate.  num_grad_evals: 1, the
    potential and gradient at the new iterate.
    """

    accepted: Tensor
    diverging: Tensor
    potential: Tensor
    step_size: Tensor
    num_grad_evals: Tensor


def map_init(z: Tensor, value_and_grad: ValueAndGrad) -> MAPState:
    """Initial iterate (non-finite entries of z replaced by 0, as in :func:`hmc_init`)."""
    z, potential, grad = hmc_init(z, value_and_grad)
    zeros = torch.zeros_like(z)
    count = torch.zeros(potential.shape, dtype=z.dtype, device=z.device)
    return MAPState(z, potential, grad, zeros, zeros, count)


def map_step(state: MAPState, value_and_grad: ValueAndGrad, step_size: Tensor) -> tuple[MAPState, MAPInfo]:
    """One Adam step on U per chain, undone where the result is not finite.

    Shape: step_size (*B); returns the new state and a :class:`MAPInfo` of shape (*B).
    """
    grad = state.grad
    count = state.num_updates + 1
    first = BETA1 * state.first_moment + (1 - BETA1) * grad
    second = BETA2 * state.second_moment + (1 - BETA2) * grad * grad
    first_hat = first / (1 - BETA1 ** count).unsqueeze(-1)
    second_hat = second / (1 - BETA2 ** count).unsqueeze(-1)
    z = state.z - step_size.unsqueeze(-1) * first_hat / (second_hat.sqrt() + ADAM_EPS)
    potential, grad_new = value_and_grad(z)
    accepted = (
        torch.isfinite(potential) & torch.isfinite(grad_new).all(-1) & torch.isfinite(z).all(-1)
        & torch.isfinite(state.potential)
    )
    new_state = select_chains(accepted, MAPState(z, potential, grad_new, first, second, count), state)
    info = MAPInfo(accepted, ~accepted, new_state.potential, step_size,
                   torch.ones_like(accepted, dtype=torch.int64))
    return new_state, info
