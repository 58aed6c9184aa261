"""One entry point for the defence's sampler: ``sample_posterior(..., sampler=...)``.

The samplers differ by one argument, a name of the registry :data:`inference.samplers.SAMPLERS`:
batched ``"hmc"`` (the paper's Algorithm 1; by default with dual averaging, a per-point mass
matrix and a jittered trajectory), batched
``"nuts"``, ``"mala"`` (HMC with one leapfrog step and its own adaptation), ``"map"`` (Adam
mode finding, Appendix B.3), and the references ``"pyro_hmc"`` / ``"pyro_nuts"`` (stock Pyro
kernels, one chain per point, for small N). All start from the encoder, z₀ ~ q(z|x) (or its
mean, or given latents), and return the same :class:`PosteriorSamples` record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Callable, Literal

import torch
from torch import Tensor

from inference.adaptation import ADAPT_KINDS
from inference.layout import LatentLayout, site_names
from inference.mass import MASS_KINDS, initial_inverse_mass
from inference.parametrisation import PARAMETRISATIONS, NonCentred
from inference.samplers import SAMPLERS, SamplerSpec
from inference.target import draw_initial_latents, encoder_moments

_DEFAULT_TARGET_ACCEPT = {"paper": 0.9, "dual_averaging": 0.8}


@dataclass(frozen=True)
class SamplerConfig:
    """Every setting of one ``sample_posterior`` run, as resolved (``adapt="auto"`` replaced by
    the kind used, ``seed`` by the seed actually drawn when none was given, ``jitter`` by the
    sampler's default when none was given, ``num_leapfrog_steps`` by the sampler's own L where
    it has one).

    jitter: each transition's step size is η·(1 + jitter·(2u − 1)), u ~ U(0, 1) per chain;
    0 is the paper's fixed trajectory η·L (see :class:`~inference.kernels.BatchedKernel`).
    compile_potential: whether the potential was asked to run as a traced tensor program (see
    :class:`~inference.target.PosteriorTarget`).
    latent_site: the one site name, or the tuple of a hierarchical model's sites (top first)
    sampled jointly as one flat z.
    mass_matrix: the diagonal mass matrix's source, one of :data:`inference.mass.MASS_KINDS`
    ("identity": unit mass, the paper's).
    parametrisation: the coordinates the sampler moved, "centred" (z itself, the paper's) or
    "noncentred" (each site's standardised prior noise, see :mod:`inference.parametrisation`).
    """

    sampler: str
    num_chains: int
    num_warmup: int
    num_samples: int
    step_size: float
    num_leapfrog_steps: int
    adapt: str | None
    target_accept: float | None
    adapt_after_warmup: bool
    init: str
    max_tree_depth: int
    latent_site: str | tuple[str, ...]
    seed: int
    device: str
    jitter: float = 0.0
    compile_potential: bool = True
    mass_matrix: str = "identity"
    parametrisation: str = "centred"


@dataclass(frozen=True)
class PosteriorSamples:
    """Draws and per-transition statistics of one run.

    Shape:
        - z: (num_chains, num_samples, N, D), the kept draws (warm-up excluded)
        - final_z: (num_chains, N, D), the state after the last transition (the defence's output)
        - step_size: (num_chains, N), the (un-jittered) step sizes a further transition would use
        - sample_stats / warmup_stats: name -> (num_chains, T, N) with T = num_samples /
          num_warmup; ArviZ names (``diverging``, ``acceptance_rate``, ``energy``, ``lp`` =
          log p(x, z) (log p(x, ε) where non-centred), ``step_size`` = the η each transition
          integrated with (jittered when ``config.jitter`` > 0), ``n_steps``, ``n_grad_evals`` = potential-and-gradient
          evaluations spent on the chain by the transition, ``tree_depth`` for NUTS,
          ``accepted`` for HMC, MALA and MAP). The stock-Pyro references record ``step_size``
          and ``diverging`` only.
        - num_grad_evals: (num_chains, N) int64, every evaluation of the run per chain and point,
          the one at the initial state included (= 1 + the sum of ``n_grad_evals`` over warm-up
          and kept transitions); None for the stock-Pyro references, which do not expose it.
        - layout: where each latent site lies in the last dimension D of z and final_z
          (``layout.split(z)`` gives the sites' values; one site for a flat model).
        - inverse_mass: (N, D), the diagonal inverse mass matrix of the kept draws (the
          estimate of each coordinate's posterior variance the sampler used); None for unit mass.
    """

    z: Tensor
    final_z: Tensor
    step_size: Tensor
    sample_stats: dict[str, Tensor]
    warmup_stats: dict[str, Tensor]
    config: SamplerConfig
    num_grad_evals: Tensor | None = None
    layout: LatentLayout | None = None
    inverse_mass: Tensor | None = None


def _resolve_adaptation(spec: SamplerSpec, adapt: str | None, target_accept: float | None):
    if adapt == "auto":
        adapt = spec.default_adapt
    if adapt is not None and adapt not in ADAPT_KINDS:
        raise ValueError(f"adapt must be 'auto', None or one of {ADAPT_KINDS}, got {adapt!r}")
    if adapt is not None and adapt not in spec.adapt_kinds:
        if not spec.adapt_kinds:
            raise ValueError(f"sampler={spec.name!r} has no step-size adaptation; use adapt=None or 'auto'")
        allowed = " or ".join(repr(kind) for kind in spec.adapt_kinds)
        raise ValueError(f"sampler={spec.name!r} adapts by {allowed} only; use adapt={allowed} or None")
    if adapt is None:
        return None, None
    if target_accept is None:
        target_accept = spec.target_accept if spec.target_accept is not None else _DEFAULT_TARGET_ACCEPT[adapt]
    return adapt, target_accept


def _resolve_mass(spec: SamplerSpec, mass_matrix: str) -> str:
    if mass_matrix == "auto":
        return spec.default_mass
    if mass_matrix not in MASS_KINDS:
        raise ValueError(f"mass_matrix must be 'auto' or one of {MASS_KINDS}, got {mass_matrix!r}")
    if mass_matrix not in spec.mass_kinds:
        allowed = " or ".join(repr(kind) for kind in spec.mass_kinds)
        raise ValueError(f"sampler={spec.name!r} takes mass_matrix={allowed} only, got {mass_matrix!r}")
    return mass_matrix


def _resolve_parametrisation(spec: SamplerSpec, parametrisation: str, num_sites: int) -> str:
    movable = spec.mcmc and spec.kernel is not None  # the batched MCMC kernels
    if parametrisation == "auto":
        return "noncentred" if movable and num_sites > 1 else "centred"
    if parametrisation not in PARAMETRISATIONS:
        raise ValueError(f"parametrisation must be 'auto' or one of {PARAMETRISATIONS}, "
                         f"got {parametrisation!r}")
    if parametrisation == "noncentred" and not movable:
        raise ValueError(f"sampler={spec.name!r} takes parametrisation='centred' only (the "
                         "non-centred form is for the batched MCMC samplers: a mode found in "
                         "the noise's coordinates is not the posterior's mode in z)")
    return parametrisation


def _resolve_jitter(spec: SamplerSpec, jitter: float | None) -> float:
    if jitter is None:
        return spec.jitter
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    if jitter and not spec.jitter_allowed:
        raise ValueError(f"sampler={spec.name!r} has no step-size jitter; use jitter=None or 0")
    return float(jitter)


def _check_arguments(sampler, num_chains, num_warmup, num_samples, step_size, num_leapfrog_steps,
                     max_tree_depth, init):
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    checks = [
        (num_chains >= 1, f"num_chains must be >= 1, got {num_chains}"),
        (num_warmup >= 0, f"num_warmup must be >= 0, got {num_warmup}"),
        (num_samples >= 1, f"num_samples must be >= 1, got {num_samples}"),
        (step_size > 0, f"step_size must be > 0, got {step_size}"),
        (num_leapfrog_steps >= 1, f"num_leapfrog_steps (L) must be >= 1, got {num_leapfrog_steps}"),
        (max_tree_depth >= 1, f"max_tree_depth must be >= 1, got {max_tree_depth}"),
        (torch.is_tensor(init) or init in ("sample", "mean"),
         f"init must be 'sample', 'mean' or a tensor of initial latents, got {init!r}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def _given_start(init: Tensor, guide_start: Tensor) -> Tensor:
    """Initial latents given by the caller, checked against the guide's (C, N, D) and tiled."""
    chains, points, dim = guide_start.shape
    if init.shape not in ((points, dim), (chains, points, dim)):
        raise ValueError(f"initial latents must have shape ({points}, {dim}) or "
                         f"({chains}, {points}, {dim}), got {tuple(init.shape)}")
    if not torch.isfinite(init).all():
        raise ValueError("initial latents must be finite")
    return init.to(guide_start).expand(chains, points, dim).clone()


def _device_of(model_args: tuple) -> torch.device:
    return next((a.device for a in model_args if torch.is_tensor(a)), torch.device("cpu"))


def sample_posterior(
    model: Callable,
    guide: Callable,
    model_args: tuple = (),
    *,
    sampler: str = "hmc",
    num_chains: int = 2,
    num_warmup: int = 100,
    num_samples: int = 100,
    step_size: float = 0.1,
    num_leapfrog_steps: int = 20,
    adapt: Literal["auto", "paper", "dual_averaging"] | None = "auto",
    target_accept: float | None = None,
    adapt_after_warmup: bool = False,
    init: Literal["sample", "mean"] | Tensor = "sample",
    max_tree_depth: int = 10,
    latent_site: str | Sequence[str] = "z",
    seed: int | None = None,
    progress_bar: bool = False,
    model_kwargs: dict | None = None,
    jitter: float | None = None,
    compile_potential: bool = True,
    mass_matrix: Literal["auto", "identity", "encoder", "windowed", "encoder_windowed"] = "auto",
    parametrisation: Literal["auto", "centred", "noncentred"] = "auto",
) -> PosteriorSamples:
    """Sample p(z|x) ∝ p(x|z) p(z) for every point of ``model_args`` (paper Section 3).

    Args:
        model, guide: Pyro model and guide of the interface described in
            :class:`~inference.target.PosteriorTarget` (data plate over dim -1, latent site
            ``latent_site`` of shape (N, D); the guide's site is a Normal).
        latent_site: one site, or a sequence of sites (a hierarchical model's groups, top
            first) that every batched sampler updates jointly as one flat z of dimension
            D = Σ sizes (PROTOCOL.md §7; ``layout`` of the result says where each site lies).
            The stock-Pyro references take one site only.
        sampler: a name of :data:`inference.samplers.SAMPLERS`: ``"hmc"`` (L leapfrog steps
            per transition), ``"nuts"`` (multinomial NUTS up to ``max_tree_depth``; the
            potential is evaluated for the chains still extending their trees only),
            ``"mala"`` (one leapfrog step, dual averaging to acceptance 0.574), ``"map"`` (Adam
            on U with learning rate ``step_size``; each kept "draw" is one optimisation step),
            ``"pyro_hmc"``/``"pyro_nuts"`` (stock ``pyro.infer.mcmc`` kernels, one chain per
            point: slow, for small N).
        adapt: per-chain step-size adaptation: ``"paper"`` (η_t = η_{t−1}(1 + 0.01(α−0.9)/0.9),
            PROTOCOL.md §7), ``"dual_averaging"``, None, or ``"auto"`` (the sampler's default:
            dual averaging for every MCMC sampler, none for map). Runs
            during warm-up only, unless ``adapt_after_warmup`` (the paper's code never stopped
            adapting).
        target_accept: adaptation target; default the sampler's (mala: 0.574) or the kind's,
            0.9 (paper) or 0.8 (dual averaging).
        jitter: step-size jitter j ∈ [0, 1): each transition, each chain integrates with
            η·(1 + j·(2u − 1)), u ~ U(0, 1), so the trajectory length varies and cannot
            resonate with the posterior (see :class:`~inference.kernels.BatchedKernel`).
            None: the sampler's default (hmc: 0.5, the others 0). ``jitter=0`` with
            ``sampler="hmc"``, ``adapt="paper"`` and ``mass_matrix="identity"`` is the paper's
            exact fixed-L algorithm.
        mass_matrix: the diagonal mass matrix per point (see :mod:`inference.mass`):
            ``"identity"`` (unit mass, the paper's), ``"encoder"`` (the guide's variance σ²(x),
            fixed), ``"windowed"`` (Stan's windowed warm-up from unit mass),
            ``"encoder_windowed"`` (the windows starting from, and shrunk towards, σ²(x)), or
            ``"auto"`` (the sampler's default: encoder_windowed for the batched MCMC samplers,
            Pyro's own windowed adaptation for the stock references, identity for map). The
            paper's sampler is ``sampler="hmc", adapt="paper", mass_matrix="identity", jitter=0``. With a mass matrix, ``step_size`` is in the
            whitened coordinates z / sqrt(inverse mass).
        parametrisation: the coordinates the sampler moves (see
            :mod:`inference.parametrisation`): ``"centred"`` (z itself, the paper's),
            ``"noncentred"`` (each site's standardised prior noise ε = (z − μ(z_above)) /
            σ(z_above), for Normal priors; the batched MCMC samplers only), or
            ``"auto"``: non-centred for a batched MCMC sampler on several latent sites (a
            hierarchical model), else centred. Either way the draws, the start ``init`` and
            ``final_z`` are in z; ``inverse_mass``, ``step_size`` and the ``lp`` stat (log
            p(x, ε) = log p(x, z) + Σ log σ) are in the coordinates moved.
        compile_potential: evaluate the potential and its gradient through one tensor program
            recorded from the model and checked once per run (see
            :class:`~inference.target.PosteriorTarget`; a model whose Python control flow
            depends on tensor values is detected and runs as it is).
        init: z₀ ~ q(z|x) (``"sample"``, the paper), its mean, or given initial latents,
            (N, D) for every chain or (num_chains, N, D) (e.g. a warm start, or an oracle start
            at the clean input's code).
        seed: seeds a ``torch.Generator`` on the data's device that drives every random draw
            (initial latents, jitter, momenta, uniforms); None draws a fresh seed (recorded in
            config).
        progress_bar: Pyro's progress bar, refreshed with step size / acceptance / divergences
            every 50 transitions (each refresh reads device values).

    Points never influence each other: a point whose potential or gradient is not finite is
    rejected at every affected transition and flagged divergent; non-finite encoder outputs
    are replaced by 0 before sampling. (With Pyro validation on, the model's and guide's own
    checks reject non-finite data up front.)

    Cost: every run records its potential-and-gradient evaluations per chain and point
    (``num_grad_evals`` and the ``n_grad_evals`` stat), the unit in which the defence's cost
    is comparable across samplers.

    Shape:
        tensor ``model_args`` have N rows; returns z (C, S, N, D) etc., see PosteriorSamples.
    """
    _check_arguments(sampler, num_chains, num_warmup, num_samples, step_size, num_leapfrog_steps,
                     max_tree_depth, init)
    spec = SAMPLERS[sampler]
    sites = site_names(latent_site)
    if len(sites) > 1 and not spec.multi_site:
        batched = ", ".join(name for name, other in SAMPLERS.items() if other.multi_site)
        raise ValueError(f"sampler={sampler!r} takes one latent site, got {sites}; "
                         f"use a batched sampler ({batched})")
    latent_site = latent_site if isinstance(latent_site, str) else sites
    adapt, target_accept = _resolve_adaptation(spec, adapt, target_accept)
    jitter = _resolve_jitter(spec, jitter)
    mass_matrix = _resolve_mass(spec, mass_matrix)
    parametrisation = _resolve_parametrisation(spec, parametrisation, len(sites))
    device = _device_of(model_args)
    generator = torch.Generator(device=device)
    seed = generator.seed() if seed is None else seed
    generator.manual_seed(seed)
    config = SamplerConfig(
        sampler, num_chains, num_warmup, num_samples, float(step_size),
        spec.num_leapfrog_steps or num_leapfrog_steps, adapt, target_accept, adapt_after_warmup,
        "given" if torch.is_tensor(init) else init, max_tree_depth, latent_site, seed, str(device),
        jitter, compile_potential, mass_matrix, parametrisation,
    )
    z0, layout = draw_initial_latents(
        guide, model_args, num_chains=num_chains, init="mean" if torch.is_tensor(init) else init,
        latent_site=latent_site, generator=generator, model_kwargs=model_kwargs)
    if torch.is_tensor(init):
        z0 = _given_start(init, z0)
    noncentred, run_model, run_config = None, model, config
    if parametrisation == "noncentred":
        noncentred = NonCentred(model, model_args, layout, model_kwargs,
                                single_site=isinstance(latent_site, str))
        run_model, run_config = noncentred.model, replace(config, latent_site=noncentred.latent_site)
        z0 = noncentred.to_noise(z0)  # a given start (e.g. the oracle's code) too

    def guide_variance():  # σ²(x) of the encoder mass matrices, in the coordinates moved
        means, variance = encoder_moments(guide, model_args, latent_site=latent_site,
                                          model_kwargs=model_kwargs)
        return variance if noncentred is None else noncentred.noise_variance(variance, at=means)

    inverse_mass = initial_inverse_mass(mass_matrix, guide_variance, z0.shape[1:], like=z0)
    result = spec.run(run_model, model_args, z0, run_config, generator, model_kwargs,
                      progress_bar, inverse_mass)
    if noncentred is not None:
        result = result._replace(z=noncentred.to_latent(result.z),
                                 final_z=noncentred.to_latent(result.final_z))
    return PosteriorSamples(result.z, result.final_z, result.step_size, result.sample_stats,
                            result.warmup_stats, config, result.num_grad_evals, layout,
                            result.inverse_mass)
