"""The defence's HMC chain as a differentiable function of its data (adaptive attacks, issue 11).

The authors' defence-aware attack detached the chain, so no gradient reached the input through
the sampler (PROTOCOL.md §10). Here the chain is the defence's own algorithm, :func:`hmc_init`
and :func:`~inference.hmc.hmc_move` (hence :func:`~inference.integrator.leapfrog`, the
Metropolis test and the kernel's step-size jitter), run on a value-and-grad that keeps its graph
(:func:`differentiable_value_and_grad`). The final state z_K is then a function of the data x
(through the potential U(z; x) of the conditioned Pyro model and its gradient) and of the start
z₀, which may itself depend on x (z₀ = loc(x) + scale(x)·ξ, Algorithm 1). Accept/reject picks a
branch with ``torch.where``: the gradient follows the chosen branch; the decision itself, a step
function of x, has no gradient.

Random numbers: all are drawn before the chain runs (:func:`draw_chain_noise`), from the
caller's generator in exactly the order :class:`~inference.kernels.BatchedHMC` draws them, so
under the same seed the forward pass equals ``sample_posterior(sampler="hmc", adapt=None)`` bit
for bit, and a transition recomputed by gradient checkpointing sees the same numbers.

Step sizes are constants (e.g. the defence's adapted per-chain step sizes,
``PosteriorSamples.step_size``): the warm-up adaptation, a function of acceptance rates, is not
differentiated through. The mass matrix is the defence's starting one: unit mass (the paper's
sampler), or with ``mass_matrix="encoder"`` the guide's variance σ²(x) at the chain's own data
(:mod:`inference.mass`: the chain runs in u = z / σ(x)), a constant as well (computed without
a graph); the defence's windowed re-estimates during warm-up are not replayed. Step sizes are in
the chain's coordinates, so with the encoder mass they are whitened step sizes, as the
defence's are.

Memory: the graph holds every transition, L double-backward model calls each, so it grows
linearly in K: one gradient on the MNIST zoo VAE (N = 10, L = 20, CPU, one thread) measured
about 38 MiB and 0.4 s per transition (K = 20: 760 MiB, 8 s). ``checkpoint=True`` runs every
transition under ``torch.utils.checkpoint`` (non-reentrant: the reentrant kind supports neither
``autograd.grad`` nor tensors captured by the potential); on that model it measured about 9×
the memory and 10× the time (K = 5: 1.8 GiB, 16 s), so it is off by default (not traced
further; the checkpointed region itself calls ``autograd.grad(create_graph=True)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint as checkpointed

from inference.hmc import HMCInfo, HMCNoise, HMCState, draw_hmc_noise, hmc_init, hmc_move
from inference.kernels import jittered_step_size, stack_infos
from inference.mass import Whitening
from inference.target import PosteriorTarget, ValueAndGrad, encoder_variance


def differentiable_value_and_grad(potential: Callable[[Tensor], Tensor]) -> ValueAndGrad:
    """U(z) and dU/dz of a per-chain potential, keeping the graph when grad mode is on.

    With grad mode on, dU/dz is computed with ``create_graph=True``, so both outputs stay
    differentiable in z and in whatever the potential depends on (the data x); with it off
    they are detached, as :meth:`PosteriorTarget.value_and_grad` returns them.

    Shape: potential z (*B, D) -> (*B); returns z -> (U (*B), grad (*B, D)).
    """

    def value_and_grad(z: Tensor) -> tuple[Tensor, Tensor]:
        keep_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            # A z without a graph (a detached start) still needs a leaf to differentiate U at.
            position = z if keep_graph and z.requires_grad else z.detach().requires_grad_(True)
            value = potential(position)
            (grad,) = torch.autograd.grad(value.sum(), position, create_graph=keep_graph)
        return (value, grad) if keep_graph else (value.detach(), grad)

    return value_and_grad


class ChainNoise(NamedTuple):
    """Every random number of K transitions: the jittered step sizes and the HMC draws.

    Shape: step_size (K, *B); momentum (K, *B, D); uniform (K, *B).
    """

    step_size: Tensor
    momentum: Tensor
    uniform: Tensor


def draw_chain_noise(step_size: Tensor, latent_dim: int, num_transitions: int, *, jitter: float,
                     generator: torch.Generator | None) -> ChainNoise:
    """Draw K transitions' random numbers in the kernel's order: per transition, the step-size
    jitter u (only when ``jitter`` > 0), then the momentum and the Metropolis uniform.

    Shape: step_size (*B), the un-jittered per-chain step sizes -> :class:`ChainNoise`.
    """
    if num_transitions < 1:
        raise ValueError(f"num_transitions must be >= 1, got {num_transitions}")
    shape = (*step_size.shape, latent_dim)
    steps, momenta, uniforms = [], [], []
    for _ in range(num_transitions):
        steps.append(jittered_step_size(step_size, jitter, generator))
        momentum, uniform = draw_hmc_noise(step_size.new_empty(shape), generator)
        momenta.append(momentum)
        uniforms.append(uniform)
    return ChainNoise(torch.stack(steps), torch.stack(momenta), torch.stack(uniforms))


def unrolled_hmc(value_and_grad: ValueAndGrad, z0: Tensor, noise: ChainNoise, num_leapfrog_steps: int,
                 *, checkpoint: bool = False) -> tuple[HMCState, HMCInfo]:
    """K HMC transitions from z₀ with the given random numbers, differentiable when
    ``value_and_grad`` keeps its graph (:func:`differentiable_value_and_grad`).

    ``checkpoint``: recompute each transition in the backward pass instead of storing its graph
    (only when grad mode is on; the noise is pre-drawn, so no RNG state needs restoring); see
    the module docstring for what it measured.

    Shape: z0 (*B, D); noise as :class:`ChainNoise` with K transitions; returns the final state
    and the per-transition records stacked to (K, *B).
    """
    state = hmc_init(z0, value_and_grad)

    def transition(z, potential, grad, step_size, momentum, uniform):
        new_state, info = hmc_move(HMCState(z, potential, grad), value_and_grad, step_size,
                                   num_leapfrog_steps, HMCNoise(momentum, uniform))
        return (*new_state, *info)

    infos = []
    for step_size, momentum, uniform in zip(*noise):
        arguments = (*state, step_size, momentum, uniform)
        if checkpoint and torch.is_grad_enabled():
            outputs = checkpointed(transition, *arguments, use_reentrant=False, preserve_rng_state=False)
        else:
            outputs = transition(*arguments)
        state, info = HMCState(*outputs[:3]), HMCInfo(*outputs[3:])
        infos.append(info)
    return state, stack_infos(infos)


@dataclass(frozen=True, eq=False)
class UnrolledHMC:
    """The defence's HMC (Algorithm 1, fixed step sizes) on a Pyro model's posterior, as a
    differentiable function of the model's data.

    The potential is :class:`~inference.target.PosteriorTarget`'s (built with ``compile=False``
    so that it is differentiable in tensor model args that require grad), rebuilt for every call
    since the data change between calls. ``step_size``: constants broadcastable to (C, N), e.g.
    ``PosteriorSamples.step_size`` of a defence run; the defence's adaptation is not replayed.

    ``mass_matrix``: ``"identity"`` (unit mass) or ``"encoder"`` (σ²(x) of ``guide``, see the
    module docstring), the starting mass matrix of the defence's ``mass_matrix`` kinds.

    Usage: ``z_K = UnrolledHMC(vae.model, step_size=0.1, num_transitions=10)(x, z0, generator)``.

    Shape: x (N, ...) the model's one positional argument; z0 (C, N, D) -> z_K (C, N, D).
    """

    model: Callable
    step_size: float | Tensor
    num_transitions: int
    num_leapfrog_steps: int = 20
    jitter: float = 0.0
    latent_site: str = "z"
    checkpoint: bool = False
    mass_matrix: str = "identity"
    guide: Callable | None = None

    def __post_init__(self):
        if self.num_transitions < 1:
            raise ValueError(f"num_transitions must be >= 1, got {self.num_transitions}")
        if self.num_leapfrog_steps < 1:
            raise ValueError(f"num_leapfrog_steps must be >= 1, got {self.num_leapfrog_steps}")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")
        if not bool(torch.all(torch.as_tensor(self.step_size) > 0)):
            raise ValueError(f"step_size must be > 0, got {self.step_size}")
        if self.mass_matrix not in ("identity", "encoder"):
            raise ValueError(f"mass_matrix must be 'identity' or 'encoder', got {self.mass_matrix!r}")
        if self.mass_matrix == "encoder" and self.guide is None:
            raise ValueError("mass_matrix='encoder' needs the guide whose variance it uses")

    def run(self, model_args: tuple, z0: Tensor, generator: torch.Generator | None,
            model_kwargs: dict | None = None) -> tuple[HMCState, HMCInfo]:
        """The final state with its records (see :func:`unrolled_hmc`); random numbers are drawn
        from ``generator`` first, in the defence's order (after the start's, which the caller
        drew: :func:`~inference.target.initial_latents` draws it as the defence does).

        Shape: z0 (C, N, D); returns HMCState of (C, N, D) and HMCInfo of (K, C, N).
        """
        if z0.dim() != 3:
            raise ValueError(f"z0 must have shape (C, N, D), got {tuple(z0.shape)}")
        target = PosteriorTarget(self.model, model_args, latent_site=self.latent_site,
                                 num_chains=z0.shape[0], model_kwargs=model_kwargs, compile=False)
        step_size = torch.as_tensor(self.step_size, dtype=z0.dtype, device=z0.device)
        step_size = step_size.expand(z0.shape[:-1]).clone()
        noise = draw_chain_noise(step_size, z0.shape[-1], self.num_transitions, jitter=self.jitter,
                                 generator=generator)
        value_and_grad = differentiable_value_and_grad(target.potential)
        if self.mass_matrix == "identity":
            return unrolled_hmc(value_and_grad, z0, noise, self.num_leapfrog_steps,
                                checkpoint=self.checkpoint)
        whitening = Whitening(encoder_variance(self.guide, model_args, latent_site=self.latent_site,
                                               model_kwargs=model_kwargs).to(z0).sqrt(), z0.shape[0])
        state, info = unrolled_hmc(whitening.value_and_grad(value_and_grad),
                                   whitening.to_whitened(z0), noise, self.num_leapfrog_steps,
                                   checkpoint=self.checkpoint)
        # back to the model's coordinates: z = σ·u, dU/dz = (dU/du) / σ
        return state._replace(z=whitening.to_model(state.z), grad=state.grad / whitening.scale), info

    def __call__(self, x: Tensor, z0: Tensor, generator: torch.Generator | None) -> Tensor:
        """The final latents z_K of the chains started at z0 on data x. Shape: (C, N, D)."""
        return self.run((x,), z0, generator)[0].z

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x, z) of the same model, differentiable in x (what a score-function or
        likelihood-ratio attack differentiates). Shape: x (N, ...), z (C, N, D) -> (C, N)."""
        if z.dim() != 3:
            raise ValueError(f"z must have shape (C, N, D), got {tuple(z.shape)}")
        target = PosteriorTarget(self.model, (x,), latent_site=self.latent_site, num_chains=z.shape[0],
                                 compile=False)
        return target.log_joint(z)
