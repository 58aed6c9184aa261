"""Leapfrog (velocity Verlet) integration of Hamiltonian dynamics, batched over chains and points."""

from __future__ import annotations

from torch import Tensor

from inference.target import ValueAndGrad


def leapfrog(
    z: Tensor,
    momentum: Tensor,
    grad: Tensor,
    step_size: Tensor,
    num_steps: int,
    value_and_grad: ValueAndGrad,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``num_steps`` leapfrog steps with unit mass, each chain with its own step size.

    The gradient at the start is passed in (it is known from the previous transition) and the
    inner half-steps of momentum are fused into full steps, so the loop costs exactly
    ``num_steps`` batched potential+gradient calls. Inputs are not modified; the loop updates
    its own two buffers in place (no per-step allocation besides the model call). A negative
    step size integrates backwards in time (used by NUTS).

    Shape:
        z, momentum, grad: (*B, D); step_size: (*B); returns (z, momentum, potential (*B), grad).
    """
    eps = step_size.unsqueeze(-1)
    half_eps = 0.5 * eps
    z = z.clone()
    momentum = momentum - half_eps * grad
    for step in range(num_steps):
        z.addcmul_(eps, momentum)
        potential, grad = value_and_grad(z)
        momentum.addcmul_(eps if step < num_steps - 1 else half_eps, grad, value=-1.0)
    return z, momentum, potential, grad
