"""Reference path: stock ``pyro.infer.mcmc.HMC``/``NUTS`` through ``pyro.infer.MCMC``, one
chain per point, to check the batched kernels against. Slow (a Python loop over chains ×
points), so for small N only.

Differences from the batched kernels that come from stock Pyro, not from us: step sizes adapt
by Pyro's dual averaging (after its own "reasonable step size" search) during warm-up only; HMC
keeps the trajectory length η₀·L fixed, so the number of leapfrog steps changes with the adapted
step size; randomness comes from Pyro's global RNG, seeded per chain from the run's seed and
restored afterwards. ``mass_matrix="windowed"`` is Pyro's own windowed diagonal mass-matrix
adaptation (its default), ``"identity"`` turns it off.
"""

from __future__ import annotations

import torch
from pyro.infer import MCMC
from pyro.infer.mcmc import HMC, NUTS
from pyro.util import set_rng_seed
from torch import Tensor


def _row(value, point: int):
    return value[point : point + 1] if torch.is_tensor(value) else value


def run_stock_pyro(model, model_args: tuple, z0: Tensor, config, model_kwargs: dict | None = None):
    """Run one stock Pyro chain for every (chain, point) of z0.

    Shape:
        z0 (C, N, D) -> (draws (C, S, N, D), final step sizes (C, N), sample_stats, warmup_stats)
        with stats ``step_size`` and ``diverging`` of shape (C, T, N).
    """
    num_chains, num_points, _ = z0.shape
    site = config.latent_site
    draws = torch.empty((num_chains, config.num_samples) + z0.shape[1:], dtype=z0.dtype, device=z0.device)
    final_step = torch.empty(z0.shape[:2], dtype=z0.dtype, device=z0.device)
    total = config.num_warmup + config.num_samples
    step_trace = torch.empty((num_chains, total, num_points), dtype=z0.dtype)
    diverging = torch.zeros((num_chains, config.num_samples, num_points), dtype=torch.bool)

    with torch.random.fork_rng(devices=[z0.device] if z0.is_cuda else []):
        for chain in range(num_chains):
            for point in range(num_points):
                set_rng_seed((config.seed + chain * num_points + point) % 2**32)
                options = dict(step_size=config.step_size, adapt_step_size=config.adapt is not None,
                               adapt_mass_matrix=config.mass_matrix == "windowed")
                if config.target_accept is not None:
                    options["target_accept_prob"] = config.target_accept
                if config.sampler == "pyro_nuts":
                    kernel = NUTS(model, max_tree_depth=config.max_tree_depth, **options)
                else:
                    kernel = HMC(model, num_steps=config.num_leapfrog_steps, **options)
                steps = []
                mcmc = MCMC(
                    kernel, num_samples=config.num_samples, warmup_steps=config.num_warmup,
                    initial_params={site: z0[chain, point : point + 1]}, disable_progbar=True,
                    hook_fn=lambda k, *_: steps.append(k.step_size),
                )
                mcmc.run(*(_row(a, point) for a in model_args),
                         **{k: _row(v, point) for k, v in (model_kwargs or {}).items()})
                draws[chain, :, point] = mcmc.get_samples()[site][:, 0]
                final_step[chain, point] = kernel.step_size
                step_trace[chain, :, point] = torch.tensor(steps, dtype=z0.dtype)
                divergent_draws = mcmc.diagnostics()["divergences"]["chain 0"]
                diverging[chain, divergent_draws, point] = True

    def stats(steps: Tensor, divergent: Tensor | None) -> dict[str, Tensor]:
        out = {"step_size": steps.to(z0.device)}
        if divergent is not None:
            out["diverging"] = divergent.to(z0.device)
        return out

    warmup = stats(step_trace[:, : config.num_warmup], None) if config.num_warmup else {}
    return draws, final_step, stats(step_trace[:, config.num_warmup :], diverging), warmup
