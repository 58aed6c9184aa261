"""Per-chain step-size adaptation: the paper's multiplicative rule and dual averaging.

Every chain (every point × chain) carries its own step size. The authors' code adapted one
step size shared by a whole batch on the batch-mean acceptance and never froze it
(PROTOCOL.md §10); here the rule is applied chain by chain, and whether it keeps running after
warm-up is a recorded choice (``continue_after_warmup``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor

ADAPT_KINDS = ("paper", "dual_averaging")


@dataclass(frozen=True)
class StepSizeAdaptation:
    """How step sizes are adapted.

    kind:
        ``"paper"``: η_t = η_{t−1} + rate·(α_{t−1} − target)/target·η_{t−1} (PROTOCOL.md §7,
        paper Section 3; rate 0.01, target 0.9), α the chain's own acceptance probability.
        ``"dual_averaging"``: Nesterov dual averaging of log η (Hoffman & Gelman 2014, Alg. 5),
        with the averaged iterate used once warm-up ends.
    continue_after_warmup:
        False (default): step sizes are frozen after warm-up, so kept draws come from one
        fixed Markov kernel. True: keep adapting, as the paper's code did.
    """

    kind: Literal["paper", "dual_averaging"] = "paper"
    target_accept: float = 0.9
    continue_after_warmup: bool = False
    rate: float = 0.01
    gamma: float = 0.05
    t0: float = 10.0
    kappa: float = 0.75
    min_step_size: float = 1e-8
    max_step_size: float = 1e3

    def __post_init__(self):
        if self.kind not in ADAPT_KINDS:
            raise ValueError(f"adaptation kind must be one of {ADAPT_KINDS}, got {self.kind!r}")
        if not 0.0 < self.target_accept < 1.0:
            raise ValueError(f"target_accept must be in (0, 1), got {self.target_accept}")


class AdaptState(NamedTuple):
    """Adaptation state; every field has the batch shape (*B) of the chains.

    ``step_size`` is the value the next transition uses. The remaining fields are the dual
    averaging statistics (unused by the paper's rule): the shrinkage point μ = log(10 η₀), the
    running mean of (target − α), the averaged log step size, and the iteration count.
    """

    step_size: Tensor
    mu: Tensor
    error_avg: Tensor
    log_step_avg: Tensor
    count: Tensor


def adapt_init(step_size: Tensor) -> AdaptState:
    """Start adaptation from the initial step sizes. Shape: step_size (*B)."""
    zeros = torch.zeros_like(step_size)
    return AdaptState(step_size, torch.log(10.0 * step_size), zeros, zeros, zeros)


def adapt_update(config: StepSizeAdaptation, state: AdaptState, accept_prob: Tensor) -> AdaptState:
    """One adaptation step from each chain's acceptance statistic α (NaN counts as 0).

    Shape: accept_prob (*B); the state keeps shape (*B).
    """
    alpha = torch.nan_to_num(accept_prob, nan=0.0).clamp(0.0, 1.0)
    if config.kind == "paper":
        step = state.step_size * (1.0 + config.rate * (alpha - config.target_accept) / config.target_accept)
        return state._replace(step_size=step.clamp(config.min_step_size, config.max_step_size))
    count = state.count + 1
    weight = 1.0 / (count + config.t0)
    error_avg = (1.0 - weight) * state.error_avg + weight * (config.target_accept - alpha)
    log_step = state.mu - count.sqrt() / config.gamma * error_avg
    log_step = log_step.clamp(math.log(config.min_step_size), math.log(config.max_step_size))
    avg_weight = count.pow(-config.kappa)
    log_step_avg = (1.0 - avg_weight) * state.log_step_avg + avg_weight * log_step
    return AdaptState(log_step.exp(), state.mu, error_avg, log_step_avg, count)


def adapt_end_warmup(config: StepSizeAdaptation, state: AdaptState) -> AdaptState:
    """Step sizes for the kept draws: dual averaging switches to its averaged iterate.

    Chains that never adapted (count 0) keep their step size.
    """
    if config.kind != "dual_averaging":
        return state
    averaged = torch.where(state.count > 0, state.log_step_avg.exp(), state.step_size)
    return state._replace(step_size=averaged)
