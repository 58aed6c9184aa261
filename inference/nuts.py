"""Batched No-U-Turn Sampler, built iteratively with per-chain masks.

Variant: multinomial NUTS (Betancourt 2017, "A Conceptual Introduction to HMC", App. A) with
the generalised U-turn criterion on momentum sums. The trajectory doubles up to
``max_tree_depth`` times in a random direction; a new subtree of 2^d leaves is integrated leaf
by leaf, its proposal chosen by progressive *uniform* multinomial sampling among its leaves,
then merged into the tree by progressive *biased* sampling. A subtree that diverges or makes
a U-turn inside itself is discarded and ends the trajectory (Stan's rule).

Batching: all chains build the subtree of the same depth in step; the leaf index within a
subtree is a Python integer shared by every chain, so the U-turn checks of every balanced
sub-subtree ending at a leaf use Python-indexed checkpoints (no gathers). Chains that have
stopped are frozen by masks. The potential, the only expensive part, is evaluated for the
chains still extending their trees only: their rows are gathered, integrated and scattered
back (``value_and_grad_rows``), so the cost of a transition follows the leapfrog steps each
chain actually uses rather than C·N times the deepest tree. Without a rows function (a bare
``value_and_grad`` of the whole batch) every chain is evaluated at every leaf, as in lockstep.

Host synchronisations: one per leaf (which chains still build: the size of the next potential
call depends on it; a subtree ends as soon as none does), one per tree depth (whether any chain
still grows) and one per transition (seeding its generators, see :func:`nuts_step`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from inference.hmc import MAX_DELTA_ENERGY, HMCState, kinetic_energy, select_chains
from inference.integrator import leapfrog
from inference.target import RowsValueAndGrad, ValueAndGrad


class NUTSInfo(NamedTuple):
    """What one NUTS transition did, per chain. Every field has shape (*B).

    accept_prob: mean of min(1, exp(−ΔH)) over the new leaves (the adaptation statistic).
    diverging: a leaf had ΔH > 1000 or a non-finite energy/gradient.  energy, potential: at the
    returned state.  step_size: the η used.  num_steps: leapfrog steps integrated for this
    chain.  tree_depth: number of doublings (the last one may have been discarded).
    """

    accept_prob: Tensor
    diverging: Tensor
    energy: Tensor
    potential: Tensor
    step_size: Tensor
    num_steps: Tensor
    num_grad_evals: Tensor
    tree_depth: Tensor


class _Edge(NamedTuple):
    z: Tensor
    momentum: Tensor
    grad: Tensor


def _is_turning(momentum_left: Tensor, momentum_right: Tensor, momentum_sum: Tensor) -> Tensor:
    """Generalised U-turn criterion (unit mass): the trajectory's momentum sum no longer points
    along both end momenta. Shape: (*B, D) each -> (*B)."""
    return ((momentum_left * momentum_sum).sum(-1) <= 0) | (
        (momentum_right * momentum_sum).sum(-1) <= 0
    )


def _checkpoint_range(leaf: int) -> tuple[int, int]:
    """Checkpoint slots to test at an odd leaf index.

    The even leaf m that starts a balanced sub-subtree stores its momentum and the running
    momentum sum in slot popcount(m); the sub-subtrees ending at odd leaf n start at n with its
    k lowest bits cleared, k = 1 .. (trailing ones of n), i.e. slots popcount(n) − k.
    """
    trailing_ones = (leaf ^ (leaf + 1)).bit_length() - 1
    top = bin(leaf).count("1") - 1
    return top - trailing_ones + 1, top


def _leapfrog_leaf(
    edge: _Edge,
    signed_step: Tensor,
    building: Tensor,
    value_and_grad: ValueAndGrad,
    value_and_grad_rows: RowsValueAndGrad | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor] | None:
    """One leapfrog step from every building chain's subtree edge, None if no chain builds.

    With ``value_and_grad_rows`` only the building chains are integrated (gathered, evaluated,
    scattered back); the other rows come back as the edge with potential 0, values the caller
    masks out. Returns (z, momentum, potential, grad, evaluated) with evaluated the (*B) mask
    of chains whose potential was computed.

    Shape: edge fields (*B, D); signed_step, building (*B).
    """
    flat = building.reshape(-1)
    rows = flat.nonzero().squeeze(-1)  # host sync: the size of the potential call
    count = rows.numel()
    if count == 0:
        return None
    if value_and_grad_rows is None or count == flat.numel():
        z, momentum, potential, grad = leapfrog(edge.z, edge.momentum, edge.grad, signed_step, 1, value_and_grad)
        return z, momentum, potential, grad, torch.ones_like(building)
    dim = edge.z.shape[-1]

    def gather(x: Tensor) -> Tensor:
        return x.reshape(-1, dim).index_select(0, rows)

    def scatter(base: Tensor, values: Tensor) -> Tensor:
        return base.reshape(-1, dim).index_copy(0, rows, values).view_as(base)

    z, momentum, potential, grad = leapfrog(
        gather(edge.z), gather(edge.momentum), gather(edge.grad),
        signed_step.reshape(-1).index_select(0, rows), 1, lambda z_rows: value_and_grad_rows(z_rows, rows),
    )
    full_potential = torch.zeros_like(flat, dtype=potential.dtype).index_copy(0, rows, potential)
    return (scatter(edge.z, z), scatter(edge.momentum, momentum), full_potential.view_as(building),
            scatter(edge.grad, grad), building)


def nuts_step(
    state: HMCState,
    value_and_grad: ValueAndGrad,
    step_size: Tensor,
    generator: torch.Generator | None,
    *,
    max_tree_depth: int = 10,
    value_and_grad_rows: RowsValueAndGrad | None = None,
) -> tuple[HMCState, NUTSInfo]:
    """One multinomial NUTS transition per chain.

    ``value_and_grad_rows`` (see :data:`inference.target.RowsValueAndGrad`), when given,
    evaluates the potential of the chains still extending their trees only.

    Randomness: the momentum and a seed s are drawn from ``generator`` in fixed shapes; tree
    depth d draws its directions and multinomial uniforms from its own generator seeded s + d,
    one (*B)-shaped draw per depth / leaf. A chain therefore sees the same random numbers
    whatever the other chains do (how many leaves a subtree runs before every chain has stopped
    shifts neither the next depth's stream nor the next transition's).

    Shape: step_size (*B); returns the new state and a :class:`NUTSInfo` of shape (*B).
    """
    z0, potential0, grad0 = state
    options = dict(dtype=z0.dtype, device=z0.device)
    momentum0 = torch.randn(z0.shape, generator=generator, **options)
    seed = int(torch.randint(0, 2**62, (), generator=generator, device=z0.device))
    batch = potential0.shape

    energy0 = potential0 + kinetic_energy(momentum0)
    left = right = _Edge(z0, momentum0, grad0)
    proposal = HMCState(z0, potential0, grad0)
    proposal_momentum = momentum0
    log_weight = torch.zeros(batch, **options)  # the initial point has weight exp(0)
    momentum_sum = momentum0
    active = torch.isfinite(energy0) & torch.isfinite(grad0).all(-1)
    diverging = ~active
    tree_depth = torch.zeros(batch, dtype=torch.int64, device=z0.device)
    num_steps = torch.zeros(batch, dtype=torch.int64, device=z0.device)
    num_grad_evals = torch.zeros(batch, dtype=torch.int64, device=z0.device)
    accept_sum = torch.zeros(batch, **options)
    checkpoint_momentum: list[Tensor | None] = [None] * max(max_tree_depth, 1)
    checkpoint_sum: list[Tensor | None] = [None] * max(max_tree_depth, 1)

    for depth in range(max_tree_depth):
        depth_generator = torch.Generator(device=z0.device).manual_seed(seed + depth)
        forward = torch.rand(batch, generator=depth_generator, **options) < 0.5
        merge_uniform = torch.rand(batch, generator=depth_generator, **options)
        edge = select_chains(forward, right, left)
        signed_step = torch.where(forward, step_size, -step_size)
        tree_depth = tree_depth + active.long()

        building = active  # chains whose subtree is still valid
        sub_diverging = torch.zeros_like(active)
        sub_turning = torch.zeros_like(active)
        sub_log_weight = torch.full(batch, float("-inf"), **options)
        sub_proposal, sub_proposal_momentum = proposal, proposal_momentum
        sub_momentum_sum = torch.zeros_like(momentum0)

        for leaf in range(2**depth):
            leaf_uniform = torch.rand(batch, generator=depth_generator, **options)
            step = _leapfrog_leaf(edge, signed_step, building, value_and_grad, value_and_grad_rows)
            if step is None:  # every chain has left this subtree: the remaining leaves are void
                break
            z, momentum, potential, grad, evaluated = step
            num_grad_evals = num_grad_evals + evaluated.long()
            delta = potential + kinetic_energy(momentum) - energy0
            finite = torch.isfinite(delta) & torch.isfinite(grad).all(-1) & torch.isfinite(z).all(-1)
            delta = torch.where(finite, delta, torch.full_like(delta, float("inf")))
            num_steps = num_steps + building.long()
            accept_sum = accept_sum + torch.where(
                building, torch.exp(torch.clamp(-delta, max=0.0)), torch.zeros_like(delta)
            )
            leaf_diverging = building & (delta > MAX_DELTA_ENERGY)
            sub_diverging = sub_diverging | leaf_diverging
            ok = building & ~leaf_diverging

            # progressive uniform sampling inside the subtree: take the leaf w.p. w_leaf / W_sub
            new_sub_log_weight = torch.logaddexp(sub_log_weight, -delta)
            take = ok & (leaf_uniform < torch.exp(-delta - new_sub_log_weight))
            sub_proposal = select_chains(take, HMCState(z, potential, grad), sub_proposal)
            sub_proposal_momentum = torch.where(take.unsqueeze(-1), momentum, sub_proposal_momentum)
            sub_log_weight = torch.where(ok, new_sub_log_weight, sub_log_weight)
            sub_momentum_sum = torch.where(ok.unsqueeze(-1), sub_momentum_sum + momentum, sub_momentum_sum)
            edge = select_chains(ok, _Edge(z, momentum, grad), edge)

            if leaf % 2 == 0:
                slot = bin(leaf).count("1")
                checkpoint_momentum[slot] = momentum
                checkpoint_sum[slot] = sub_momentum_sum
            else:
                lowest, highest = _checkpoint_range(leaf)
                turning = torch.zeros_like(ok)
                for slot in range(lowest, highest + 1):
                    span_sum = sub_momentum_sum - checkpoint_sum[slot] + checkpoint_momentum[slot]
                    turning = turning | _is_turning(checkpoint_momentum[slot], momentum, span_sum)
                sub_turning = sub_turning | (ok & turning)
                ok = ok & ~turning
            building = ok

        # merge valid subtrees into the tree by biased progressive sampling
        merged = active & ~sub_diverging & ~sub_turning
        take = merged & (merge_uniform < torch.exp(sub_log_weight - log_weight))
        proposal = select_chains(take, sub_proposal, proposal)
        proposal_momentum = torch.where(take.unsqueeze(-1), sub_proposal_momentum, proposal_momentum)
        log_weight = torch.where(merged, torch.logaddexp(log_weight, sub_log_weight), log_weight)
        momentum_sum = torch.where(merged.unsqueeze(-1), momentum_sum + sub_momentum_sum, momentum_sum)
        right = select_chains(merged & forward, edge, right)
        left = select_chains(merged & ~forward, edge, left)

        diverging = diverging | sub_diverging
        active = merged & ~_is_turning(left.momentum, right.momentum, momentum_sum)
        if not bool(active.any()):
            break

    info = NUTSInfo(
        accept_prob=accept_sum / num_steps.clamp(min=1),
        diverging=diverging,
        energy=proposal.potential + kinetic_energy(proposal_momentum),
        potential=proposal.potential,
        step_size=step_size,
        num_steps=num_steps,
        num_grad_evals=num_grad_evals,
        tree_depth=tree_depth,
    )
    return proposal, info
