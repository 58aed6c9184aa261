"""A diagonal mass matrix per point: where it comes from and how the kernels use it.

HMC with a diagonal mass matrix M = diag(1/s²) is plain unit-mass HMC in the whitened
coordinates u = z / s (Neal 2011, "MCMC using Hamiltonian dynamics", Section 4.1): the same
leapfrog, Metropolis test and U-turn criterion, on U(s·u) with gradient s·∇U(s·u). So the
kernels never see a mass matrix; :class:`Whitening` wraps their potential and maps states
between the two coordinates. s² is the inverse mass matrix, an estimate of each coordinate's
posterior variance, and one s per point is shared by that point's chains.

A VAE's posterior scales span orders of magnitude: active coordinates have a posterior sd near
0.05 while coordinates the decoder ignores sit at the prior's 1. With unit mass one step size
has to fit both, so the broad coordinates random-walk. The sources of s² (``MASS_KINDS``):

- ``"identity"``: s = 1, the paper's sampler.
- ``"encoder"``: s²(x) = the guide's own variance at the input, free and per point, fixed
  for the whole run (wrong where the encoder is fooled, i.e. on attacked inputs).
- ``"windowed"``: Stan's windowed warm-up (Stan Reference Manual, "HMC algorithm parameters"):
  a fast interval, slow windows that double in length, a final fast interval; at the end of each
  slow window s² becomes the variance of that window's draws, pooled over the point's chains and
  regularised, and the step-size adaptation restarts. Starts from s = 1. Needs a warm-up of at
  least 150 transitions; a shorter one keeps the starting mass matrix.
- ``"encoder_windowed"``: the same windows, starting from the encoder's s², and regularised
  towards it instead of towards Stan's 1e-3.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor

from inference.target import RowsValueAndGrad, ValueAndGrad

MASS_KINDS = ("identity", "encoder", "windowed", "encoder_windowed")

# Stan's default buffers: a fast interval, slow windows doubling from 25, a final fast interval.
INIT_BUFFER, TERM_BUFFER, BASE_WINDOW = 75, 50, 25
# Below this warm-up no window is run and the starting mass matrix is kept. Stan would split a
# shorter warm-up 15 % / 75 % / 10 %; measured here (per-chain dual averaging, 50 and 100
# warm-up transitions on the linear-Gaussian test posteriors), its 5-10 final transitions are
# too few for the step size to settle after the mass matrix changes, and 1-20 % of the kept
# transitions diverged, against none with the starting mass kept.
MIN_WARMUP_FOR_MASS = INIT_BUFFER + BASE_WINDOW + TERM_BUFFER
# Regularisation of a window's variance: (n / (n + 5))·var + (5 / (n + 5))·prior, n = draws.
SHRINKAGE_DRAWS = 5.0
STAN_PRIOR_VARIANCE = 1e-3


def uses_encoder(kind: str) -> bool:
    """Whether the mass-matrix kind starts from the guide's variance."""
    return kind in ("encoder", "encoder_windowed")


def is_windowed(kind: str) -> bool:
    """Whether the mass-matrix kind re-estimates the variance during warm-up."""
    return kind in ("windowed", "encoder_windowed")


def slow_windows(num_warmup: int) -> list[tuple[int, int]]:
    """Stan's slow adaptation windows as half-open transition ranges [start, end) of the warm-up.

    Buffers 75 / 25 (doubling) / 50; a warm-up shorter than their 150 transitions runs no window
    (see :data:`MIN_WARMUP_FOR_MASS`). A window whose doubled successor would not end before the
    final fast interval is stretched to it.
    E.g. 1000 → [75, 100), [100, 150), [150, 250), [250, 450), [450, 950); 150 → [75, 100).
    """
    if num_warmup < MIN_WARMUP_FOR_MASS:
        return []
    init, term, size = INIT_BUFFER, TERM_BUFFER, BASE_WINDOW
    last = num_warmup - term
    windows, start = [], init
    while start < last:
        end = start + size
        if end + 2 * size > last:
            end = last
        windows.append((start, end))
        start, size = end, 2 * size
    return windows


