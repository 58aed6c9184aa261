"""Convergence diagnostics through ArviZ: InferenceData, per-point R-hat and ESS, a summary,
and atomic NetCDF export. (The authors' code kept only the last state and computed none of
these, PROTOCOL.md §10.)"""

from __future__ import annotations

import dataclasses
import os
import tempfile
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
        attrs[key] = value
    return attrs


def to_inference_data(samples: PosteriorSamples) -> az.InferenceData:
    """ArviZ InferenceData of one run.

    Groups: ``posterior`` with the latent (named after the latent site, ``z`` by default) of
    dims (chain, draw, point, latent); ``sample_stats`` (and ``warmup_sample_stats`` when there
    was a warm-up) with every recorded statistic of dims (chain, draw, point). The run's config
    is stored in the posterior group's attributes.
    """
    site = samples.config.latent_site
    num_points, latent_dim = samples.z.shape[2:]
    stats = {k: v.detach().cpu().numpy() for k, v in samples.sample_stats.items()}
    warmup = {k: v.detach().cpu().numpy() for k, v in samples.warmup_stats.items()}
    dims = {site: ["point", "latent"], **{k: ["point"] for k in set(stats) | set(warmup)}}
    idata = az.from_dict(
        posterior={site: samples.z.detach().cpu().numpy()},
        sample_stats=stats or None,
        warmup_sample_stats=warmup or None,
        save_warmup=bool(warmup),
        coords={"point": np.arange(num_points), "latent": np.arange(latent_dim)},
        dims=dims,
    )
    idata.posterior.attrs.update(_attrs(samples))
    return idata


def convergence(idata: az.InferenceData, var_name: str = "z") -> xr.Dataset:
    """Rank-normalised split R-hat and bulk/tail ESS of every (point, latent) coordinate.

    Needs ≥ 2 chains per point. Returns a Dataset with ``rhat``, ``ess_bulk``, ``ess_tail`` of
    dims (point, latent).
    """
    posterior = idata.posterior[[var_name]]
    if posterior.sizes["chain"] < 2:
        raise ValueError("R-hat needs at least 2 chains per point; run with num_chains >= 2")
    return xr.Dataset(
        {
            "rhat": az.rhat(posterior)[var_name],
            "ess_bulk": az.ess(posterior, method="bulk")[var_name],
            "ess_tail": az.ess(posterior, method="tail")[var_name],
        }
    )


@dataclass(frozen=True)
class DiagnosticsSummary:
    """Worst-case convergence figures of a run (over all points and latent coordinates), and
    the per-point worst R-hat / smallest bulk ESS (shape (N,))."""

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    mean_accept_prob: float
    num_divergent: int
    rhat_per_point: np.ndarray
    ess_bulk_per_point: np.ndarray


def summarize(idata: az.InferenceData, var_name: str = "z") -> DiagnosticsSummary:
    """Summary of :func:`convergence` and of the kept draws' sample stats."""
    conv = convergence(idata, var_name)
    stats = idata.sample_stats
    accept = stats["acceptance_rate"] if "acceptance_rate" in stats else stats.get("accepted")
    return DiagnosticsSummary(
        max_rhat=float(conv["rhat"].max()),
        min_ess_bulk=float(conv["ess_bulk"].min()),
        min_ess_tail=float(conv["ess_tail"].min()),
        mean_accept_prob=float(accept.astype(float).mean()) if accept is not None else float("nan"),
        num_divergent=int(stats["diverging"].sum()),
        rhat_per_point=conv["rhat"].max("latent").values,
        ess_bulk_per_point=conv["ess_bulk"].min("latent").values,
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
