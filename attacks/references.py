"""Stratified choice of the reference points to attack (PROTOCOL.md §6, paper Table 8).

The paper attacks 50 test points, 5 per class; ColorMNIST is stratified by digit and colour
jointly (the authors' code did not stratify it, PROTOCOL.md §10).
"""

from __future__ import annotations

import torch
from torch import Tensor


def stratified_references(labels: Tensor, *, generator: torch.Generator,
                          per_class: int | None = None, total: int | None = None) -> Tensor:
    """Indices of a random sample with equal numbers from every stratum, reproducible by seed.

    A stratum is a distinct label value, or for labels (N, k) a distinct row (e.g. digit ×
    colour). Give exactly one of ``per_class`` (that many from every stratum) or ``total``.
    With ``total`` and one label column, each stratum gets ``total // S`` and ``total % S``
    strata, chosen at random, one more. With two columns (digit, colour) both margins are
    balanced instead: every value of the first column gets ``total // K₁`` points (the
    remainder to random values), and the second-column values are dealt to them cyclically in a
    random order, so each second-column value gets ``total // K₂`` or one more and a first-column
    value never repeats a second-column value before using them all (ColorMNIST, 50 points:
    5 per digit in 5 distinct colours, 7 or 8 per colour). The result is grouped by stratum (in
    sorted label order), random within each stratum.

    Shape:
        labels: (N,) or (N, k) → indices: (M,) int64, M = per_class·S or total

    Raises:
        ValueError: neither or both counts given, a negative count, or a stratum too small.
    """
    if (per_class is None) == (total is None):
        raise ValueError("give exactly one of per_class= or total=")
    if labels.dim() not in (1, 2) or labels.shape[0] == 0:
        raise ValueError(f"labels must be (N,) or (N, k) with N > 0, got {tuple(labels.shape)}")
    strata, stratum_of = torch.unique(labels.cpu(), dim=0, return_inverse=True)
    num_strata = strata.shape[0]
    sizes = torch.bincount(stratum_of, minlength=num_strata)
    if per_class is not None:
        if per_class < 0:
            raise ValueError(f"per_class must be >= 0, got {per_class}")
        quota = torch.full((num_strata,), per_class)
    else:
        if total < 0:
            raise ValueError(f"total must be >= 0, got {total}")
        quota = (_balanced_margins(strata, total, generator) if strata.dim() == 2
                 and strata.shape[1] == 2 else _even_quota(num_strata, total, generator))
    short = (sizes < quota).nonzero().flatten()
    if short.numel():
        first = short[0].item()
        raise ValueError(f"stratum {strata[first].tolist()} has {sizes[first].item()} points, "
                         f"fewer than the {quota[first].item()} requested")

    # Shuffle, then stable-sort by stratum: each stratum's members stay in random order, and
    # its first `quota` members are a uniform sample without replacement.
    shuffled = torch.randperm(labels.shape[0], generator=generator, device=generator.device).cpu()
    by_stratum = torch.sort(stratum_of[shuffled], stable=True)
    members = shuffled[by_stratum.indices]
    starts = torch.cumsum(sizes, 0) - sizes
    rank = torch.arange(labels.shape[0]) - starts[by_stratum.values]
    return members[rank < quota[by_stratum.values]].to(labels.device)


def _even_quota(num_strata: int, total: int, generator: torch.Generator) -> Tensor:
    """``total`` points over ``num_strata`` strata, the remainder to random strata."""
    quota = torch.full((num_strata,), total // num_strata)
    lucky = torch.randperm(num_strata, generator=generator, device=generator.device).cpu()
    quota[lucky[: total % num_strata]] += 1
    return quota


def _balanced_margins(strata: Tensor, total: int, generator: torch.Generator) -> Tensor:
    """Quota per (first, second) stratum with both margins balanced (see the caller).

    Shape:
        strata: (S, 2) distinct label pairs, sorted → (S,) counts summing to ``total``
    """
    firsts, seconds = strata[:, 0].unique(), strata[:, 1].unique()
    per_first = _even_quota(len(firsts), total, generator)
    order = seconds[torch.randperm(len(seconds), generator=generator,
                                   device=generator.device).cpu()]
    dealt = order[torch.arange(total) % len(seconds)]  # the second-column values, cyclically
    first_of = firsts.repeat_interleave(per_first)
    quota = torch.zeros(strata.shape[0], dtype=torch.long)
    for first, second in zip(first_of.tolist(), dealt.tolist()):
        match = ((strata[:, 0] == first) & (strata[:, 1] == second)).nonzero().flatten()
        if match.numel() == 0:
            raise ValueError(f"no point has labels {[first, second]}; cannot balance both margins")
        quota[match[0]] += 1
    return quota