class PooledVariance:
    """Running per-point variance of draws pooled over chains (Chan et al.'s parallel update of
    Welford's algorithm, so no draw is stored).

    Shape: each update z (C, N, D) adds C draws per point; :meth:`variance` is (N, D).
    """

    def __init__(self):
        self.count = 0
        self.mean: Tensor | None = None
        self.sum_squares: Tensor | None = None

    def update(self, z: Tensor) -> None:
        batch_mean = z.mean(0)
        batch_squares = (z - batch_mean).square().sum(0)
        batch_count = z.shape[0]
        if self.mean is None:
            self.count, self.mean, self.sum_squares = batch_count, batch_mean, batch_squares
            return
        total = self.count + batch_count
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (batch_count / total)
        self.sum_squares = self.sum_squares + batch_squares + delta.square() * (self.count * batch_count / total)
        self.count = total

    def variance(self, prior: Tensor | float) -> Tensor:
        """The regularised variance (n/(n+5))·var + (5/(n+5))·prior, n = pooled draws."""
        n = self.count
        sample = self.sum_squares / max(n - 1, 1)
        return (n / (n + SHRINKAGE_DRAWS)) * sample + (SHRINKAGE_DRAWS / (n + SHRINKAGE_DRAWS)) * prior


class Whitening:
    """Per-point coordinate scales s (the square root of the inverse mass matrix) and the
    whitened potential u ↦ (U(s·u), s·∇U(s·u)) the kernels integrate.

    Shape: scale (N, D) (one per point, shared by its chains), broadcast against (C, N, D).
    """

    def __init__(self, scale: Tensor, num_chains: int):
        self.scale = scale
        self.num_chains = num_chains

    def to_model(self, u: Tensor) -> Tensor:
        return u * self.scale

    def to_whitened(self, z: Tensor) -> Tensor:
        return z / self.scale

    def value_and_grad(self, value_and_grad: ValueAndGrad) -> ValueAndGrad:
        def whitened(u: Tensor) -> tuple[Tensor, Tensor]:
            potential, grad = value_and_grad(u * self.scale)
            return potential, grad * self.scale
        return whitened

    def value_and_grad_rows(self, rows_value_and_grad: RowsValueAndGrad | None) -> RowsValueAndGrad | None:
        if rows_value_and_grad is None:
            return None

        def whitened(u_rows: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
            # rows are flat chain-major indices c·N + n: the point is rows mod N
            scale = self.scale.index_select(0, rows % self.scale.shape[0])
            potential, grad = rows_value_and_grad(u_rows * scale, rows)
            return potential, grad * scale
        return whitened

    def rescale(self, state: NamedTuple, new_scale: Tensor) -> NamedTuple:
        """``state`` (a record with whitened ``z`` and ``grad`` fields, e.g.
        :class:`~inference.hmc.HMCState`) expressed in the coordinates of ``new_scale``; the
        potential does not change, so nothing is evaluated. Updates the scale in place."""
        ratio = new_scale / self.scale
        self.scale = new_scale
        return state._replace(z=state.z / ratio, grad=state.grad * ratio)


class MassAdaptation:
    """Windowed estimation of each point's inverse mass matrix during warm-up.

    ``prior`` is what a window's variance is shrunk towards (Stan's 1e-3, or the encoder's
    variance). :meth:`observe` takes the draws after warm-up transition t and returns the new
    inverse mass (N, D) when t closes a slow window, else None.
    """

    def __init__(self, num_warmup: int, prior: Tensor | float):
        self.windows = slow_windows(num_warmup)
        self.prior = prior
        self._window = PooledVariance()

    def observe(self, t: int, z: Tensor) -> Tensor | None:
        window = next(((start, end) for start, end in self.windows if start <= t < end), None)
        if window is None:
            return None
        self._window.update(z)
        if t + 1 < window[1]:
            return None
        inverse_mass = self._window.variance(self.prior)
        self._window = PooledVariance()
        return inverse_mass


def initial_inverse_mass(kind: str, encoder_variance: Callable[[], Tensor], shape: tuple[int, int],
                         like: Tensor) -> Tensor | None:
    """The inverse mass matrix (N, D) a run starts with: None for ``"identity"`` (no whitening
    at all: the paper's sampler, bit for bit), ones for ``"windowed"``, the guide's variance
    (computed only then, by ``encoder_variance()``) for the encoder kinds."""
    if kind not in MASS_KINDS:
        raise ValueError(f"mass_matrix must be one of {MASS_KINDS}, got {kind!r}")
    if kind == "identity":
        return None
    if uses_encoder(kind):
        variance = encoder_variance()
        if tuple(variance.shape) != tuple(shape):
            raise ValueError(f"encoder variance has shape {tuple(variance.shape)}, expected {tuple(shape)}")
        return variance.to(like)
    return torch.ones(shape, dtype=like.dtype, device=like.device)
