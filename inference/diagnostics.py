"""Convergence diagnostics through ArviZ: InferenceData, per-point R-hat and ESS, a summary,
and atomic NetCDF export. (The authors' code kept only the last state and computed none of
these, PROTOCOL.md §10.)

A run over several latent sites (a hierarchical model's groups, sampled jointly as one flat z)
keeps one posterior variable per site, so every group is diagnosed on its own
(:func:`summarize_sites`) and the run's summary is the worst over the groups.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import arviz as az
import numpy as np
import xarray as xr

from inference.api import PosteriorSamples


def _attrs(samples: PosteriorSamples) -> dict:
    # NetCDF attributes take strings and numbers only.
    attrs = {}
    for key, value in dataclasses.asdict(samples.config).items():
        if value is None:
            value = "none"
        elif isinstance(value, bool):
            value = int(value)
        elif isinstance(value, tuple):  # several latent sites
            value = ",".join(value)
        attrs[key] = value
    return attrs


def _posterior(samples: PosteriorSamples) -> tuple[dict, dict, dict]:
    """Posterior variables, their dims and coordinates: one variable named after the latent
    site with dims (point, latent), or with several sites one per site with dims
    (point, <site>_latent) holding that site's columns of the flat z."""
    z = samples.z.detach().cpu().numpy()
    coords = {"point": np.arange(z.shape[2])}
    layout = samples.layout
    if layout is None or len(layout.sites) == 1:
        site = samples.config.latent_site if layout is None else layout.sites[0]
        coords["latent"] = np.arange(z.shape[3])
        return {site: z}, {site: ["point", "latent"]}, coords
    variables, dims = {}, {}
    for site, columns in layout.slices.items():
        variables[site] = z[..., columns]
        dims[site] = ["point", f"{site}_latent"]
        coords[f"{site}_latent"] = np.arange(columns.stop - columns.start)
    return variables, dims, coords


def to_inference_data(samples: PosteriorSamples) -> az.InferenceData:
    """ArviZ InferenceData of one run.

    Groups: ``posterior`` with the latent (named after the latent site, ``z`` by default) of
    dims (chain, draw, point, latent), or with several latent sites one variable per site of
    dims (chain, draw, point, <site>_latent); ``sample_stats`` (and ``warmup_sample_stats`` when
    there was a warm-up) with every recorded statistic of dims (chain, draw, point). The run's
    config is stored in the posterior group's attributes.
    """
    posterior, dims, coords = _posterior(samples)
    stats = {k: v.detach().cpu().numpy() for k, v in samples.sample_stats.items()}
    warmup = {k: v.detach().cpu().numpy() for k, v in samples.warmup_stats.items()}
    dims |= {k: ["point"] for k in set(stats) | set(warmup)}
    idata = az.from_dict(
        posterior=posterior,
        sample_stats=stats or None,
        warmup_sample_stats=warmup or None,
        save_warmup=bool(warmup),
        coords=coords,
        dims=dims,
    )
    idata.posterior.attrs.update(_attrs(samples))
    return idata


def convergence(idata: az.InferenceData, var_name: str = "z") -> xr.Dataset:
    """Rank-normalised split R-hat and bulk/tail ESS of every (point, latent) coordinate of
    one posterior variable.

    Needs ≥ 2 chains per point. Returns a Dataset with ``rhat``, ``ess_bulk``, ``ess_tail`` of
    the variable's dims less (chain, draw): (point, latent), or (point, <site>_latent) for one
    site of a multi-site run.

    A coordinate whose draws are all equal, in every chain (chains started at one point that
    never accepted a move), gets R-hat = inf and ESS = 0: ArviZ divides 0 by 0 there and returns
    R-hat NaN, which a max over coordinates would skip, and ESS = the number of draws.
    """
    posterior = idata.posterior[[var_name]]
    if posterior.sizes["chain"] < 2:
        raise ValueError("R-hat needs at least 2 chains per point; run with num_chains >= 2")
    draws = posterior[var_name]
    frozen = draws.max(("chain", "draw")) == draws.min(("chain", "draw"))
    with np.errstate(divide="ignore", invalid="ignore"):  # zero variances are handled here
        return xr.Dataset(
            {
                "rhat": az.rhat(posterior)[var_name].where(~frozen, np.inf),
                "ess_bulk": az.ess(posterior, method="bulk")[var_name].where(~frozen, 0.0),
                "ess_tail": az.ess(posterior, method="tail")[var_name].where(~frozen, 0.0),
            }
        )


