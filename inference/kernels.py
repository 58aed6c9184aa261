"""Thin ``pyro.infer.mcmc.MCMCKernel`` adapters over the pure batched step functions.

One kernel instance holds ALL chains of ALL points in one state of batch shape
(num_chains, num_points), so ``pyro.infer.MCMC`` runs it as a single Pyro "chain": its
``params`` are ``{latent_site: z}`` with z of shape (C, N, D), and ``MCMC.get_samples(
group_by_chain=True)[latent_site]`` has shape (1, num_samples, C, N, D).

Per-transition statistics are not logged: every transition's ``*Info`` record is kept, warm-up
apart from kept draws, and handed back by :meth:`BatchedKernel.diagnostics` (which ``MCMC``
also collects) as ``{"warmup": Info, "samples": Info, ...}`` with every Info field stacked
over transitions, shape (T, C, N). The records survive ``cleanup()`` (which only frees the
conditioned model) and are reset by the next ``setup()``.

Every transition can jitter each chain's step size (``jitter`` > 0, see :class:`BatchedKernel`),
and every kernel counts the potential-and-gradient evaluations spent on each chain
(:attr:`BatchedKernel.num_grad_evals`), the cost unit of the defence.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import OrderedDict
from typing import Callable, NamedTuple

import torch
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel
from torch import Tensor

from inference.adaptation import StepSizeAdaptation, adapt_end_warmup, adapt_init, adapt_update
from inference.hmc import hmc_init, hmc_step
from inference.map import map_init, map_step
from inference.mass import MassAdaptation, STAN_PRIOR_VARIANCE, Whitening
from inference.nuts import nuts_step
from inference.target import PosteriorTarget, RowsValueAndGrad, ValueAndGrad


def stack_infos(infos: list[NamedTuple]) -> NamedTuple | None:
    """Stack per-transition Info records field by field. Shape: T × (*B) -> (T, *B)."""
    if not infos:
        return None
    return type(infos[0])(*(torch.stack(field) for field in zip(*infos)))


def jittered_step_size(step_size: Tensor, jitter: float, generator: torch.Generator | None) -> Tensor:
    """One transition's step sizes, η·(1 + j·(2u − 1)) per chain with u ~ U(0, 1) drawn from
    ``generator`` (see :class:`BatchedKernel`). Shape: step_size (C, N) -> (C, N)."""
    if jitter == 0.0:  # the paper's fixed trajectory; no draw, so the stream is unchanged
        return step_size
    uniform = torch.rand(step_size.shape, generator=generator, dtype=step_size.dtype,
                         device=step_size.device)
    return step_size * (1.0 + jitter * (2.0 * uniform - 1.0))


class BatchedKernel(MCMCKernel):
    """Common adapter: state handling, per-chain step sizes and adaptation, Info records.

    Give either ``model`` (a Pyro model whose args arrive through ``MCMC.run(*model_args)``;
    the potential is :class:`~inference.target.PosteriorTarget`) or ``potential_fn``, a
    value-and-grad callable z (C, N, D) -> (U (C, N), grad (C, N, D)); a ``potential_fn`` with
    a ``value_and_grad_rows`` method (like PosteriorTarget's) also lets NUTS evaluate only the
    chains it still integrates. Initial latents are set through ``initial_params``
    (``MCMC(..., initial_params={latent_site: z0})``). ``latent_site`` may be a tuple of sites
    (a hierarchical model's groups), all updated jointly as one flat z (the tuple is then
    also the key of ``params``).

    ``jitter`` j ∈ [0, 1): every transition, every chain integrates with step size
    η·(1 + j·(2u − 1)), u ~ U(0, 1) drawn from ``generator``, around its (adapted) η. Randomising
    the step size of each trajectory (Mackenzie 1989, "An improved hybrid Monte Carlo method",
    Phys. Lett. B 226; Neal 2011, "MCMC using Hamiltonian dynamics", Section 5.4) breaks
    the periodicity of a fixed trajectory η·L: on a Gaussian, a fixed η·L near half a period
    reflects the chain about the mean at every transition and it never forgets its start. The
    step size rather than L is jittered so that every chain still integrates exactly L steps,
    which batched chains in step need to waste nothing. j = 0 is the paper's fixed trajectory.
    The adaptation keeps adapting η from the jittered transitions' acceptance.

    ``compile_potential``: with ``model``, evaluate the full batch's value and gradient through
    the traced tensor program of :class:`~inference.target.PosteriorTarget` (which falls back to
    the model itself when the program cannot be recorded faithfully).

    ``inverse_mass`` (N, D): a diagonal inverse mass matrix per point, shared by its chains;
    the kernel then integrates in whitened coordinates u = z / sqrt(inverse_mass) with unit mass
    (see :mod:`inference.mass`), so step sizes are in those coordinates. ``adapt_mass``:
    re-estimate it in Stan's slow warm-up windows, shrinking each window's variance towards
    ``mass_prior`` (Stan's 1e-3 by default, or e.g. the encoder's variance); the step-size
    adaptation restarts after each window. None and False: unit mass, nothing is wrapped.

    Shape:
        initial latents (C, N, D); ``step_size``: a float or a tensor broadcastable to (C, N).
    """

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: ValueAndGrad | None = None,
        *,
        step_size: float | Tensor,
        adaptation: StepSizeAdaptation | None = None,
        generator: torch.Generator | None = None,
        latent_site: str | tuple[str, ...] = "z",
        jitter: float = 0.0,
        compile_potential: bool = True,
        progress_every: int = 50,
        inverse_mass: Tensor | None = None,
        adapt_mass: bool = False,
        mass_prior: Tensor | float = STAN_PRIOR_VARIANCE,
    ):
        if (model is None) == (potential_fn is None):
            raise ValueError("give exactly one of `model` or `potential_fn`")
        if not bool(torch.all(torch.as_tensor(step_size) > 0)):
            raise ValueError(f"step_size must be > 0, got {step_size}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        if inverse_mass is not None and not bool(torch.all(torch.isfinite(inverse_mass) & (inverse_mass > 0))):
            raise ValueError("inverse_mass must be finite and > 0 everywhere")
        self.model = model
        self.potential_fn = potential_fn
        self.latent_site = latent_site
        self.adaptation = adaptation
        self.generator = generator
        self.jitter = jitter
        self.compile_potential = compile_potential
        self.progress_every = progress_every
        # Latents live in unconstrained space; a non-None value tells MCMC not to look for any.
        self.transforms: dict = {}
        self._step_size0 = step_size
        self._inverse_mass0 = inverse_mass
        self.adapt_mass = adapt_mass
        self.mass_prior = mass_prior
        self._whitening: Whitening | None = None
        self._mass_adaptation: MassAdaptation | None = None
        self._position: Tensor | None = None
        self._initial_params: dict | None = None
        self._records: dict[str, list] = {"warmup": [], "samples": []}
        self._progress: OrderedDict = OrderedDict()
        self._value_and_grad: ValueAndGrad | None = None
        self._value_and_grad_rows: RowsValueAndGrad | None = None
        self._num_grad_evals: Tensor | None = None
        self._state = None
        self._adapt = None
        self._t = 0
        self._warmup_steps = 0

    @property
    def initial_params(self) -> dict | None:
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params: dict):
        self._initial_params = params

    @property
    def step_size(self) -> Tensor:
        """Current per-chain step sizes, shape (C, N)."""
        return self._adapt.step_size

    @property
    def state(self):
        """The current ``*State`` record of all chains (in whitened coordinates when the kernel
        has a mass matrix; :attr:`position` is always the model's z)."""
        return self._state

    @property
    def position(self) -> Tensor:
        """The chains' current latents z in the model's coordinates. Shape: (C, N, D)."""
        return self._position

    @property
    def inverse_mass(self) -> Tensor | None:
        """The current diagonal inverse mass matrix per point, (N, D); None for unit mass."""
        return None if self._whitening is None else self._whitening.scale.square()

    @property
    def num_grad_evals(self) -> Tensor:
        """Potential-and-gradient evaluations spent on every chain since ``setup()``, the one
        at the initial state included. Shape: (C, N), int64."""
        return self._num_grad_evals

    @classmethod
    def from_config(cls, model: Callable, config, *, adaptation: StepSizeAdaptation | None,
                    generator: torch.Generator | None, **mass_options) -> "BatchedKernel":
        """The kernel for one ``sample_posterior`` run, from its resolved
        :class:`~inference.api.SamplerConfig` (the sampler's own options come from
        :meth:`_config_options`; ``mass_options``: ``inverse_mass``, ``adapt_mass``,
        ``mass_prior``)."""
        return cls(model, step_size=config.step_size, adaptation=adaptation, generator=generator,
                   latent_site=config.latent_site, jitter=config.jitter,
                   compile_potential=config.compile_potential, **mass_options,
                   **cls._config_options(config))

    @classmethod
    def _config_options(cls, config) -> dict:
        return {}

    def setup(self, warmup_steps: int, *model_args, **model_kwargs):
        if not self._initial_params or self.latent_site not in self._initial_params:
            raise ValueError(f"set initial_params={{{self.latent_site!r}: z0}} with z0 of shape (C, N, D)")
        z0 = self._initial_params[self.latent_site]
        if z0.dim() != 3:
            raise ValueError(f"initial latents must have shape (C, N, D), got {tuple(z0.shape)}")
        if self.generator is None:
            seed = int(torch.randint(0, 2**62, ()))  # from Pyro's/torch's global seed
            self.generator = torch.Generator(device=z0.device).manual_seed(seed)
        if self.generator.device != z0.device:
            raise ValueError(f"generator is on {self.generator.device}, latents on {z0.device}")
        if self.model is not None:
            target = PosteriorTarget(
                self.model, model_args, latent_site=self.latent_site,
                num_chains=z0.shape[0], model_kwargs=model_kwargs, compile=self.compile_potential,
            )
            value_and_grad, value_and_grad_rows = target.value_and_grad, target.value_and_grad_rows
        else:
            value_and_grad = self.potential_fn
            value_and_grad_rows = getattr(self.potential_fn, "value_and_grad_rows", None)
        self._setup_mass(z0, warmup_steps)
        if self._whitening is None:
            self._value_and_grad, self._value_and_grad_rows = value_and_grad, value_and_grad_rows
        else:
            self._value_and_grad = self._whitening.value_and_grad(value_and_grad)
            self._value_and_grad_rows = self._whitening.value_and_grad_rows(value_and_grad_rows)
        self._warmup_steps = warmup_steps
        self._t = 0
        self._records = {"warmup": [], "samples": []}
        self._num_grad_evals = torch.zeros(z0.shape[:-1], dtype=torch.int64, device=z0.device)
        self._state = self._start(z0.detach())
        # MCMC hands these params to the first sample(): give it the kernel's own tensor, so the
        # start is not mistaken for a move by the caller (and evaluated a second time).
        self._initial_params = {**self._initial_params, self.latent_site: self._position}
        step = torch.as_tensor(self._step_size0, dtype=z0.dtype, device=z0.device)
        self._adapt = adapt_init(step.expand(z0.shape[:-1]).clone())

    def _setup_mass(self, z0: Tensor, warmup_steps: int) -> None:
        """The whitening of this run (None: unit mass) and its windowed adaptation."""
        inverse_mass = self._inverse_mass0
        if inverse_mass is None and self.adapt_mass:
            inverse_mass = torch.ones(z0.shape[1:], dtype=z0.dtype, device=z0.device)
        if inverse_mass is None:
            self._whitening = self._mass_adaptation = None
            return
        if tuple(inverse_mass.shape) != tuple(z0.shape[1:]):
            raise ValueError(f"inverse_mass must have shape (N, D) = {tuple(z0.shape[1:])}, "
                             f"got {tuple(inverse_mass.shape)}")
        self._whitening = Whitening(inverse_mass.to(z0).sqrt(), num_chains=z0.shape[0])
        self._mass_adaptation = MassAdaptation(warmup_steps, self.mass_prior) if self.adapt_mass else None

    def _update_mass(self, in_warmup: bool) -> None:
        """At the end of a slow warm-up window: the window's variance becomes the inverse mass
        (where it is finite and positive; a point whose draws are not keeps its old one), the
        state is re-expressed in the new coordinates and the step-size adaptation restarts."""
        if self._mass_adaptation is None or not in_warmup:
            return
        inverse_mass = self._mass_adaptation.observe(self._t, self._position)
        if inverse_mass is None:
            return
        old = self._whitening.scale
        usable = torch.isfinite(inverse_mass) & (inverse_mass > 0)
        new_scale = torch.where(usable, inverse_mass.clamp(min=torch.finfo(old.dtype).tiny).sqrt(), old)
        self._state = self._whitening.rescale(self._state, new_scale)
        self._position = self._whitening.to_model(self._state.z)
        if self.adaptation is not None:
            self._adapt = adapt_init(self._adapt.step_size)

    def cleanup(self):
        # Free the conditioned model (it holds the tiled data); the final state, step sizes,
        # records and counts stay readable.
        self._value_and_grad = None
        self._value_and_grad_rows = None

    def end_warmup(self):
        """Switch to the step sizes of the kept draws (unless adaptation continues)."""
        if self.adaptation is not None and not self.adaptation.continue_after_warmup:
            self._adapt = adapt_end_warmup(self.adaptation, self._adapt)

    def sample(self, params: dict) -> dict:
        z = params[self.latent_site]
        if z is not self._position:  # the caller moved the chains: start again from there
            self._state = self._start(z.detach())
        if self._t == self._warmup_steps:
            self.end_warmup()
        in_warmup = self._t < self._warmup_steps
        self._state, info = self._transition(self._state, self._jittered(self._adapt.step_size))
        self._num_grad_evals += info.num_grad_evals
        self._records["warmup" if in_warmup else "samples"].append(info)
        if self.adaptation is not None and (in_warmup or self.adaptation.continue_after_warmup):
            self._adapt = adapt_update(self.adaptation, self._adapt, self._adaptation_statistic(info))
        self._position = self._to_model(self._state.z)
        self._update_mass(in_warmup)
        self._t += 1
        return {self.latent_site: self._position}

    def _to_model(self, z: Tensor) -> Tensor:
        return z if self._whitening is None else self._whitening.to_model(z)

    def _start(self, z: Tensor):
        """Initial state (one potential-and-gradient evaluation per chain) from model-space z."""
        state = self._init_state(z if self._whitening is None else self._whitening.to_whitened(z))
        self._num_grad_evals += 1
        self._position = self._to_model(state.z)
        return state

    def _jittered(self, step_size: Tensor) -> Tensor:
        return jittered_step_size(step_size, self.jitter, self.generator)

    def _adaptation_statistic(self, info) -> Tensor:
        return info.accept_prob

    def logging(self) -> OrderedDict:
        # Refreshed every `progress_every` transitions only: reading values forces a host sync.
        if self._t % self.progress_every == 1 or self.progress_every == 1:
            last = (self._records["samples"] or self._records["warmup"])[-1]
            self._progress = OrderedDict(
                [
                    ("step size", f"{float(self._adapt.step_size.median()):.2e}"),
                    ("acc. prob", f"{float(self._adaptation_statistic(last).float().mean()):.3f}"),
                    ("div.", int(last.diverging.sum())),
                ]
            )
        return self._progress

    def diagnostics(self) -> dict:
        """Per-transition records and totals over the kept draws.

        Returns ``{"warmup": Info | None, "samples": Info | None, "divergences": int,
        "acceptance rate": float}``; Info fields have shape (T, C, N).
        """
        samples = stack_infos(self._records["samples"])
        result = {"warmup": stack_infos(self._records["warmup"]), "samples": samples}
        if samples is not None:
            result["divergences"] = int(samples.diverging.sum())
            result["acceptance rate"] = float(self._adaptation_statistic(samples).float().mean())
        return result

    @abstractmethod
    def _init_state(self, z: Tensor):
        raise NotImplementedError

    @abstractmethod
    def _transition(self, state, step_size: Tensor):
        raise NotImplementedError


class BatchedHMC(BatchedKernel):
    """HMC with L leapfrog steps for every chain of every point (Algorithm 1).

    See :func:`inference.hmc.hmc_step`; per-chain step size, accept/reject and divergence. With
    ``jitter`` = 0 this is the paper's fixed trajectory η·L; ``jitter`` > 0 randomises η per
    transition and chain (see :class:`BatchedKernel`), L stays fixed.
    """

    def __init__(self, model=None, potential_fn=None, *, num_leapfrog_steps: int = 20, **kwargs):
        if num_leapfrog_steps < 1:
            raise ValueError(f"num_leapfrog_steps must be >= 1, got {num_leapfrog_steps}")
        self.num_leapfrog_steps = num_leapfrog_steps
        super().__init__(model, potential_fn, **kwargs)

    @classmethod
    def _config_options(cls, config) -> dict:
        return {"num_leapfrog_steps": config.num_leapfrog_steps}

    def _init_state(self, z):
        return hmc_init(z, self._value_and_grad)

    def _transition(self, state, step_size):
        return hmc_step(state, self._value_and_grad, step_size, self.num_leapfrog_steps, self.generator)


class BatchedNUTS(BatchedKernel):
    """Multinomial NUTS with per-chain trees, see :func:`inference.nuts.nuts_step`; the
    potential is evaluated for the chains still extending their trees only (when the target
    has ``value_and_grad_rows``)."""

    def __init__(self, model=None, potential_fn=None, *, max_tree_depth: int = 10, **kwargs):
        if max_tree_depth < 1:
            raise ValueError(f"max_tree_depth must be >= 1, got {max_tree_depth}")
        self.max_tree_depth = max_tree_depth
        super().__init__(model, potential_fn, **kwargs)

    @classmethod
    def _config_options(cls, config) -> dict:
        return {"max_tree_depth": config.max_tree_depth}

    def _init_state(self, z):
        return hmc_init(z, self._value_and_grad)

    def _transition(self, state, step_size):
        return nuts_step(
            state, self._value_and_grad, step_size, self.generator, max_tree_depth=self.max_tree_depth,
            value_and_grad_rows=self._value_and_grad_rows,
        )


class BatchedMAP(BatchedKernel):
    """Per-point Adam on U run as a "kernel": one optimisation step per transition.

    ``step_size`` is Adam's learning rate; there is no step-size adaptation and no randomness.
    """

    def __init__(self, model=None, potential_fn=None, **kwargs):
        if kwargs.get("adaptation") is not None:
            raise ValueError("MAP has no step-size adaptation; pass adaptation=None")
        if kwargs.get("jitter", 0.0) != 0.0:
            raise ValueError("MAP has no step-size jitter; pass jitter=0")
        if kwargs.get("inverse_mass") is not None or kwargs.get("adapt_mass"):
            raise ValueError("MAP has no mass matrix (Adam scales its own steps); pass inverse_mass=None")
        super().__init__(model, potential_fn, **kwargs)

    def _init_state(self, z):
        return map_init(z, self._value_and_grad)

    def _transition(self, state, step_size):
        return map_step(state, self._value_and_grad, step_size)

    def _adaptation_statistic(self, info) -> Tensor:
        return info.accepted
