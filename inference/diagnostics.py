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
import scipy.fft
import scipy.special
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


# ---------------------------------------------------------------------------------------------
# Rank-normalised split R-hat and bulk / tail ESS (Vehtari et al. 2021) as ArviZ defines them,
# vectorised over every coordinate at once. ArviZ's az.rhat / az.ess loop in Python over the
# (point, latent) coordinates: 1,050 points × 64 coordinates took about ten minutes on one core,
# longer than the defence it diagnoses. These functions take draws (chains C, draws S, columns K)
# and return one value per column, equal to ArviZ's to rounding (tests/inference/test_diagnostics).

MIN_DRAWS = 4  # ArviZ's minimum for split R-hat and ESS: fewer kept draws give NaN
EBFMI_THRESHOLD = 0.3  # E-BFMI below this flags a chain (Betancourt 2016; Stan, ArviZ)


def _split_chains(draws: np.ndarray) -> np.ndarray:
    """(K, C, S) -> (K, 2C, S // 2): first and last halves as separate chains (the middle draw
    of an odd S dropped)."""
    half = draws.shape[2] // 2
    return np.concatenate([draws[..., :half], draws[..., draws.shape[2] - half:]], axis=1)


def _average_ranks(rows: np.ndarray) -> np.ndarray:
    """1-based ranks within each row, ties sharing their average rank (scipy's ``rankdata``
    "average", whose per-row overhead dominated; MCMC draws tie wherever a move was rejected)."""
    count = rows.shape[1]
    order = np.argsort(rows, axis=1, kind="stable")
    ordered = np.take_along_axis(rows, order, axis=1)
    starts = np.ones(ordered.shape, dtype=bool)
    starts[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    ends = np.ones(ordered.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    position = np.arange(count)
    first = np.maximum.accumulate(np.where(starts, position, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends, position, count - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty(ordered.shape)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=1)
    return ranks


def _z_scale(draws: np.ndarray) -> np.ndarray:
    """Rank-normalise each column over all its chains and draws (average ranks for ties, Blom's
    offset 3/8) to standard-normal quantiles. Shape: (K, C, S)."""
    columns, chains, num = draws.shape
    ranks = _average_ranks(draws.reshape(columns, chains * num))
    return scipy.special.ndtri((ranks - 0.375) / (chains * num + 0.25)).reshape(draws.shape)


def _rhat_columns(draws: np.ndarray) -> np.ndarray:
    """Classic R-hat of each column of (K, C, S) draws."""
    num = draws.shape[2]
    between = num * draws.mean(axis=2).var(axis=1, ddof=1)
    within = draws.var(axis=2, ddof=1).mean(axis=1)
    return np.sqrt((between / within + num - 1) / num)


def _autocovariance(draws: np.ndarray) -> np.ndarray:
    """Autocovariance of every column and chain along the draws (biased, divided by S)."""
    num = draws.shape[2]
    size = scipy.fft.next_fast_len(2 * num)
    centred = draws - draws.mean(axis=2, keepdims=True)
    spectrum = scipy.fft.rfft(centred, n=size, axis=2)
    return scipy.fft.irfft(spectrum * np.conjugate(spectrum), n=size, axis=2)[..., :num] / num


def _ess_columns(draws: np.ndarray) -> np.ndarray:
    """ESS of each column of (K, C, S) draws: multi-chain autocorrelations truncated by Geyer's
    initial positive sequence and made monotone (ArviZ's ``_ess``, one column at a time there)."""
    columns, chains, num = draws.shape
    acov = _autocovariance(draws)
    mean_var = acov[..., 0].mean(axis=1) * num / (num - 1.0)
    var_plus = mean_var * (num - 1.0) / num
    if chains > 1:
        var_plus = var_plus + draws.mean(axis=2).var(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (1.0 - (mean_var[:, None] - acov.mean(axis=1)) / var_plus[:, None]).T  # (S, K)
    rho[0] = 1.0
    last = max((num - 3) // 2, 0)  # the last pair index Geyer's loop may reach
    pairs = rho[0:2 * last + 2:2] + rho[1:2 * last + 2:2]  # P_j = ρ_2j + ρ_2j+1, j = 0..last
    stops = ~(pairs[:last] > 0)  # the loop goes on past pair j while P_j > 0 (NaN stops it)
    count = (np.where(stops.any(axis=0), stops.argmax(axis=0), last) if last
             else np.zeros(columns, dtype=int))  # J: pairs 0..J-1 kept
    monotone = np.minimum.accumulate(pairs[:last], axis=0)  # initial monotone sequence
    kept = np.where(np.arange(last)[:, None] < count, monotone, 0.0).sum(axis=0)
    end = rho[2 * count, np.arange(columns)]  # ρ_2J, added once when positive or its pair ≥ 0
    end_pair = pairs[count, np.arange(columns)]
    tail = np.where(count == 0, 1.0, np.where((end > 0) | (end_pair >= 0), end, 0.0))
    tau = np.maximum(-1.0 + 2.0 * kept + tail, 1.0 / np.log10(chains * num))
    ess = chains * num / tau
    constant = draws.max(axis=(1, 2)) - draws.min(axis=(1, 2)) < np.finfo(float).resolution
    return np.where(constant, float(chains * num), ess)


def rank_diagnostics(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-normalised split R-hat (the larger of bulk and folded), bulk ESS and tail ESS (the
    smaller of the 5 % and 95 % quantile ESS) of every column, as ArviZ's ``rhat`` and ``ess``
    (methods "rank", "bulk", "tail") compute them, for all columns at once.

    Columns with a non-finite draw, or fewer than 4 draws, get NaN (R-hat also with < 2 chains).

    Shape: draws (C, S, K) -> three (K,) arrays.
    """
    chains, num, columns = np.shape(draws)
    nan = np.full(columns, np.nan)
    if num < MIN_DRAWS:
        return nan, nan.copy(), nan.copy()
    draws = np.asarray(draws)
    if not np.issubdtype(draws.dtype, np.floating):
        draws = draws.astype(np.float64)
    # the draws' own precision until the ranks, as ArviZ: folding |x - median| in float32 ties
    # values that float64 would tell apart, and ties change the ranks
    draws = np.ascontiguousarray(draws.transpose(2, 0, 1))
    finite = np.isfinite(draws).all(axis=(1, 2))
    safe = np.where(finite[:, None, None], draws, 0.0)
    split = _split_chains(safe)
    with np.errstate(divide="ignore", invalid="ignore"):
        if chains >= 2:
            median = np.median(split.reshape(columns, -1), axis=1)
            folded = np.abs(split - median[:, None, None])
            bulk, tail = _rhat_columns(_z_scale(split)), _rhat_columns(_z_scale(folded))
            # ArviZ's max(bulk, tail): the tail only where it is larger, so chains stuck at two
            # values (bulk inf, folded draws all equal: tail 0/0) give inf, not NaN
            rhat = np.where(tail > bulk, tail, bulk)
        else:
            rhat = nan
        ess_bulk = _ess_columns(_z_scale(split))
        flat = safe.reshape(columns, chains * num)
        ess_tail = np.minimum(*(
            _ess_columns(_split_chains(
                (safe <= np.quantile(flat, prob, axis=1)[:, None, None]).astype(float)))
            for prob in (0.05, 0.95)))
    return (np.where(finite, rhat, np.nan), np.where(finite, ess_bulk, np.nan),
            np.where(finite, ess_tail, np.nan))


def nested_rhat(draws: np.ndarray, superchain_ids: Sequence[int]) -> np.ndarray:
    """Nested R-hat (Margossian, Hoffman, Sountsov, Riou-Durand, Vehtari, Gelman 2024, eq. 6–8;
    the definition of the ``posterior`` R package's ``rhat_nested``) of every column.

    Superchains are groups of chains started from one state (``superchain_ids[c]``: chain c's
    group; every group the same size M). With the superchain means' variance B̂ and the mean over
    superchains of (between-chain variance within the superchain + mean within-chain variance)
    Ŵ, R̂ν = √(1 + B̂ / Ŵ). No splitting and no rank normalisation (as the reference). NaN when
    there are fewer than two superchains or they differ in size; a column with Ŵ = 0 gets inf
    (or NaN when B̂ = 0 too).

    Shape: draws (C, S, K), superchain_ids (C,) -> (K,)
    """
    draws = np.asarray(draws, dtype=np.float64)
    chains, num, columns = draws.shape
    ids = np.asarray(superchain_ids)
    if ids.shape != (chains,):
        raise ValueError(f"superchain_ids must have one entry per chain ({chains}), got {ids.shape}")
    labels, sizes = np.unique(ids, return_counts=True)
    if len(labels) < 2 or sizes.min() != sizes.max():
        return np.full(columns, np.nan)
    grouped = draws[np.argsort(ids, kind="stable")].reshape(len(labels), sizes[0], num, columns)
    chain_mean = grouped.mean(axis=2)  # (superchains, M, K)
    within_chain = grouped.var(axis=2, ddof=1).mean(axis=1) if num > 1 else 0.0
    between_chain = chain_mean.var(axis=1, ddof=1) if sizes[0] > 1 else 0.0
    between_superchain = chain_mean.mean(axis=1).var(axis=0, ddof=1)
    within_superchain = np.mean(within_chain + between_chain, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(1.0 + between_superchain / within_superchain)


def _draws(idata: az.InferenceData, var_name: str) -> tuple[xr.DataArray, np.ndarray]:
    """The variable's draws and their (C, S, K) array, K = every non-(chain, draw) coordinate."""
    posterior = idata.posterior[var_name]
    rest = [dim for dim in posterior.dims if dim not in ("chain", "draw")]
    values = posterior.transpose("chain", "draw", *rest).values
    return posterior, values.reshape(values.shape[0], values.shape[1], -1)


def convergence(idata: az.InferenceData, var_name: str = "z") -> xr.Dataset:
    """Rank-normalised split R-hat and bulk/tail ESS of every (point, latent) coordinate of
    one posterior variable (:func:`rank_diagnostics`: ArviZ's definitions, vectorised).

    Each point is its own posterior: R-hat compares the chains of one point, coordinate by
    coordinate. Needs ≥ 2 chains per point. Returns a Dataset with ``rhat``, ``ess_bulk``,
    ``ess_tail`` of the variable's dims less (chain, draw): (point, latent), or
    (point, <site>_latent) for one site of a multi-site run.

    A coordinate whose draws are all equal, in every chain (chains started at one point that
    never accepted a move), gets R-hat = inf and ESS = 0: the formulas divide 0 by 0 there (R-hat
    NaN, which a max over coordinates would skip) and ArviZ's ESS is the number of draws. A
    coordinate with a non-finite draw gets NaN everywhere.
    """
    posterior, draws = _draws(idata, var_name)
    if draws.shape[0] < 2:
        raise ValueError("R-hat needs at least 2 chains per point; run with num_chains >= 2")
    rhat, ess_bulk, ess_tail = rank_diagnostics(draws)
    frozen = draws.max(axis=(0, 1)) == draws.min(axis=(0, 1))
    template = posterior.isel(chain=0, draw=0, drop=True)

    def wrap(values, frozen_value):
        values = np.where(frozen, frozen_value, values)
        return template.copy(data=values.reshape(template.shape))

    return xr.Dataset({"rhat": wrap(rhat, np.inf), "ess_bulk": wrap(ess_bulk, 0.0),
                       "ess_tail": wrap(ess_tail, 0.0)})


@dataclass(frozen=True)
class SiteSummary:
    """Worst-case convergence figures of one latent site (group), over points and coordinates."""

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float


@dataclass(frozen=True)
class DiagnosticsSummary:
    """Convergence figures of a run (or of one input group of it): many short chains, one
    posterior per point.

    Worst cases over all points, latent sites and coordinates (``max_rhat``, ``min_ess_*``; NaN
    when any coordinate's figure is NaN — never skipped), and the distribution over points of
    each point's worst coordinate: R-hat median / 90th percentile (max: ``max_rhat``), nested
    R-hat median / 90th percentile / max, bulk and tail ESS median / 10th percentile (min:
    ``min_ess_*``), bulk ESS per 1,000 potential-and-gradient evaluations median / 10th
    percentile / min. Percentiles are order statistics (no interpolation), taken on the worse
    side (the higher for R-hat, the lower for ESS), so an inf or NaN is not averaged away.

    R-hat of the log joint log p(x, z) (the ``lp`` stat, Stan's ``lp__``) per point: median /
    90th percentile / max. Beside the coordinates' R-hat it says why chains disagree: a high
    lp R-hat means the chains sit at different densities (a chain in a worse mode, or not yet
    burnt in); coordinates' R-hat high with lp R-hat near 1 means they sit at different places
    of equal density (a wide or multimodal posterior that the chains have not crossed).

    E-BFMI per chain and point (ArviZ ``bfmi`` on the ``energy`` stat): median, 10th
    percentile, min and the fraction of chains below :data:`EBFMI_THRESHOLD` (a chain whose
    E-BFMI is undefined counts as below). Divergences (ΔH > 1000 or a non-finite energy, as
    Stan and NumPyro define them): ``num_divergent`` and ``divergence_rate``, the fraction of
    kept (post-warm-up) transitions. ``mean_accept_prob``: over kept transitions.

    Figures a sampler does not record are None: E-BFMI without ``energy`` (MAP, the stock-Pyro
    references), lp R-hat without ``lp``, ESS per gradient without ``n_grad_evals``; nested R-hat where no superchains
    are known (see :func:`summarize`). ``chains_per_superchain`` says how nested R-hat grouped
    the chains. The per-point arrays (shape (N,); E-BFMI (C, N)) back the distributions;
    ``sites`` has the worst cases per latent site (every group of a hierarchical model).
    """

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    mean_accept_prob: float
    num_divergent: int
    rhat_per_point: np.ndarray
    ess_bulk_per_point: np.ndarray
    sites: dict[str, SiteSummary]
    rhat_median: float = float("nan")
    rhat_p90: float = float("nan")
    nested_rhat_median: float | None = None
    nested_rhat_p90: float | None = None
    nested_rhat_max: float | None = None
    chains_per_superchain: int | None = None
    ess_bulk_median: float = float("nan")
    ess_bulk_p10: float = float("nan")
    ess_tail_median: float = float("nan")
    ess_tail_p10: float = float("nan")
    ess_bulk_per_1k_grad_median: float | None = None
    ess_bulk_per_1k_grad_p10: float | None = None
    ess_bulk_per_1k_grad_min: float | None = None
    ebfmi_median: float | None = None
    ebfmi_p10: float | None = None
    ebfmi_min: float | None = None
    ebfmi_fraction_low: float | None = None
    lp_rhat_median: float | None = None
    lp_rhat_p90: float | None = None
    lp_rhat_max: float | None = None
    divergence_rate: float = float("nan")
    ess_tail_per_point: np.ndarray | None = None
    nested_rhat_per_point: np.ndarray | None = None
    ess_bulk_per_1k_grad_per_point: np.ndarray | None = None
    ebfmi_per_chain: np.ndarray | None = None
    lp_rhat_per_point: np.ndarray | None = None

    def __str__(self) -> str:
        """A few lines for a reader: the distributions over points, no per-point arrays."""
        points = len(self.rhat_per_point)
        lines = [
            f"{points} points; per point, worst coordinate: R-hat median {self.rhat_median:.3f}, "
            f"p90 {self.rhat_p90:.3f}, max {self.max_rhat:.3f}",
            f"bulk ESS median {self.ess_bulk_median:.1f}, p10 {self.ess_bulk_p10:.1f}, "
            f"min {self.min_ess_bulk:.1f}; tail ESS median {self.ess_tail_median:.1f}, "
            f"min {self.min_ess_tail:.1f}",
            f"acceptance {self.mean_accept_prob:.3f}; divergent {self.num_divergent} "
            f"({self.divergence_rate:.2%} of kept transitions)"]
        if self.lp_rhat_median is not None:
            lines.append(f"R-hat of log p(x, z) median {self.lp_rhat_median:.3f}, "
                         f"p90 {self.lp_rhat_p90:.3f}")
        if self.nested_rhat_median is not None:
            lines.append(f"nested R-hat ({self.chains_per_superchain} chains per superchain) "
                         f"median {self.nested_rhat_median:.3f}, p90 {self.nested_rhat_p90:.3f}")
        if self.ess_bulk_per_1k_grad_median is not None:
            lines.append(f"bulk ESS per 1,000 gradient evaluations median "
                         f"{self.ess_bulk_per_1k_grad_median:.2f}, "
                         f"p10 {self.ess_bulk_per_1k_grad_p10:.2f}")
        if self.ebfmi_median is not None:
            lines.append(f"E-BFMI median {self.ebfmi_median:.2f}, min {self.ebfmi_min:.2f}, "
                         f"{self.ebfmi_fraction_low:.0%} of chains below {EBFMI_THRESHOLD}")
        return "\n".join(lines)


def _var_names(idata: az.InferenceData, var_name: str | Sequence[str] | None) -> list[str]:
    if var_name is None:
        return list(idata.posterior.data_vars)
    return [var_name] if isinstance(var_name, str) else list(var_name)


def _per_point(values: xr.DataArray, reduce: str) -> np.ndarray:
    """Reduce a figure over every dim but ``point``, NaN-propagating (xarray skips NaN)."""
    return getattr(values, reduce)([dim for dim in values.dims if dim != "point"],
                                   skipna=False).values


def _quantile(values: np.ndarray, q: float, worse: str) -> float:
    """Order-statistic quantile rounded to the worse side ("higher" or "lower"); NaN if any is."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0 or np.isnan(values).any():
        return float("nan")
    return float(np.quantile(values, q, method=worse))


def _optional(values: np.ndarray | None, q: float, worse: str) -> float | None:
    return None if values is None else _quantile(values, q, worse)


def default_superchains(idata: az.InferenceData) -> np.ndarray | None:
    """Chain → superchain (chains started from one state) as the run's ``init`` attribute tells:
    every chain drew its own start z₀ ~ q(z|x) (``init="sample"``, the defence's default), so
    each chain is a superchain of one (nested R-hat then is the unsplit R-hat bounded below by
    1, Margossian et al. 2024, footnote 3); with a shared start (``"mean"``, given latents) a
    point's chains form one superchain, too few for nested R-hat, or the grouping is unknown:
    None."""
    if idata.posterior.attrs.get("init") == "sample":
        return np.arange(idata.posterior.sizes["chain"])
    return None


def _gradient_evaluations(idata: az.InferenceData) -> np.ndarray | None:
    """Potential-and-gradient evaluations per point over all its chains, warm-up and the initial
    state included (= ``PosteriorSamples.num_grad_evals.sum(0)``); None when not recorded."""
    stats = idata.sample_stats
    if "n_grad_evals" not in stats:
        return None
    total = stats["n_grad_evals"].sum(("chain", "draw")).values.astype(np.float64)
    warmup = getattr(idata, "warmup_sample_stats", None)
    if warmup is not None and "n_grad_evals" in warmup:
        total = total + warmup["n_grad_evals"].sum(("chain", "draw")).values
    return total + stats.sizes["chain"]


def _ebfmi(idata: az.InferenceData) -> np.ndarray | None:
    """ArviZ E-BFMI of every chain of every point, (C, N); None without an ``energy`` stat."""
    stats = idata.sample_stats
    if "energy" not in stats or stats.sizes["draw"] < 2:
        return None
    energy = stats["energy"].transpose("chain", "point", "draw").values.astype(np.float64)
    chains, points, draws = energy.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(az.bfmi(energy.reshape(chains * points, draws))).reshape(chains, points)


def _lp_rhat(idata: az.InferenceData) -> np.ndarray | None:
    """Split R-hat of each point's log joint over its chains, (N,) (NaN as for the coordinates:
    a non-finite lp, too few draws); None without an ``lp`` stat."""
    stats = idata.sample_stats
    if "lp" not in stats:
        return None
    lp = stats["lp"].transpose("chain", "draw", "point").values.astype(np.float64)
    return rank_diagnostics(lp)[0]


def summarize_sites(idata: az.InferenceData,
                    var_name: str | Sequence[str] | None = None) -> dict[str, SiteSummary]:
    """Per latent site (default: every posterior variable, i.e. every group of a multi-site run):
    its worst R-hat and smallest bulk and tail ESS over points and coordinates (the ``sites`` of
    :func:`summarize`)."""
    return summarize(idata, var_name).sites


def summarize(idata: az.InferenceData, var_name: str | Sequence[str] | None = None, *,
              superchain_ids: Sequence[int] | None = None) -> DiagnosticsSummary:
    """Summary of :func:`convergence` over the posterior variable(s) (default: all of them, the
    one latent of a flat model or every site of a hierarchical one; the worst over them, and each
    one's own in ``sites``) and of the kept draws' sample stats (see
    :class:`DiagnosticsSummary`). R-hat and ESS are computed once per variable, vectorised over
    points and coordinates.

    Nested R-hat is reported per point (its worst coordinate over all sites) when superchains
    are known: ``superchain_ids`` (chain → superchain, the same for every point), or by default
    :func:`default_superchains` — with the defence's independent starts every chain is its own
    superchain; with a shared start (oracle start, encoder mean) it is not reported (None).
    """
    names = _var_names(idata, var_name)
    convs = {name: convergence(idata, name) for name in names}
    sites = {name: SiteSummary(max_rhat=float(conv["rhat"].max(skipna=False)),
                               min_ess_bulk=float(conv["ess_bulk"].min(skipna=False)),
                               min_ess_tail=float(conv["ess_tail"].min(skipna=False)))
             for name, conv in convs.items()}
    stats = idata.sample_stats
    accept = stats["acceptance_rate"] if "acceptance_rate" in stats else stats.get("accepted")

    def worst(name, reduce):
        per_site = [_per_point(conv[name], reduce) for conv in convs.values()]
        return (np.max if reduce == "max" else np.min)(per_site, axis=0)

    rhat, ess_bulk, ess_tail = worst("rhat", "max"), worst("ess_bulk", "min"), worst("ess_tail", "min")
    superchains = default_superchains(idata) if superchain_ids is None else np.asarray(superchain_ids)
    nested = None
    if superchains is not None and len(np.unique(superchains)) >= 2:
        per_site = []
        for name in names:
            posterior, draws = _draws(idata, name)
            values = nested_rhat(draws, superchains).reshape(posterior.shape[2:])
            frozen = (draws.max(axis=(0, 1)) == draws.min(axis=(0, 1))).reshape(values.shape)
            values = np.where(frozen, np.inf, values)
            per_site.append(values.reshape(values.shape[0], -1).max(axis=1))
        nested = np.max(per_site, axis=0)
    evaluations = _gradient_evaluations(idata)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_gradient = None if evaluations is None else 1000.0 * ess_bulk / evaluations
    ebfmi = _ebfmi(idata)
    lp_rhat = _lp_rhat(idata)
    diverging = stats["diverging"]
    return DiagnosticsSummary(
        max_rhat=max((site.max_rhat for site in sites.values()), key=_nan_first),
        min_ess_bulk=min((site.min_ess_bulk for site in sites.values()), key=_nan_first_low),
        min_ess_tail=min((site.min_ess_tail for site in sites.values()), key=_nan_first_low),
        mean_accept_prob=float(accept.astype(float).mean()) if accept is not None else float("nan"),
        num_divergent=int(diverging.sum()),
        rhat_per_point=rhat,
        ess_bulk_per_point=ess_bulk,
        sites=sites,
        rhat_median=_quantile(rhat, 0.5, "higher"),
        rhat_p90=_quantile(rhat, 0.9, "higher"),
        nested_rhat_median=_optional(nested, 0.5, "higher"),
        nested_rhat_p90=_optional(nested, 0.9, "higher"),
        nested_rhat_max=_optional(nested, 1.0, "higher"),
        chains_per_superchain=None if nested is None else int(
            np.unique(superchains, return_counts=True)[1][0]),
        ess_bulk_median=_quantile(ess_bulk, 0.5, "lower"),
        ess_bulk_p10=_quantile(ess_bulk, 0.1, "lower"),
        ess_tail_median=_quantile(ess_tail, 0.5, "lower"),
        ess_tail_p10=_quantile(ess_tail, 0.1, "lower"),
        ess_bulk_per_1k_grad_median=_optional(per_gradient, 0.5, "lower"),
        ess_bulk_per_1k_grad_p10=_optional(per_gradient, 0.1, "lower"),
        ess_bulk_per_1k_grad_min=_optional(per_gradient, 0.0, "lower"),
        ebfmi_median=_optional(ebfmi, 0.5, "lower"),
        ebfmi_p10=_optional(ebfmi, 0.1, "lower"),
        ebfmi_min=_optional(ebfmi, 0.0, "lower"),
        ebfmi_fraction_low=None if ebfmi is None else float((~(ebfmi >= EBFMI_THRESHOLD)).mean()),
        lp_rhat_median=_optional(lp_rhat, 0.5, "higher"),
        lp_rhat_p90=_optional(lp_rhat, 0.9, "higher"),
        lp_rhat_max=_optional(lp_rhat, 1.0, "higher"),
        divergence_rate=float(diverging.astype(float).mean()),
        ess_tail_per_point=ess_tail,
        nested_rhat_per_point=nested,
        ess_bulk_per_1k_grad_per_point=per_gradient,
        ebfmi_per_chain=ebfmi,
        lp_rhat_per_point=lp_rhat,
    )


def _nan_first(value: float) -> float:
    """Key for max(): NaN ranks above everything, so the worst case is never a skipped NaN."""
    return np.inf if np.isnan(value) else value


def _nan_first_low(value: float) -> float:
    return -np.inf if np.isnan(value) else value


def point_diagnostics(summary: DiagnosticsSummary) -> xr.Dataset:
    """The summary's per-point figures as a Dataset (dims ``point``; E-BFMI (chain, point)), the
    form the defence stores beside the chains in the NetCDF."""
    variables = {"rhat": ("point", summary.rhat_per_point),
                 "ess_bulk": ("point", summary.ess_bulk_per_point)}
    optional = {"ess_tail": summary.ess_tail_per_point,
                "nested_rhat": summary.nested_rhat_per_point,
                "ess_bulk_per_1k_grad": summary.ess_bulk_per_1k_grad_per_point,
                "lp_rhat": summary.lp_rhat_per_point}
    variables |= {name: ("point", values) for name, values in optional.items() if values is not None}
    if summary.ebfmi_per_chain is not None:
        variables["ebfmi"] = (("chain", "point"), summary.ebfmi_per_chain)
    return xr.Dataset(variables)


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