@dataclass(frozen=True)
class SiteSummary:
    """Worst-case convergence figures of one latent site (group), over points and coordinates."""

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float


@dataclass(frozen=True)
class DiagnosticsSummary:
    """Worst-case convergence figures of a run (over all points, latent sites and coordinates),
    the per-point worst R-hat / smallest bulk ESS (shape (N,)), and the same worst cases per
    latent site (``sites``: one entry per posterior variable, e.g. every group of a hierarchical
    model)."""

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    mean_accept_prob: float
    num_divergent: int
    rhat_per_point: np.ndarray
    ess_bulk_per_point: np.ndarray
    sites: dict[str, SiteSummary]


def _var_names(idata: az.InferenceData, var_name: str | Sequence[str] | None) -> list[str]:
    if var_name is None:
        return list(idata.posterior.data_vars)
    return [var_name] if isinstance(var_name, str) else list(var_name)


def _per_point(conv: xr.Dataset, name: str, reduce: str) -> xr.DataArray:
    """Reduce a convergence figure over every dim but ``point``."""
    values = conv[name]
    return getattr(values, reduce)([dim for dim in values.dims if dim != "point"])


def summarize_sites(idata: az.InferenceData,
                    var_name: str | Sequence[str] | None = None) -> dict[str, SiteSummary]:
    """Per latent site (default: every posterior variable, i.e. every group of a multi-site run):
    its worst R-hat and smallest bulk and tail ESS over points and coordinates (the ``sites`` of
    :func:`summarize`)."""
    return summarize(idata, var_name).sites


def summarize(idata: az.InferenceData,
              var_name: str | Sequence[str] | None = None) -> DiagnosticsSummary:
    """Summary of :func:`convergence` over the posterior variable(s) (default: all of them, the
    one latent of a flat model or every site of a hierarchical one; the worst over them, and each
    one's own in ``sites``) and of the kept draws' sample stats. R-hat and ESS are computed once
    per variable."""
    convs = {name: convergence(idata, name) for name in _var_names(idata, var_name)}
    sites = {name: SiteSummary(max_rhat=float(conv["rhat"].max()),
                               min_ess_bulk=float(conv["ess_bulk"].min()),
                               min_ess_tail=float(conv["ess_tail"].min()))
             for name, conv in convs.items()}
    stats = idata.sample_stats
    accept = stats["acceptance_rate"] if "acceptance_rate" in stats else stats.get("accepted")
    rhat_per_point = np.max([_per_point(conv, "rhat", "max").values for conv in convs.values()], axis=0)
    ess_per_point = np.min([_per_point(conv, "ess_bulk", "min").values for conv in convs.values()],
                           axis=0)
    return DiagnosticsSummary(
        max_rhat=max(site.max_rhat for site in sites.values()),
        min_ess_bulk=min(site.min_ess_bulk for site in sites.values()),
        min_ess_tail=min(site.min_ess_tail for site in sites.values()),
        mean_accept_prob=float(accept.astype(float).mean()) if accept is not None else float("nan"),
        num_divergent=int(stats["diverging"].sum()),
        rhat_per_point=rhat_per_point,
        ess_bulk_per_point=ess_per_point,
        sites=sites,
    )


def save_netcdf(idata: az.InferenceData, path: str | os.PathLike) -> Path:
    """Write ``idata`` to NetCDF atomically: a temporary file in the same folder, then
    ``os.replace``, so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        idata.to_netcdf(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
