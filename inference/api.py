"""One entry point for the defence's sampler: ``sample_posterior(..., sampler=...)``.

The samplers differ by one argument: batched ``"hmc"`` (the paper's Algorithm 1), batched
``"nuts"``, ``"map"`` (Adam mode finding, Appendix B.3), and the references ``"pyro_hmc"`` /
``"pyro_nuts"`` (stock Pyro kernels, one chain per point, for small N). All start from the
encoder, z₀ ~ q(z|x) (or its mean), and return the same :class:`PosteriorSamples` record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from pyro.infer import MCMC
from torch import Tensor

from inference.adaptation import ADAPT_KINDS, StepSizeAdaptation
from inference.kernels import BatchedHMC, BatchedMAP, BatchedNUTS
from inference.reference import run_stock_pyro
from inference.target import initial_latents

SAMPLERS = ("hmc", "nuts", "map", "pyro_hmc", "pyro_nuts")
_AUTO_ADAPT = {"hmc": "paper", "nuts": "dual_averaging", "map": None,
               "pyro_hmc": "dual_averaging", "pyro_nuts": "dual_averaging"}
_DEFAULT_TARGET_ACCEPT = {"paper": 0.9, "dual_averaging": 0.8}
# ArviZ's sample_stats names for the fields of the *Info records.
_STAT_NAMES = {"accept_prob": "acceptance_rate", "num_steps": "n_steps"}


@dataclass(frozen=True)
class SamplerConfig:
    """Every setting of one ``sample_posterior`` run, as resolved (``adapt="auto"`` replaced by
    the kind used, ``seed`` by the seed actually drawn when none was given)."""

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
    latent_site: str
    seed: int
    device: str


@dataclass(frozen=True)
class PosteriorSamples:
    """Draws and per-transition statistics of one run.

    Shape:
        - z: (num_chains, num_samples, N, D), the kept draws (warm-up excluded)
        - final_z: (num_chains, N, D), the state after the last transition (the defence's output)
        - step_size: (num_chains, N), the step sizes a further transition would use
        - sample_stats / warmup_stats: name -> (num_chains, T, N) with T = num_samples /
          num_warmup; ArviZ names (``diverging``, ``acceptance_rate``, ``energy``, ``lp`` =
          log p(x, z), ``step_size``, ``n_steps``, ``tree_depth`` for NUTS, ``accepted`` for
          HMC and MAP). The stock-Pyro references record ``step_size`` and ``diverging`` only.
    """

    z: Tensor
    final_z: Tensor
    step_size: Tensor
    sample_stats: dict[str, Tensor]
    warmup_stats: dict[str, Tensor]
    config: SamplerConfig


def _info_to_stats(info) -> dict[str, Tensor]:
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


def _resolve_adaptation(sampler: str, adapt: str | None, target_accept: float | None):
    if adapt == "auto":
        adapt = _AUTO_ADAPT[sampler]
    if adapt is not None and adapt not in ADAPT_KINDS:
        raise ValueError(f"adapt must be 'auto', None or one of {ADAPT_KINDS}, got {adapt!r}")
    if sampler == "map" and adapt is not None:
        raise ValueError("sampler='map' has no step-size adaptation; use adapt=None or 'auto'")
    if sampler.startswith("pyro_") and adapt == "paper":
        raise ValueError("stock Pyro kernels adapt by dual averaging only; use adapt='dual_averaging' or None")
    if adapt is None:
        return None, None
    return adapt, _DEFAULT_TARGET_ACCEPT[adapt] if target_accept is None else target_accept


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
    sampler: Literal["hmc", "nuts", "map", "pyro_hmc", "pyro_nuts"] = "hmc",
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
    latent_site: str = "z",
    seed: int | None = None,
    progress_bar: bool = False,
    model_kwargs: dict | None = None,
) -> PosteriorSamples:
    """Sample p(z|x) ∝ p(x|z) p(z) for every point of ``model_args`` (paper Section 3).

    Args:
        model, guide: Pyro model and guide of the interface described in
            :class:`~inference.target.PosteriorTarget` (data plate over dim -1, latent site
            ``latent_site`` of shape (N, D); the guide's site is a Normal).
        sampler: ``"hmc"`` (L fixed leapfrog steps), ``"nuts"`` (multinomial NUTS up to
            ``max_tree_depth``), ``"map"`` (Adam on U with learning rate ``step_size``; each
            kept "draw" is one optimisation step), ``"pyro_hmc"``/``"pyro_nuts"`` (stock
            ``pyro.infer.mcmc`` kernels, one chain per point: slow, for small N).
        adapt: per-chain step-size adaptation: ``"paper"`` (η_t = η_{t−1}(1 + 0.01(α−0.9)/0.9),
            PROTOCOL.md §7), ``"dual_averaging"``, None, or ``"auto"`` (hmc: paper, nuts and
            the Pyro references: dual averaging, map: none). Runs during warm-up only, unless
            ``adapt_after_warmup`` (the paper's code never stopped adapting).
        target_accept: adaptation target; default 0.9 (paper) or 0.8 (dual averaging).
        init: z₀ ~ q(z|x) (``"sample"``, the paper), its mean, or given initial latents,
            (N, D) for every chain or (num_chains, N, D) (e.g. a warm start, or an oracle start
            at the clean input's code).
        seed: seeds a ``torch.Generator`` on the data's device that drives every random draw
            (initial latents, momenta, uniforms); None draws a fresh seed (recorded in config).
        progress_bar: Pyro's progress bar, refreshed with step size / acceptance / divergences
            every 50 transitions (each refresh reads device values).

    Points never influence each other: a point whose potential or gradient is not finite is
    rejected at every affected transition and flagged divergent; non-finite encoder outputs
    are replaced by 0 before sampling. (With Pyro validation on, the model's and guide's own
    checks reject non-finite data up front.)

    Shape:
        tensor ``model_args`` have N rows; returns z (C, S, N, D) etc., see PosteriorSamples.
    """
    _check_arguments(sampler, num_chains, num_warmup, num_samples, step_size, num_leapfrog_steps,
                     max_tree_depth, init)
    adapt, target_accept = _resolve_adaptation(sampler, adapt, target_accept)
    device = _device_of(model_args)
    generator = torch.Generator(device=device)
    seed = generator.seed() if seed is None else seed
    generator.manual_seed(seed)
    config = SamplerConfig(
        sampler, num_chains, num_warmup, num_samples, float(step_size), num_leapfrog_steps, adapt,
        target_accept, adapt_after_warmup, "given" if torch.is_tensor(init) else init,
        max_tree_depth, latent_site, seed, str(device),
    )
    z0 = initial_latents(guide, model_args, num_chains=num_chains,
                         init="mean" if torch.is_tensor(init) else init, latent_site=latent_site,
                         generator=generator, model_kwargs=model_kwargs)
    if torch.is_tensor(init):
        z0 = _given_start(init, z0)
    if sampler.startswith("pyro_"):
        z, step, sample_stats, warmup_stats = run_stock_pyro(model, model_args, z0, config, model_kwargs)
        return PosteriorSamples(z, z[:, -1].clone(), step, sample_stats, warmup_stats, config)

    adaptation = None
    if adapt is not None:
        adaptation = StepSizeAdaptation(adapt, target_accept, continue_after_warmup=adapt_after_warmup)
    common = dict(step_size=step_size, adaptation=adaptation, generator=generator, latent_site=latent_site)
    if sampler == "hmc":
        kernel = BatchedHMC(model, num_leapfrog_steps=num_leapfrog_steps, **common)
    elif sampler == "nuts":
        kernel = BatchedNUTS(model, max_tree_depth=max_tree_depth, **common)
    else:
        kernel = BatchedMAP(model, **common)
    mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=num_warmup,
                initial_params={latent_site: z0}, disable_progbar=not progress_bar, transforms={})
    mcmc.run(*model_args, **(model_kwargs or {}))
    draws = mcmc.get_samples(group_by_chain=True)[latent_site][0]  # (S, C, N, D)
    records = kernel.diagnostics()
    z = draws.transpose(0, 1).contiguous()
    return PosteriorSamples(
        z=z,
        final_z=kernel.state.z.clone(),
        step_size=kernel.step_size.clone(),
        sample_stats=_info_to_stats(records["samples"]),
        warmup_stats=_info_to_stats(records["warmup"]),
        config=config,
    )
