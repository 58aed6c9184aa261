"""The one projected-gradient loop every attack runs (paper Appendix D.2, PROTOCOL.md §6).

δ₀ = 0.2·ξ with ξ ~ N(0, I), projected into the ball and box before the first gradient (the
authors stepped from an unprojected start, PROTOCOL.md §10); then, 50 times,
δ ← δ + lr·∇_δ Σ_b objective_b(x_r + δ) with lr 1 (plain SGD ascent), followed by the projection
x_a = clamp(x_r + clamp(δ, −ε, ε), 0, 1), δ = x_a − x_r. All references × restarts form one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyro
import torch
from torch import Tensor

from .objectives import Objective
from .threat import check_images, check_radius, project


STEP_RULES = ("gradient", "sign")


@dataclass(frozen=True)
class PGDConfig:
    """Optimiser settings; the defaults are the paper's (Appendix D.2, Table 8).

    ``step``: ``"gradient"`` (the paper's plain SGD ascent, δ ← δ + lr·∇) or ``"sign"`` (the
    L∞ steepest ascent of Madry et al. 2018, δ ← δ + lr·ε·sign(∇), whose step does not depend on
    the objective's scale: what an adaptive attacker, whose objectives differ in scale by orders
    of magnitude, should use; lr = 2.5 / num_steps is Madry's choice).
    """

    num_steps: int = 50
    learning_rate: float = 1.0
    init_scale: float = 0.2
    restarts: int = 10
    step: str = "gradient"

    def __post_init__(self) -> None:
        if self.num_steps < 0:
            raise ValueError(f"num_steps must be >= 0, got {self.num_steps}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not self.init_scale >= 0:
            raise ValueError(f"init_scale must be >= 0, got {self.init_scale}")
        if self.restarts < 1:
            raise ValueError(f"restarts must be >= 1, got {self.restarts}")
        if self.step not in STEP_RULES:
            raise ValueError(f"step must be one of {STEP_RULES}, got {self.step!r}")


@dataclass(frozen=True, eq=False)
class AttackResult:
    """Adversarial inputs and objective values for every radius, reference and restart.

    ``success`` is set for objectives that define it (the classifier attack) and None otherwise.
    Restart r of reference n for radius ``radii[k]`` is ``adversarial[k, n, r]``.

    Shape:
        adversarial: (K, N, R, C, H, W);  objective: (K, N, R);  success: (K, N, R) bool or None
    """

    radii: tuple[float, ...]
    adversarial: Tensor
    objective: Tensor
    success: Tensor | None


def draw_start_noise(x_ref: Tensor, *, restarts: int, generator: torch.Generator) -> Tensor:
    """Standard-normal start noise ξ, one draw per reference and restart, from ``generator``.

    Drawn on the generator's device and moved to x_ref's, so a seed gives the same starts on CPU
    and GPU. Slicing the result along N gives each reference's own starts, which is how a
    one-at-a-time run reproduces a batched one.

    Shape:
        x_ref: (N, C, H, W) → (N, R, C, H, W)
    """
    shape = (x_ref.shape[0], restarts, *x_ref.shape[1:])
    noise = torch.randn(shape, generator=generator, device=generator.device, dtype=x_ref.dtype)
    return noise.to(x_ref.device)


def _ascend(value: Callable[[Tensor], Tensor], x_ref: Tensor, delta: Tensor, *, radius: float,
            config: PGDConfig) -> Tensor:
    """Run the projected SGD ascent from perturbation ``delta``; returns the final x_adv."""
    x_adv = project(x_ref, delta, radius=radius)
    # A zero radius admits only x_ref itself, so its steps would be pure cost.
    for _ in range(config.num_steps if radius > 0 else 0):
        x_adv = x_adv.detach().requires_grad_(True)
        # Rows are independent examples: the gradient of the sum is each row's own gradient.
        (gradient,) = torch.autograd.grad(value(x_adv).sum(), x_adv)
        if config.step == "sign":
            gradient = radius * gradient.sign()
        x_adv = project(x_ref, x_adv.detach() - x_ref + config.learning_rate * gradient,
                        radius=radius)
    return x_adv.detach()


def pgd_attack(objective: Objective, x_ref: Tensor, *, radii: Sequence[float],
               config: PGDConfig = PGDConfig(), generator: torch.Generator | None = None,
               start_noise: Tensor | None = None) -> AttackResult:
    """Attack N references with ``config.restarts`` random starts each, for every radius.

    Give exactly one source of randomness: ``generator`` (the start noise is drawn from it with
    :func:`draw_start_noise`) or ``start_noise`` itself. Every radius starts from the same noise.
    The model should be in eval mode; its parameters receive no gradients.

    Shape:
        x_ref: (N, C, H, W) in [0, 1];  start_noise: (N, R, C, H, W)
        → AttackResult with adversarial (K, N, R, C, H, W) for K radii

    Raises:
        ValueError: a radius outside [0, 1] or NaN, no radii, inputs outside [0, 1], or a
            missing, doubled or mis-shaped source of randomness.
    """
    check_images(x_ref, name="x_ref")
    if isinstance(radii, (int, float, Tensor)):
        raise ValueError(f"radii must be a sequence of radii, e.g. [0.1, 0.2], got {radii!r}")
    radii = tuple(check_radius(radius) for radius in radii)
    if not radii:
        raise ValueError("give at least one attack radius")
    restarts = config.restarts
    if (generator is None) == (start_noise is None):
        raise ValueError("give exactly one of generator= or start_noise=")
    if start_noise is None:
        start_noise = draw_start_noise(x_ref, restarts=restarts, generator=generator)
    expected = (x_ref.shape[0], restarts, *x_ref.shape[1:])
    if tuple(start_noise.shape) != expected:
        raise ValueError(f"start_noise must have shape {expected}, got {tuple(start_noise.shape)}")

    flat_ref = x_ref.repeat_interleave(restarts, dim=0)
    delta = config.init_scale * start_noise.reshape(flat_ref.shape).to(flat_ref)
    bound = objective.bind(x_ref, restarts=restarts)
    adversarial, values, successes = [], [], []
    # x_ref was checked above and projection keeps every iterate in [0, 1], so Pyro's per-call
    # argument checks (which synchronise with the device) would only slow the loop down.
    with torch.enable_grad(), pyro.validation_enabled(False):
        for radius in radii:
            x_adv = _ascend(bound.value, flat_ref, delta, radius=radius, config=config)
            with torch.no_grad():
                values.append(bound.value(x_adv))
                if bound.success is not None:
                    successes.append(bound.success(x_adv))
            adversarial.append(x_adv)

    def stack(per_radius: list[Tensor]) -> Tensor:
        return torch.stack(per_radius).reshape(len(radii), x_ref.shape[0], restarts,
                                               *per_radius[0].shape[1:])

    return AttackResult(radii=radii, adversarial=stack(adversarial), objective=stack(values),
                        success=stack(successes) if successes else None)
