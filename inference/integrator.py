"""Leapfrog (velocity Verlet) integration of Hamiltonian dynamics, batched over chains and points."""

from __future__ import annotations

import torch
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
    ``num_steps`` batched potential+gradient calls. Updates are out of place (``torch.addcmul``
    is the kernel of ``addcmul_``, so values are bit-identical and no slower measured at N = 50,
    L = 20 on the MNIST VAE): with a ``value_and_grad`` that keeps its graph
    (:func:`inference.unrolled.differentiable_value_and_grad`) the trajectory is then
    differentiable, since autograd forbids overwriting a position the potential saved. A
    negative step size integrates backwards in time (used by NUTS).

    Shape:
        z, momentum, grad: (*B, D); step_size: (*B); returns (z, momentum, potential (*B), grad).
    """
    eps = step_size.unsqueeze(-1)
    half_eps = 0.5 * eps
    momentum = momentum - half_eps * grad
    for step in range(num_steps):
        z = torch.addcmul(z, eps, momentum)
        potential, grad = value_and_grad(z)
        momentum = torch.addcmul(momentum, eps if step < num_steps - 1 else half_eps, grad, value=-1.0)
    return z, momentum, potential, grad
