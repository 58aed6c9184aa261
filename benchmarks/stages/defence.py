"""Defence stages (Section 3, Algorithm 1): the profile's sampler on p(z | x) for every input
that needs defending, in one batched call per model, with ArviZ diagnostics per input group."""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict

import arviz as az
import numpy as np
import pyro
import torch
import xarray as xr

from inference import (SAMPLERS, DiagnosticsSummary, sample_posterior, save_netcdf, summarize,
                       to_inference_data)
from inference.diagnostics import point_diagnostics

from .. import figures
from ..context import RunContext
from .models import LoadedModel

THIS = __name__
MAX_TREE_DEPTH = 6  # NUTS: at most 63 leapfrog steps per transition, about 3 × the HMC's L = 20
NETCDF_MAX_DRAWS = 100  # thinning for the saved chains; R-hat / ESS are computed on all draws
# ArviZ computes R-hat and ESS coordinate by coordinate: for a hierarchical VAE's thousands of
# latent coordinates per input that takes minutes and the saved chains hundreds of MB, so the
# diagnostics and the NetCDF keep an evenly spaced subset of at most this many per latent site
# (every coordinate of the ConvVAE's 64).
MAX_COORDINATES_PER_SITE = 64


def thin_coordinates(idata):
    """``idata`` with at most :data:`MAX_COORDINATES_PER_SITE` evenly spaced coordinates of
    every latent dimension (``latent`` or ``<site>_latent``)."""
    strides = {dim: -(-size // MAX_COORDINATES_PER_SITE)
               for dim, size in idata.posterior.sizes.items() if dim.endswith("latent")}
    selection = {dim: slice(None, None, stride) for dim, stride in strides.items() if stride > 1}
    return idata.isel(**selection) if selection else idata


def profile_adaptation(profile, sampler: str) -> dict:
    """The profile's step-size adaptation, mass matrix and parametrisation where the sampler
    takes them (the paper profile's rule is HMC's; MAP and the stock-Pyro references keep their
    own), else the sampler's defaults ("auto"); the run records the resolved ones in its
    sampler config."""
    spec = SAMPLERS[sampler]
    return {"adapt": profile.adapt if profile.adapt in spec.adapt_kinds else "auto",
            "mass_matrix": profile.mass_matrix if profile.mass_matrix in spec.mass_kinds else "auto",
            "parametrisation": profile.parametrisation or "auto"}


def sample(context: RunContext, model: LoadedModel, inputs: torch.Tensor, *, init="sample",
           **overrides):
    """The profile's sampler on p(z | inputs): T transitions, the first ``warmup_fraction``
    adapting; ``init`` as in :func:`inference.sample_posterior`; ``overrides`` replace any of its
    keyword arguments (the time curve runs one never-frozen chain). Returns PosteriorSamples."""
    profile = context.profile
    num_transitions, step_size = profile.sampler_settings(
        context.settings.dataset, hierarchical=len(model.vae.latent_sites) > 1)
    num_warmup = int(round(profile.warmup_fraction * num_transitions))
    arguments = dict(sampler=context.settings.sampler, num_chains=profile.num_chains,
                     num_warmup=num_warmup, num_samples=num_transitions - num_warmup,
                     step_size=step_size, num_leapfrog_steps=profile.num_leapfrog_steps,
                     jitter=profile.jitter, **profile_adaptation(profile, context.settings.sampler),
                     init=init, max_tree_depth=MAX_TREE_DEPTH,
                     seed=context.settings.seed, latent_site=model.vae.latent_sites,
                     progress_bar=context.settings.progress) | overrides
    with pyro.validation_enabled(False), torch.enable_grad():  # inputs are in [0, 1] already
        return sample_posterior(model.vae.model, model.vae.guide, (inputs,), **arguments)


def scalar_fields(summary: DiagnosticsSummary) -> dict:
    """A diagnostics summary's scalar fields (worst R-hat, smallest ESS, acceptance,
    divergences, the distributions over points, E-BFMI, ...), without the per-point arrays and
    the per-site breakdown."""
    return {k: v for k, v in asdict(summary).items()
            if not isinstance(v, (np.ndarray, dict)) and not k.endswith(("_per_point", "_per_chain"))}


def group_diagnostics(summaries: dict[str, DiagnosticsSummary]) -> xr.Dataset:
    """Every group's per-point diagnostics (R-hat, nested R-hat, bulk / tail ESS, ESS per 1,000
    gradient evaluations; E-BFMI per chain) concatenated along ``point`` in the run's order,
    with each point's ``input_group`` as a coordinate: the NetCDF's ``point_diagnostics``."""
    parts = [point_diagnostics(summary).assign_coords(
        input_group=("point", np.full(len(summary.rhat_per_point), name, dtype=object)))
        for name, summary in summaries.items()]
    merged = xr.concat(parts, dim="point", coords="minimal", compat="override", join="outer")
    return merged.assign_coords(point=np.arange(merged.sizes["point"]),
                                input_group=merged["input_group"].astype(str))


def figure_path(context: RunContext, model: LoadedModel):
    """The chain-diagnostics figure of a model's tables defence, beside ``report.md``."""
    return context.run_dir.path(f"diagnostics_{model.tag}.png")


def diagnostics_figure(netcdf, path, *, points_per_group: int = 3):
    """Traces of lp = log p(x, z) (warm-up and kept draws, every chain) of the points with the
    highest, the median and the lowest R-hat of every input group, from the saved chains."""
    idata = az.from_netcdf(netcdf)
    if "point_diagnostics" not in idata.groups() or "lp" not in idata.sample_stats:
        return None
    diagnostics = idata["point_diagnostics"]
    warmup = getattr(idata, "warmup_sample_stats", None)
    traces = {}
    for group in dict.fromkeys(diagnostics["input_group"].values.tolist()):
        points = np.flatnonzero(diagnostics["input_group"].values == group)
        rhat = diagnostics["rhat"].values[points]
        order = points[np.argsort(np.nan_to_num(-rhat, nan=-np.inf), kind="stable")]
        chosen = list(dict.fromkeys([order[0], order[len(order) // 2], order[-1]]))[:points_per_group]
        traces[group] = [{
            "point": int(n), "rhat": float(diagnostics["rhat"].values[n]),
            "warmup": None if warmup is None or "lp" not in warmup
            else warmup["lp"].isel(point=n).transpose("chain", "draw").values,
            "kept": idata.sample_stats["lp"].isel(point=n).transpose("chain", "draw").values}
            for n in chosen]
    return figures.lp_traces(traces, path)


def gradient_evaluations_per_point(samples) -> float | None:
    """Potential-and-gradient evaluations per input, summed over its chains, warm-up and the
    initial state included; None for samplers that do not count them."""
    if samples.num_grad_evals is None:
        return None
    return samples.num_grad_evals.sum(0).double().mean().item()


def defend(context: RunContext, model: LoadedModel, groups: dict[str, torch.Tensor],
           *, after: tuple[str, ...], stage: str | None = None, **overrides) -> dict:
    """One batched MCMC call over every group of inputs (e.g. ``clean`` and ``skl@0.1``),
    cached as ``chains/<stage or model tag>.pt`` (with the chains as ``.nc`` beside it);
    ``overrides`` go to :func:`sample` (e.g. ``sampler="nuts"``).

    Returns the final latent of every chain per group, (chains, points, D), the mean of each
    chain's kept draws, the diagnostics summary per group (:func:`scalar_fields`), seconds and
    gradient evaluations per point, and the seconds the diagnostics took. The NetCDF also holds
    every point's diagnostics (group ``point_diagnostics``, :func:`group_diagnostics`); the
    tables defence (no ``stage``) draws :func:`diagnostics_figure` beside the report.
    """
    stage_name = f"chains/{stage or model.tag}"

    def run_chains():
        inputs = torch.cat(list(groups.values()))
        started = time.perf_counter()
        samples = sample(context, model, inputs, **overrides)
        seconds = time.perf_counter() - started
        idata = thin_coordinates(to_inference_data(samples))
        bounds, start = {}, 0
        for name, x in groups.items():
            bounds[name] = slice(start, start + len(x))
            start += len(x)
        started = time.perf_counter()
        summaries = {name: summarize(idata.isel(point=span)) for name, span in bounds.items()}
        diagnostics_seconds = time.perf_counter() - started
        thin = max(1, samples.z.shape[1] // NETCDF_MAX_DRAWS)
        saved = idata.isel(draw=slice(None, None, thin))
        with warnings.catch_warnings():  # a group of our own beside ArviZ's standard ones
            warnings.filterwarnings("ignore", message=".*point_diagnostics.*")
            saved.add_groups(point_diagnostics=group_diagnostics(summaries))
        save_netcdf(saved, context.run_dir.path(f"{stage_name}.nc"))
        mean_z = samples.z.mean(1)  # posterior mean of the kept draws, per chain
        return {"final_z": {name: samples.final_z[:, span].cpu() for name, span in bounds.items()},
                "mean_z": {name: mean_z[:, span].cpu() for name, span in bounds.items()},
                "diagnostics": {name: scalar_fields(summary) for name, summary in summaries.items()},
                "diagnostics_per_group": {
                    name: {site: asdict(per_site) for site, per_site in summary.sites.items()}
                    for name, summary in summaries.items()} if len(model.vae.latent_sites) > 1 else None,
                "seconds_per_point": seconds / len(inputs),
                "diagnostics_seconds": diagnostics_seconds,
                "gradient_evaluations_per_point": gradient_evaluations_per_point(samples),
                "num_transitions": samples.config.num_warmup + samples.config.num_samples,
                "num_warmup": samples.config.num_warmup, "step_size": samples.config.step_size,
                "sampler_config": asdict(samples.config),
                "final_step_size_mean": float(samples.step_size.mean())}

    result = context.timed("defence", lambda: context.run_dir.stage(
        f"{stage_name}.pt", run_chains, code=("inference", THIS), after=after,
        identity=f"{model.identity} {sorted(overrides.items())}"))
    if stage is None and not figure_path(context, model).exists():  # the tables defence
        diagnostics_figure(context.run_dir.path(f"{stage_name}.nc"), figure_path(context, model))
    return result


def attack_groups(context: RunContext, x_ref: torch.Tensor, attacks: dict,
                  radii=None, *, clean: bool = True) -> dict:
    """``clean`` (the references, unless ``clean=False``) and ``<attack>@<radius>`` for every
    attack and radius (default: the profile's), each flattened to (N·R, C, H, W) in
    reference-major order."""
    radii = context.profile.radii if radii is None else radii
    groups = {"clean": x_ref} if clean else {}
    for name, entry in attacks.items():
        for k, radius in enumerate(radii):
            groups[f"{name}@{radius:g}"] = entry["adversarial"][k].flatten(0, 1)
    return groups
