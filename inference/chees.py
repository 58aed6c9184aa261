"""ChEES-HMC: jittered HMC whose trajectory length is adapted per point across its chains.

Hoffman, Radul & Sountsov 2021, "An Adaptive MCMC Scheme for Setting Trajectory Lengths in
Hamiltonian Monte Carlo" (AISTATS). During warm-up every point n learns one trajectory length
T_n by stochastic gradient ascent on the ChEES criterion (Change in the Estimator of the
Expected Square) estimated across that point's C chains, and one step size η_n by dual
averaging; both are frozen after warm-up. Every transition integrates a jittered length.

Criterion. With θ a chain's state before the transition and θ' its proposal (the end of the
trajectory, before the Metropolis test),

    ChEES = ¼ E[(‖θ' − E θ‖² − ‖θ − E θ‖²)²],

the expectations replaced by means over the point's chains (the proposals' mean weighted by
the acceptance probabilities α_c; the centres are constants, not differentiated). For chain c
whose trajectory of length h·T ends at θ'_c with momentum p'_c (unit mass: dθ'/dt = p'),

    ∂ChEES_c/∂log T = h·T · (‖θ'_c − m'‖² − ‖θ_c − m‖²) · (θ'_c − m')ᵀ p'_c,

and the point's gradient is the α-weighted mean over its chains, Σ α_c g_c / Σ α_c (the
paper's acceptance weighting: a rejected proposal says little about the dynamics). Chains whose
proposal is not finite or diverged, or with α < 1e-4, contribute nothing.

Two departures from the references, both for few chains per point and far starts (the
defence's setting), neither changes the sign of a usable gradient:
(1) a chain whose final kinetic energy ½‖p'‖² exceeds D/2 + 8√(D/2) + 8 is left out
(:func:`stationary_momentum`): at stationarity ½‖p'‖² ~ Gamma(D/2), so such a chain is still
falling into the typical set, its momentum up to 10⁴–10⁵ times the stationary size (measured:
a linear-Gaussian posterior of sds 0.02–0.95 started from the guide). Its g_c is that much
larger, and one such value in Adam's second moment stalled the adaptation of T for ~100
transitions;
(2) the point's gradient is divided by s², s the mean squared deviation of its chains from
their centre, i.e. the gradient of the scale-free ChEES/s² (s held fixed), so that its size does
not track the chains' spread as they contract during warm-up.

Adam (β₁ = 0, β₂ = 0.95, as in TFP's implementation) ascends log T_n at rate 0.05 (TFP's
default is 0.025; the defence's warm-ups are short, ~100 transitions); each update is clipped
to ±0.35 (≈ log 2 / 2) and T_n to at most max_leapfrog_steps·η_n. The kept draws use the
iterate average of log T_n with weights t^(−1/2).

Coordinates. Everything here works on the kernel's state and ``_value_and_grad`` only, so where
the kernel integrates in whitened coordinates (a diagonal mass matrix) positions, momenta and
T are those coordinates' (unit mass there: the velocity is still p).

Start and landscape. T_n starts at one step, T₀ = η₀ (as BlackJAX), and climbs. The
jitter-averaged criterion of a Gaussian (below) is flat and wavy beyond its first maximum, with
further local maxima at ≈ 5.4σ, 8.6σ, …, so an ascent started above the first maximum can settle
on a needlessly long trajectory; started below, it climbs to the first. For the same reason T_n
is not floored at η_n (BlackJAX floors it there): dual averaging overshoots η early in warm-up
(its first iterates are near 10·η₀), and a floor at η would lift T_n into that flat region.
T_n < η_n simply means one leapfrog step.

On N(0, σ² I_D) the exact dynamics give ChEES(t) = D σ⁴ sin²(t/σ), maximal at t = (π/2)σ, a
quarter period. The jitter below draws t = h·T with h uniform-like on (0, 1), and the gradient
above is that of the jitter-averaged criterion, ∝ ½ − sin(2T/σ)/(4T/σ), maximal at
T ≈ 2.247σ (2T/σ = 4.493, the first minimum of sin(u)/u): the mean jittered length is then
≈ 1.12σ, near the quarter period.

Jitter. Transition k (k = 1, 2, … since setup) integrates h_k·T_n with h_k ∈ (0, 1) the k-th
van der Corput number in base 2 (the one-dimensional Halton sequence: 1/2, 1/4, 3/4, 1/8, …):
the lengths fill (0, T) evenly instead of at random, which breaks the resonance of a fixed
length with less noise in the adaptation than uniform draws. h_k is shared by every chain of
every point (it is deterministic, so sharing it couples nothing); the step size is not
jittered (the sampler refuses ``jitter`` > 0).

Step counts. Chain c of point n integrates L = clamp(⌈h_k·T_n / η_n⌉, 1, max_leapfrog_steps)
leapfrog steps (all chains of a point the same L; a chain whose current state is not finite,
which can never accept, integrates 1). The batch integrates max L steps in lockstep with one
batched potential call per step, and each chain's position, momentum, potential and gradient
are frozen by ``torch.where`` masks once its own L steps are done (the last step's closing
half-step of momentum is taken at the chain's own last step).

Step size. One η_n per point, shared by its chains (the criterion and the step count are per
point), adapted by :func:`inference.adaptation.adapt_update` (dual averaging, target 0.651,
the optimal HMC acceptance of Beskos et al. 2013) from the HARMONIC mean of the point's
chains' acceptance probabilities, divergent chains left out (1/mean(1/α); 0 when every chain
diverged). The harmonic mean is dominated by the worst chains, so η_n must suit every chain of
the point, including one still in a high-curvature region during warm-up; the arithmetic mean
would let a few stalled chains (α ≈ 0) hide behind many accepting ones, and a stalled chain
also drops out of the α-weighted ChEES gradient, so nothing else would pull η_n down for it.
(This is the paper's and BlackJAX's choice.) The same statistic is fed to every chain of the
point, so their (C, N) step sizes stay equal. Note that ``diagnostics()["acceptance rate"]``
and the progress bar therefore report the mean of these per-point harmonic means, the quantity
the adaptation drives to 0.651; the per-chain α is in the Info records.

Cost. ``num_grad_evals`` of a chain is the number of leapfrog steps that chain needed (its
``num_steps``), the count a per-row evaluation would achieve. The lockstep integration
actually evaluates every chain max L times per transition (the batch's longest trajectory);
the excess, max over the batch of ``num_steps`` minus the chain's own, can be read off the
records. The potential is called through the kernel's ``_value_and_grad`` only.

Host synchronisation: one per transition, reading max L (the loop's length). The Halton
number and the adaptation counters are Python values; nothing else reads the device.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from inference.hmc import (MAX_DELTA_ENERGY, HMCNoise, HMCState, draw_hmc_noise, hmc_init, kinetic_energy,
                           select_chains)
from inference.kernels import BatchedKernel
from inference.target import ValueAndGrad

CHEES_TARGET_ACCEPT = 0.651  # optimal HMC acceptance (Beskos et al. 2013), the paper's target
CHEES_LOG_UPDATE_CLIP = 0.35  # largest change of log T in one adaptation step (≈ log 2 / 2)
_MIN_WEIGHT = 1e-4  # chains accepting less than this do not enter the ChEES gradient


class ChEESInfo(NamedTuple):
    """What one ChEES-HMC transition did, per chain. Every field has shape (*B) = (C, N).

    The fields of :class:`~inference.hmc.HMCInfo` (accept_prob, accepted, diverging, energy,
    potential, step_size, num_steps = this chain's leapfrog steps, num_grad_evals = num_steps)
    plus ``trajectory_length``: the point's un-jittered T the transition was drawn from (the
    integrated length is num_steps·step_size ≈ h_k·T).
    """

    accept_prob: Tensor
    accepted: Tensor
    diverging: Tensor
    energy: Tensor
    potential: Tensor
    step_size: Tensor
    num_steps: Tensor
    num_grad_evals: Tensor
    trajectory_length: Tensor


class ChEESMove(NamedTuple):
    """What the trajectory-length adaptation needs from one transition. Shape: proposal and
    momentum (C, N, D), the end of every chain's trajectory; valid (C, N), the proposal was
    finite and did not diverge."""

    proposal: Tensor
    momentum: Tensor
    valid: Tensor


class TrajectoryAdaptState(NamedTuple):
    """Per-point trajectory-length adaptation, every field of shape (N,).

    log_length: log T, the Adam iterate the next transition uses. log_length_avg: its iterate
    average (weights t^(−1/2)), used after warm-up. grad_avg, sq_grad_avg: Adam's first and
    second moments.
    """

    log_length: Tensor
    log_length_avg: Tensor
    grad_avg: Tensor
    sq_grad_avg: Tensor


def van_der_corput(k: int) -> float:
    """The k-th (k ≥ 1) number of the base-2 van der Corput sequence, in (0, 1): the bits of k
    mirrored about the binary point (1 → 1/2, 2 → 1/4, 3 → 3/4, 4 → 1/8, …)."""
    if k < 1:
        raise ValueError(f"the van der Corput index starts at 1, got {k}")
    value, scale = 0.0, 0.5
    while k:
        value += scale * (k & 1)
        k >>= 1
        scale *= 0.5
    return value


def chees_num_steps(trajectory_length: Tensor, jitter: float, step_size: Tensor, max_steps: int) -> Tensor:
    """Leapfrog steps of a jittered trajectory, clamp(⌈h·T/η⌉, 1, max_steps).

    Shape: trajectory_length and step_size broadcastable to (*B) -> int64 (*B).
    """
    steps = torch.ceil(jitter * trajectory_length / step_size)
    steps = torch.nan_to_num(steps, nan=1.0, posinf=float(max_steps))
    return steps.clamp(1, max_steps).to(torch.int64)


def chees_move(
    state: HMCState,
    value_and_grad: ValueAndGrad,
    step_size: Tensor,
    num_steps: Tensor,
    max_steps: int,
    noise: HMCNoise,
) -> tuple[HMCState, tuple[Tensor, ...], ChEESMove]:
    """One HMC transition per chain with a per-chain number of leapfrog steps.

    The batch runs ``max_steps`` (≥ every entry of ``num_steps``) leapfrog steps in lockstep;
    chain c takes part in its first ``num_steps[c]`` only and is frozen afterwards (its row is
    still evaluated, at its frozen position, by the batched potential). Then the Metropolis
    test of :func:`inference.hmc.hmc_move`: a non-finite proposal is rejected and flagged
    divergent, as is ΔH > 1000.

    Returns the new state, the per-chain fields of :class:`ChEESInfo` but the trajectory
    length (a tuple in that order), and the :class:`ChEESMove` for the adaptation.

    Shape: state fields (C, N[, D]); step_size (C, N); num_steps (C, N) int64.
    """
    z0, potential0, grad0 = state
    momentum0, uniform = noise
    eps = step_size.unsqueeze(-1)
    half_eps = 0.5 * eps
    last_step = (num_steps - 1).unsqueeze(-1)
    z, potential, grad = z0, potential0, grad0
    momentum = momentum0 - half_eps * grad0
    for step in range(max_steps):
        moving = (num_steps > step).unsqueeze(-1)
        z_next = torch.where(moving, torch.addcmul(z, eps, momentum), z)
        potential_next, grad_next = value_and_grad(z_next)
        # full kick inside the trajectory, the closing half-kick at the chain's own last step
        kick = torch.where(last_step > step, eps, half_eps)
        momentum_next = momentum - kick * grad_next
        z = z_next
        potential = torch.where(moving.squeeze(-1), potential_next, potential)
        grad = torch.where(moving, grad_next, grad)
        momentum = torch.where(moving, momentum_next, momentum)

    energy0 = potential0 + kinetic_energy(momentum0)
    energy_new = potential + kinetic_energy(momentum)
    delta = energy_new - energy0
    finite = torch.isfinite(delta) & torch.isfinite(grad).all(-1) & torch.isfinite(z).all(-1)
    delta = torch.where(finite, delta, torch.full_like(delta, float("inf")))
    accept_prob = torch.exp(torch.clamp(-delta, max=0.0))
    accepted = finite & (uniform < accept_prob)
    diverging = delta > MAX_DELTA_ENERGY

    new_state = select_chains(accepted, HMCState(z, potential, grad), state)
    fields = (
        accept_prob,
        accepted,
        diverging,
        torch.where(accepted, energy_new, energy0),
        new_state.potential,
        step_size,
        num_steps,
        num_steps.clone(),
    )
    return new_state, fields, ChEESMove(z, momentum, finite & ~diverging)


def harmonic_mean_accept(accept_prob: Tensor, diverging: Tensor) -> Tensor:
    """Per point, the harmonic mean of its chains' acceptance probabilities over the chains
    that did not diverge, 1/mean(1/α) (0 when any such α is 0 or every chain diverged).

    Shape: (..., C, N) -> (..., N); NaN α counts as 0.
    """
    alpha = torch.nan_to_num(accept_prob, nan=0.0).clamp(0.0, 1.0)
    keep = ~diverging
    inverse = torch.where(keep, 1.0 / alpha, torch.zeros_like(alpha)).sum(-2)
    count = keep.sum(-2)
    mean = torch.where(count > 0, count / inverse, torch.zeros_like(inverse))
    return torch.nan_to_num(mean, nan=0.0)


def stationary_momentum(momentum: Tensor) -> Tensor:
    """Whether a trajectory's final momentum p' could come from a stationary chain: ½‖p'‖² at
    most D/2 + 8·√(D/2) + 8. At stationarity p' ~ N(0, I) (the dynamics preserve the joint
    law), so ½‖p'‖² ~ Gamma(D/2, 1), which exceeds that bound with probability below 1e-7.
    Shape: (*B, D) -> (*B)."""
    half_dim = 0.5 * momentum.shape[-1]
    return 0.5 * momentum.square().sum(-1) <= half_dim + 8.0 * math.sqrt(half_dim) + 8.0


def chees_gradient(z0: Tensor, move: ChEESMove, accept_prob: Tensor, jitter: float,
                   trajectory_length: Tensor, normalise: bool = True) -> Tensor:
    """Per point, the acceptance-weighted ChEES gradient with respect to log T (see the
    module docstring); 0 for a point none of whose chains gives a usable proposal.

    ``normalise``: divide it by s², s the point's mean squared deviation from the chains'
    centre (the mean of the start's and the weighted proposals' values): the gradient of the
    scale-free ChEES / s² with s held fixed, same sign, but O(1) at any posterior scale and no
    longer huge while the chains are still far apart early in warm-up (see the module docstring).

    Shape: z0 (C, N, D), the positions the transition started from; move fields (C, N[, D]);
    accept_prob (C, N); trajectory_length (N,) -> (N,).
    """
    valid = move.valid
    alpha = torch.nan_to_num(accept_prob, nan=0.0).clamp(0.0, 1.0)
    weight = torch.where(valid, alpha, torch.zeros_like(alpha))
    zero = torch.zeros((), dtype=z0.dtype, device=z0.device)
    rows = valid.unsqueeze(-1)
    proposal = torch.where(rows, move.proposal, zero)
    momentum = torch.where(rows, move.momentum, zero)
    total = weight.sum(0) + 1e-20
    proposal_mean = (weight.unsqueeze(-1) * proposal).sum(0) / total.unsqueeze(-1)
    centred_proposal = proposal - proposal_mean
    centred_start = z0 - z0.mean(0)
    change = centred_proposal.square().sum(-1) - centred_start.square().sum(-1)
    per_chain = jitter * trajectory_length * change * (centred_proposal * momentum).sum(-1)
    usable = valid & (alpha > _MIN_WEIGHT) & torch.isfinite(per_chain) & stationary_momentum(momentum)
    per_chain = torch.where(usable, per_chain, torch.zeros_like(per_chain))
    weight = torch.where(usable, weight, torch.zeros_like(weight))
    gradient = (weight * per_chain).sum(0) / (weight.sum(0) + 1e-20)
    if not normalise:
        return gradient
    proposal_spread = (weight * centred_proposal.square().sum(-1)).sum(0) / (weight.sum(0) + 1e-20)
    spread = 0.5 * (centred_start.square().sum(-1).mean(0) + proposal_spread)
    spread = torch.where(weight.sum(0) > 0, spread, centred_start.square().sum(-1).mean(0))
    scaled = gradient / spread.square()
    return torch.where(torch.isfinite(scaled), scaled, torch.zeros_like(scaled))


def trajectory_adapt_init(trajectory_length: Tensor) -> TrajectoryAdaptState:
    """Start from T (N,)."""
    log_length = torch.log(trajectory_length)
    zeros = torch.zeros_like(log_length)
    return TrajectoryAdaptState(log_length, log_length.clone(), zeros, zeros.clone())


def trajectory_adapt_update(state: TrajectoryAdaptState, gradient: Tensor, iteration: int, step_size: Tensor,
                            max_steps: int, *, learning_rate: float, beta1: float,
                            beta2: float) -> TrajectoryAdaptState:
    """One Adam ascent step on log T per point from its ChEES gradient (``iteration`` ≥ 1).

    The update is lr·m̂/√v̂ (no ε: Adam is then exactly invariant to the gradient's scale,
    which here goes as σ⁴; v̂ = 0, i.e. only zero gradients so far, means no move), clipped to
    ±0.35; T is kept at most max_steps·η (no floor, see the module docstring).

    Shape: gradient, step_size (N,).
    """
    gradient = torch.nan_to_num(gradient, nan=0.0, posinf=0.0, neginf=0.0)
    grad_avg = beta1 * state.grad_avg + (1.0 - beta1) * gradient
    sq_grad_avg = beta2 * state.sq_grad_avg + (1.0 - beta2) * gradient.square()
    first = grad_avg / (1.0 - beta1**iteration)
    second = sq_grad_avg / (1.0 - beta2**iteration)
    positive = second > 0
    update = torch.where(positive, first / torch.where(positive, second, torch.ones_like(second)).sqrt(),
                         torch.zeros_like(second))
    update = (learning_rate * update).clamp(-CHEES_LOG_UPDATE_CLIP, CHEES_LOG_UPDATE_CLIP)
    log_step = torch.log(step_size)
    log_length = torch.minimum(state.log_length + update, log_step + math.log(max_steps))
    log_length = torch.where(torch.isfinite(log_length), log_length, state.log_length)
    weight = iteration ** -0.5
    log_length_avg = (1.0 - weight) * state.log_length_avg + weight * log_length
    return TrajectoryAdaptState(log_length, log_length_avg, grad_avg, sq_grad_avg)


class BatchedChEES(BatchedKernel):
    """ChEES-HMC for every chain of every point (see the module docstring).

    ``num_leapfrog_steps`` sets the initial trajectory length T₀ = step_size·num_leapfrog_steps
    of every point: default 1, also from a ``sample_posterior`` config (its L is HMC's and is not
    taken): start below the criterion's first maximum, see the module docstring.
    ``max_leapfrog_steps`` caps the steps of one transition (from a ``sample_posterior`` config:
    2^max_tree_depth − 1, the most NUTS could integrate).
    ``learning_rate``, ``beta1``, ``beta2``: Adam on log T. The trajectory length adapts during
    warm-up (also with ``adaptation=None``, which fixes the step size only) and, like the step
    size, after it only when ``adaptation.continue_after_warmup``; otherwise it is frozen at the
    iterate average when warm-up ends.

    Needs C ≥ 2 chains per point (the criterion is estimated across them); C = 1 is refused
    before any potential is built or evaluated.

    Shape: initial latents (C, N, D); :attr:`trajectory_length` (N,); step sizes (C, N), equal
    across the chains of a point.
    """

    def __init__(self, model=None, potential_fn=None, *, num_leapfrog_steps: int = 1,
                 max_leapfrog_steps: int = 1023, learning_rate: float = 0.05, beta1: float = 0.0,
                 beta2: float = 0.95, **kwargs):
        if num_leapfrog_steps < 1:
            raise ValueError(f"num_leapfrog_steps must be >= 1, got {num_leapfrog_steps}")
        if max_leapfrog_steps < 1:
            raise ValueError(f"max_leapfrog_steps must be >= 1, got {max_leapfrog_steps}")
        if kwargs.get("jitter", 0.0) != 0.0:
            raise ValueError("ChEES jitters the trajectory length itself and has no step-size jitter; "
                             "pass jitter=0")
        if not (learning_rate > 0 and 0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError(f"need learning_rate > 0 and beta1, beta2 in [0, 1), got "
                             f"{learning_rate}, {beta1}, {beta2}")
        self.num_leapfrog_steps = num_leapfrog_steps
        self.max_leapfrog_steps = max_leapfrog_steps
        self.learning_rate = learning_rate
        self.beta1 = beta1
        self.beta2 = beta2
        self._trajectory: TrajectoryAdaptState | None = None
        self._trajectory_updates = 0
        super().__init__(model, potential_fn, **kwargs)

    @staticmethod
    def _check_num_chains(num_chains: int):
        if num_chains < 2:
            raise ValueError(f"ChEES needs at least 2 chains per point (its trajectory-length criterion is "
                             f"estimated across a point's chains), got num_chains={num_chains}")

    @classmethod
    def from_config(cls, model, config, **options) -> "BatchedChEES":
        cls._check_num_chains(config.num_chains)  # before the potential is built or evaluated
        return super().from_config(model, config, **options)

    @classmethod
    def _config_options(cls, config) -> dict:
        return {"max_leapfrog_steps": 2**config.max_tree_depth - 1}

    @property
    def trajectory_length(self) -> Tensor:
        """The un-jittered trajectory length T of every point the next transition draws from,
        shape (N,)."""
        return self._trajectory.log_length.exp()

    def setup(self, warmup_steps: int, *model_args, **model_kwargs):
        z0 = (self._initial_params or {}).get(self.latent_site)
        if z0 is not None and z0.dim() == 3:
            self._check_num_chains(z0.shape[0])
        super().setup(warmup_steps, *model_args, **model_kwargs)
        length = self._adapt.step_size.mean(0) * self.num_leapfrog_steps
        self._trajectory = trajectory_adapt_init(length)
        self._trajectory_updates = 0

    def end_warmup(self):
        super().end_warmup()
        if not self._continues_after_warmup():
            self._trajectory = self._trajectory._replace(log_length=self._trajectory.log_length_avg.clone())

    def _continues_after_warmup(self) -> bool:
        return self.adaptation is not None and self.adaptation.continue_after_warmup

    def _init_state(self, z):
        return hmc_init(z, self._value_and_grad)

    def _transition(self, state, step_size):
        # sample() advances self._t after this call: it is the index of this transition.
        jitter = van_der_corput(self._t + 1)
        length = self.trajectory_length
        num_steps = chees_num_steps(length, jitter, step_size, self.max_leapfrog_steps)
        current_finite = torch.isfinite(state.potential) & torch.isfinite(state.grad).all(-1)
        num_steps = torch.where(current_finite, num_steps, torch.ones_like(num_steps))
        max_steps = int(num_steps.max())  # the transition's one host synchronisation
        noise = draw_hmc_noise(state.z, self.generator)
        new_state, fields, move = chees_move(state, self._value_and_grad, step_size, num_steps, max_steps,
                                             noise)
        info = ChEESInfo(*fields, trajectory_length=length.expand_as(step_size))
        if self._t < self._warmup_steps or self._continues_after_warmup():
            gradient = chees_gradient(state.z, move, info.accept_prob, jitter, length)
            self._trajectory_updates += 1
            self._trajectory = trajectory_adapt_update(
                self._trajectory, gradient, self._trajectory_updates, step_size.mean(0),
                self.max_leapfrog_steps, learning_rate=self.learning_rate, beta1=self.beta1, beta2=self.beta2)
        return new_state, info

    def _adaptation_statistic(self, info) -> Tensor:
        # One step size per point: every chain of a point gets the point's harmonic mean.
        point = harmonic_mean_accept(info.accept_prob, info.diverging)
        return point.unsqueeze(-2).expand_as(info.accept_prob)
