"""The report's figures as PNG: examples (Figure 3), posterior ratio (Figure 2), time (Figure 6), the
experiments' curves and bars, and the chains' lp traces."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pyro_vae.checkpoint import atomic_path  # noqa: E402

ROW_TITLES = {"x_r": "$x_r$", "recon_x_r": r"$\tilde{x}_r$", "x_a": "$x_a$",
              "recon_x_a": r"$\tilde{x}_a$", "recon_x_a_defended": r"$\tilde{x}_a$ + MCMC"}


def _save(figure, path: Path) -> Path:
    """Atomic PNG write."""
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    finally:
        plt.close(figure)
    return path


def example_grid(rows: dict, radius: float, path: Path) -> Path:
    """Rows x_r, x̃_r, x_a, x̃_a, x̃_a after the defence; columns are references."""
    count = len(next(iter(rows.values())))
    figure, axes = plt.subplots(len(rows), count, figsize=(1.2 * count, 1.3 * len(rows)),
                                squeeze=False)
    for i, (name, images) in enumerate(rows.items()):
        for j in range(count):
            image = images[j].permute(1, 2, 0).clamp(0, 1).numpy()
            axes[i, j].imshow(image.squeeze(-1) if image.shape[-1] == 1 else image,
                              cmap="gray", vmin=0, vmax=1)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
        axes[i, 0].set_ylabel(ROW_TITLES.get(name, name), rotation=0, ha="right", va="center")
    figure.suptitle(f"Unsupervised SKL attack, radius {radius:g}")
    return _save(figure, path)


def posterior_ratio_histogram(ratio: dict, path: Path) -> Path:
    """Two histograms of eq. 11 with the KS p-value in the title (paper Figure 2)."""
    figure, axis = plt.subplots(figsize=(5, 3.2))
    without, with_mcmc = np.asarray(ratio["without_defence"]), np.asarray(ratio["with_defence"])
    bins = np.histogram_bin_edges(np.concatenate([without, with_mcmc]), bins=30)
    axis.hist(without, bins=bins, alpha=0.6, label="$z_2 = z_a$ (no defence)")
    axis.hist(with_mcmc, bins=bins, alpha=0.6, label="$z_2 = z_a$ after MCMC")
    axis.set_xlabel(r"$\log p(z_r | x_r) - \log p(z_2 | x_r)$")
    axis.set_ylabel("attacks")
    axis.legend(fontsize=8)
    axis.set_title(f"radius {ratio['radius']:g}; KS p = {ratio['ks_pvalue']:.3g}", fontsize=9)
    return _save(figure, path)


def robustness_over_time(curve: dict, path: Path) -> Path:
    """MS-SSIM against seconds per point (paper Figure 6), labelled with T."""
    points = curve["curve"]
    seconds = [p["seconds_per_point"] for p in points]
    scores = [p["ms_ssim"][0] for p in points]
    errors = [p["ms_ssim"][1] for p in points]
    figure, axis = plt.subplots(figsize=(5, 3.2))
    axis.errorbar(seconds, scores, yerr=errors, marker="o", capsize=3)
    for p in points:
        axis.annotate(f"T={p['transitions']}", (p["seconds_per_point"], p["ms_ssim"][0]),
                      textcoords="offset points", xytext=(4, -10), fontsize=8)
    axis.set_xlabel("seconds per point")
    axis.set_ylabel("MS-SSIM$[\\tilde{x}_r, \\tilde{x}_a]$")
    axis.set_title(f"Robustness versus time, radius {curve['radius']:g}", fontsize=9)
    return _save(figure, path)


def gradient_budget_curve(rows: list[dict], path: Path, *, radius: float) -> Path:
    """Defended MS-SSIM against gradient evaluations per input, one line per sampler."""
    figure, axis = plt.subplots(figsize=(5.5, 3.4))
    baseline = next(row for row in rows if row["sampler"] is None)
    axis.axhline(baseline["ms_ssim"][0], color="grey", linestyle=":", label="no defence")
    series: dict[str, list[dict]] = {}
    for row in rows:
        if row["sampler"] is not None:
            kind = row["label"].split(" T=")[0].replace(" budget", "")
            series.setdefault(kind, []).append(row)
    for kind, members in series.items():
        members = sorted(members, key=lambda row: row["gradient_evaluations_per_point"])
        axis.errorbar([row["gradient_evaluations_per_point"] for row in members],
                      [row["ms_ssim"][0] for row in members],
                      yerr=[row["ms_ssim"][1] for row in members], marker="o", capsize=2,
                      label=kind)
    axis.set_xscale("log")
    axis.set_xlabel("potential-gradient evaluations per chain and input")
    axis.set_ylabel("MS-SSIM$[\\tilde{x}_r, \\tilde{x}_a]$ (paper variant)")
    axis.set_title(f"Robustness per gradient evaluation, radius {radius:g}", fontsize=9)
    axis.legend(fontsize=7)
    return _save(figure, path)


def curves(series: dict[str, list[tuple[float, float, float]]], path: Path, *, xlabel: str,
           ylabel: str, title: str, log_x: bool = False) -> Path:
    """One line with standard-error bars per series: label → [(x, mean, standard error)]."""
    figure, axis = plt.subplots(figsize=(5.5, 3.4))
    for label, points in series.items():
        xs, means, errors = zip(*points)
        axis.errorbar(xs, means, yerr=errors, marker="o", capsize=3, label=label)
    if log_x:
        axis.set_xscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=8)
    return _save(figure, path)


def grouped_bars(groups: dict[str, dict[str, tuple[float, float]]], path: Path, *, ylabel: str,
                 title: str) -> Path:
    """Bars with standard-error whiskers: group (x tick) → bar label → (mean, standard error)."""
    names = list(groups)
    labels = list(dict.fromkeys(label for bars in groups.values() for label in bars))
    width = 0.8 / len(labels)
    figure, axis = plt.subplots(figsize=(max(5.5, 0.9 * len(names)), 3.4))
    for i, label in enumerate(labels):
        xs = [j + (i - (len(labels) - 1) / 2) * width for j, name in enumerate(names)
              if label in groups[name]]
        values = [groups[name][label] for name in names if label in groups[name]]
        axis.bar(xs, [v[0] for v in values], width, yerr=[v[1] for v in values], capsize=2,
                 label=label)
    axis.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=8)
    return _save(figure, path)


def lp_traces(traces: dict[str, list[dict]], path: Path) -> Path:
    """lp, the log density of the coordinates the chains move (log p(x, z); log p(x, ε) where a
    hierarchical model's groups are non-centred), against the transition, one panel per point
    and one line per chain:
    warm-up faint and dashed, kept draws solid. ``traces``: input group (a row) → points, each
    {"point", "rhat", "warmup": (C, W) or None, "kept": (C, S)}."""
    rows, columns = len(traces), max(len(points) for points in traces.values())
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.0 * rows), squeeze=False)
    for i, (group, points) in enumerate(traces.items()):
        for j in range(columns):
            axis = axes[i, j]
            if j >= len(points):
                axis.set_axis_off()
                continue
            entry = points[j]
            kept = np.asarray(entry["kept"])
            offset = 0 if entry["warmup"] is None else np.asarray(entry["warmup"]).shape[1]
            for chain in range(kept.shape[0]):
                color = f"C{chain % 10}"
                if offset:
                    axis.plot(np.arange(offset), entry["warmup"][chain], color=color, alpha=0.4,
                              linestyle="--", linewidth=0.8)
                axis.plot(offset + np.arange(kept.shape[1]), kept[chain], color=color, linewidth=0.8)
            if offset:
                axis.axvline(offset - 0.5, color="grey", linewidth=0.6, linestyle=":")
            axis.set_title(f"{group}, point {entry['point']}, R-hat {entry['rhat']:.3g}", fontsize=7)
            axis.tick_params(labelsize=6)
        axes[i, 0].set_ylabel("lp", fontsize=7)
    for axis in axes[-1]:
        axis.set_xlabel("draw (saved, thinned)", fontsize=7)
    figure.suptitle("Chains' lp per input group: highest, median and lowest R-hat point", fontsize=9)
    figure.tight_layout()
    return _save(figure, path)
