"""The sampler registry: every name ``sample_posterior(sampler=...)`` accepts, with its defaults.

A sampler is either a batched kernel class (a :class:`~inference.kernels.BatchedKernel`
subclass, built from the run's :class:`~inference.api.SamplerConfig` by its ``from_config``
and run by ``pyro.infer.MCMC``) or a runner for samplers outside that path (the stock-Pyro
references), together with its defaults: the adaptation kinds it accepts and the one it uses by
default, its target acceptance, its step-size jitter, a fixed number of leapfrog steps.

Adding a sampler is one new file (its kernel, e.g. :mod:`inference.mala`) and one
:class:`SamplerSpec` in ``SAMPLERS`` below, or ``SAMPLERS.register(spec)`` from outside the
package; ``sample_posterior``, its argument checks and the benchmarks' ``--sampler`` choices
all read the registry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import torch
from pyro.infer import MCMC
from torch import Tensor

from inference.adaptation import ADAPT_KINDS, StepSizeAdaptation
from inference.chees import CHEES_TARGET_ACCEPT, BatchedChEES
from inference.kernels import BatchedHMC, BatchedKernel, BatchedMAP, BatchedNUTS
from inference.mala import MALA_TARGET_ACCEPT, BatchedMALA
from inference.mass import MASS_KINDS, STAN_PRIOR_VARIANCE, is_windowed, uses_encoder
from inference.reference import run_stock_pyro

# Default step-size jitter of "hmc": η·(1 ± 0.5). Chosen on the linear-Gaussian posterior of
# tests/inference/test_recovery.py, whose fixed-L runs resonate: see BatchedKernel for why
# jittering η (not L) and the tests for what it fixes.
HMC_JITTER = 0.5

# ArviZ's sample_stats names for the fields of the *Info records.
_STAT_NAMES = {"accept_prob": "acceptance_rate", "num_steps": "n_steps", "num_grad_evals": "n_grad_evals"}


class RunResult(NamedTuple):
    """What one sampler run hands back to ``sample_posterior``.

    Shape: z (C, S, N, D) kept draws; final_z (C, N, D); step_size (C, N); sample_stats /
    warmup_stats name -> (C, T, N); num_grad_evals (C, N) potential-and-gradient evaluations
    per chain and point, the initial one included (None where the sampler cannot count them);
    inverse_mass (N, D) the diagonal inverse mass matrix of the kept draws (None: unit mass).
    """

    z: Tensor
    final_z: Tensor
    step_size: Tensor
    sample_stats: dict[str, Tensor]
    warmup_stats: dict[str, Tensor]
    num_grad_evals: Tensor | None
    inverse_mass: Tensor | None = None


# (model, model_args, z0 (C, N, D), config, generator, model_kwargs, progress_bar,
#  inverse_mass (N, D) or None) -> RunResult
Runner = Callable[[Callable, tuple, Tensor, Any, torch.Generator, "dict | None", bool, "Tensor | None"],
                  RunResult]


def info_to_stats(info) -> dict[str, Tensor]:
    """Stacked Info record (fields (T, C, N)) -> ArviZ-named stats of shape (C, T, N)."""
    if info is None:
        return {}
    stats = {}
    for name, value in info._asdict().items():
        if name == "potential":
            stats["lp"] = -value.transpose(0, 1)
        else:
            stats[_STAT_NAMES.get(name, name)] = value.transpose(0, 1)
    return stats


def run_kernel(kernel_class: type[BatchedKernel], model, model_args, z0, config, generator,
               model_kwargs, progress_bar, inverse_mass=None) -> RunResult:
    """All chains of all points as one batched kernel inside ``pyro.infer.MCMC``, with the
    mass matrix of ``config.mass_matrix`` starting from ``inverse_mass`` (N, D) (None: ones)."""
    adaptation = None
    if config.adapt is not None:
        adaptation = StepSizeAdaptation(config.adapt, config.target_accept,
                                        continue_after_warmup=config.adapt_after_warmup)
    mass_options = {}
    if config.mass_matrix != "identity":
        mass_options = dict(inverse_mass=inverse_mass, adapt_mass=is_windowed(config.mass_matrix),
                            mass_prior=inverse_mass if uses_encoder(config.mass_matrix)
                            else STAN_PRIOR_VARIANCE)
    kernel = kernel_class.from_config(model, config, adaptation=adaptation, generator=generator,
                                      **mass_options)
    site = config.latent_site
    mcmc = MCMC(kernel, num_samples=config.num_samples, warmup_steps=config.num_warmup,
                initial_params={site: z0}, disable_progbar=not progress_bar, transforms={})
    mcmc.run(*model_args, **(model_kwargs or {}))
    draws = mcmc.get_samples(group_by_chain=True)[site][0]  # (S, C, N, D)
    records = kernel.diagnostics()
    return RunResult(
        z=draws.transpose(0, 1).contiguous(),
        final_z=kernel.position.clone(),
        step_size=kernel.step_size.clone(),
        sample_stats=info_to_stats(records["samples"]),
        warmup_stats=info_to_stats(records["warmup"]),
        num_grad_evals=kernel.num_grad_evals.clone(),
        inverse_mass=None if kernel.inverse_mass is None else kernel.inverse_mass.clone(),
    )


def _run_stock(model, model_args, z0, config, generator, model_kwargs, progress_bar,
               inverse_mass=None) -> RunResult:
    # Stock Pyro seeds its global RNG per chain from config.seed and has its own progress bar
    # per chain; it does not expose how many gradients its trees or step-size search used.
    z, step, sample_stats, warmup_stats = run_stock_pyro(model, model_args, z0, config, model_kwargs)
    return RunResult(z, z[:, -1].clone(), step, sample_stats, warmup_stats, None)


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler: how to run it and its defaults.

    kernel / runner: exactly one; a :class:`BatchedKernel` subclass or a :data:`Runner`.
    adapt_kinds: the step-size adaptations it accepts; default_adapt: what ``adapt="auto"``
    means (None: no adaptation). target_accept: its default target, None for the adaptation
    kind's own (0.9 for the paper's rule, 0.8 for dual averaging). jitter: its default
    step-size jitter (see :class:`~inference.kernels.BatchedKernel`); jitter_allowed: whether
    any jitter makes sense for it. mass_kinds: the mass matrices it accepts (see
    :mod:`inference.mass`); default_mass: what ``mass_matrix="auto"`` means.
    num_leapfrog_steps: a fixed L that overrides the caller's (MALA: 1), None to take the
    caller's. multi_site: whether it can sample several latent
    sites jointly (every batched kernel can: they see one flat z). mcmc: whether it draws
    from the posterior (False for mode finding, which only climbs it).
    """

    name: str
    kernel: type[BatchedKernel] | None = None
    runner: Runner | None = None
    adapt_kinds: tuple[str, ...] = ADAPT_KINDS
    default_adapt: str | None = "dual_averaging"
    target_accept: float | None = None
    jitter: float = 0.0
    jitter_allowed: bool = True
    mass_kinds: tuple[str, ...] = MASS_KINDS
    default_mass: str = "identity"
    num_leapfrog_steps: int | None = None
    multi_site: bool = True
    mcmc: bool = True

    def __post_init__(self):
        if (self.kernel is None) == (self.runner is None):
            raise ValueError(f"sampler {self.name!r}: give exactly one of `kernel` or `runner`")
        if self.default_adapt is not None and self.default_adapt not in self.adapt_kinds:
            raise ValueError(f"sampler {self.name!r}: default_adapt {self.default_adapt!r} "
                             f"is not one of its adapt_kinds {self.adapt_kinds}")
        if not 0.0 <= self.jitter < 1.0 or (self.jitter and not self.jitter_allowed):
            raise ValueError(f"sampler {self.name!r}: bad default jitter {self.jitter}")
        if self.default_mass not in self.mass_kinds:
            raise ValueError(f"sampler {self.name!r}: default_mass {self.default_mass!r} "
                             f"is not one of its mass_kinds {self.mass_kinds}")

    def run(self, model, model_args, z0, config, generator, model_kwargs=None,
            progress_bar=False, inverse_mass=None) -> RunResult:
        """Run the sampler from z0 (C, N, D) with the resolved ``config`` and the starting
        inverse mass matrix (N, D) of ``config.mass_matrix`` (None for unit mass)."""
        if self.runner is not None:
            return self.runner(model, model_args, z0, config, generator, model_kwargs, progress_bar,
                               inverse_mass)
        return run_kernel(self.kernel, model, model_args, z0, config, generator, model_kwargs,
                          progress_bar, inverse_mass)


class SamplerRegistry(Mapping):
    """Sampler name -> :class:`SamplerSpec`, in registration order; iterating gives the names
    (so ``", ".join(SAMPLERS)`` and ``name in SAMPLERS`` work as on a tuple of names)."""

    def __init__(self, specs: Iterable[SamplerSpec] = ()):
        self._specs: dict[str, SamplerSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: SamplerSpec) -> SamplerSpec:
        """Add a sampler; its name must be new."""
        if spec.name in self._specs:
            raise ValueError(f"a sampler named {spec.name!r} is already registered")
        self._specs[spec.name] = spec
        return spec

    def __getitem__(self, name: str) -> SamplerSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"SamplerRegistry({', '.join(self._specs)})"


# The default mass matrix of the batched MCMC samplers: the encoder's variance σ²(x), refined by
# Stan's windows where the warm-up has room for them (≥ 150 transitions; the quick profile's 50
# keep σ²(x)). On 10 MNIST and ColorMNIST references at 50 warm-up transitions (python -m
# benchmarks.mass_matrix; docs/samplers.md) σ²(x) gave the largest ESS per gradient on clean
# inputs and no divergences; the 15/75/10 windows of short warm-ups diverged (inference.mass).
DEFAULT_MASS = "encoder_windowed"

SAMPLERS = SamplerRegistry([
    # The paper's Algorithm 1 with its own adaptation is hmc with adapt="paper",
    # mass_matrix="identity", jitter=0; by default the step size is dual-averaged, the mass
    # matrix fitted per point and the trajectory jittered.
    SamplerSpec("hmc", kernel=BatchedHMC, jitter=HMC_JITTER, default_mass=DEFAULT_MASS),
    SamplerSpec("nuts", kernel=BatchedNUTS, default_mass=DEFAULT_MASS),
    # Adam on U (Appendix B.3): step_size is the learning rate, nothing to adapt or jitter.
    SamplerSpec("map", kernel=BatchedMAP, adapt_kinds=(), default_adapt=None, jitter_allowed=False,
                mass_kinds=("identity",), mcmc=False),
    SamplerSpec("mala", kernel=BatchedMALA, target_accept=MALA_TARGET_ACCEPT, num_leapfrog_steps=1,
                default_mass=DEFAULT_MASS),
    SamplerSpec("chees", kernel=BatchedChEES, adapt_kinds=("dual_averaging",), target_accept=CHEES_TARGET_ACCEPT,
                jitter_allowed=False, default_mass=DEFAULT_MASS),
    SamplerSpec("pyro_hmc", runner=_run_stock, adapt_kinds=("dual_averaging",), jitter_allowed=False,
                mass_kinds=("identity", "windowed"), default_mass="windowed", multi_site=False),
    SamplerSpec("pyro_nuts", runner=_run_stock, adapt_kinds=("dual_averaging",), jitter_allowed=False,
                mass_kinds=("identity", "windowed"), default_mass="windowed", multi_site=False),
])
