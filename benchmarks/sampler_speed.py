"""Sampler speed: batched kernels against stock Pyro on a ColorMNIST-sized conv decoder.

Throughput is points × transitions per second for
  (a) the batched kernel (``inference.BatchedHMC``/``BatchedNUTS`` in ``pyro.infer.MCMC``, as
      ``inference.sample_posterior`` runs it; one chain per point, the paper's adaptation),
  (b) stock ``pyro.infer.mcmc.HMC``/``NUTS`` with one chain per point: a few points are timed and
      the per-point time is extrapolated to N (the table says so),
  (c) stock Pyro with all N points packed in one plate: one chain, one step size and ONE
      accept/reject for all N·D latents (the authors' way; not a per-point sampler).
Times are steady-state seconds per transition (set-up excluded, see ``transition_stamps``).
Overhead = (time per transition) / (calls × one bare batched value-and-grad call), calls = L + 1
for HMC and lockstep leapfrog steps + 1 for NUTS; see ``time_batched`` for the two ways the
bare call is timed.

The model is the ColorMNIST ``pyro_vae.ConvVAE`` (PROTOCOL.md §3, 64-d latent -> 3×28×28) with
random weights and a fixed random x in [0, 1]: the cost per point does not depend on the weights.

    python -m benchmarks.sampler_speed            # N ∈ {50, 500}, L = 20
    python -m benchmarks.sampler_speed --quick    # N = 50, fewer transitions
"""

from __future__ import annotations

import argparse
import os
import time

import pyro
import torch
from pyro.infer import MCMC
from pyro.infer.mcmc import HMC, NUTS

from inference import BatchedHMC, BatchedNUTS, PosteriorTarget, StepSizeAdaptation, initial_latents
from pyro_vae import ConvVAE, VAEConfig

IMAGE_SHAPE = (3, 28, 28)


def random_colour_vae(device: torch.device, seed: int = 0) -> ConvVAE:
    """The ColorMNIST VAE of PROTOCOL.md §3 with random weights: timing needs its shapes only."""
    torch.manual_seed(seed)
    return ConvVAE(VAEConfig(num_channels=3)).to(device).eval().requires_grad_(False)


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TimedValueAndGrad:
    """A target's bare batched value-and-grad, with the wall time of every call recorded."""

    def __init__(self, target: PosteriorTarget):
        self.target = target
        self.calls: list[tuple[float, float]] = []

    def __call__(self, z):
        start = time.perf_counter()
        result = self.target.value_and_grad(z)
        synchronize(z.device)
        self.calls.append((start, time.perf_counter()))
        return result

    def mean_duration(self, begin: float, end: float) -> float:
        inside = [b - a for a, b in self.calls if begin <= a and b <= end]
        return sum(inside) / len(inside)

    def fastest(self, z, repeats: int) -> float:
        """Fastest of ``repeats`` calls on their own, outside any sampler."""
        for _ in range(repeats):
            self(z)
        return min(b - a for a, b in self.calls[-repeats:])


def transition_stamps(kernel, z0, num_transitions: int, *model_args) -> torch.Tensor:
    """End times of ``num_transitions + 1`` transitions through ``pyro.infer.MCMC``; their
    differences are steady-state transition times (set-up and the first transition excluded,
    driver overhead included). Shape: (num_transitions + 1,)."""
    stamps = []

    def stamp(*_):
        synchronize(z0.device)
        stamps.append(time.perf_counter())

    mcmc = MCMC(kernel, num_samples=num_transitions + 1, warmup_steps=0, initial_params={"z": z0},
                disable_progbar=True, hook_fn=stamp)
    mcmc.run(*model_args)
    return torch.tensor(stamps, dtype=torch.float64)


def time_batched(vae, x, sampler: str, args) -> tuple[float, float, float]:
    """Batched kernel: mean seconds per transition and two overheads, both the median over
    transitions of time / (calls × one value-and-grad), calls = L + 1 for HMC and lockstep
    leapfrog steps + 1 for NUTS (every chain waits for the transition's deepest tree). The
    first overhead takes the mean duration of the calls made inside that same transition (same
    CPU load on both sides); the second the fastest of a few calls on their own (conservative
    on a loaded CPU)."""
    target = TimedValueAndGrad(PosteriorTarget(vae.model, (x,)))
    z0 = initial_latents(vae.guide, (x,), num_chains=1, generator=torch.Generator(x.device).manual_seed(0))
    options = dict(step_size=args.step_size, adaptation=StepSizeAdaptation("paper", continue_after_warmup=True),
                   generator=torch.Generator(x.device).manual_seed(0))
    if sampler == "hmc":
        kernel = BatchedHMC(potential_fn=target, num_leapfrog_steps=args.num_leapfrog_steps, **options)
    else:
        kernel = BatchedNUTS(potential_fn=target, max_tree_depth=args.max_tree_depth, **options)
    stamps = transition_stamps(kernel, z0, args.num_transitions)
    times = stamps.diff()
    if sampler == "hmc":
        calls = torch.full_like(times, args.num_leapfrog_steps + 1)
    else:
        depth = kernel.diagnostics()["samples"].tree_depth[1:]  # the timed transitions
        calls = 2 ** depth.amax(dim=(1, 2)).double()
    in_run = torch.tensor([target.mean_duration(a, b) for a, b in zip(stamps[:-1].tolist(), stamps[1:].tolist())],
                          dtype=torch.float64)
    fastest = target.fastest(z0, repeats=max(3, args.num_leapfrog_steps // 4))
    return (float(times.mean()), float((times / (calls * in_run)).median()),
            float((times / (calls * fastest)).median()))


def stock_kernel(vae, sampler: str, args):
    options = dict(step_size=args.step_size, adapt_step_size=False, adapt_mass_matrix=False)
    if sampler == "nuts":
        return NUTS(vae.model, max_tree_depth=args.max_tree_depth, **options)
    return HMC(vae.model, num_steps=args.num_leapfrog_steps, **options)


def time_stock(vae, x, sampler: str, args) -> float:
    """Seconds per transition of one stock Pyro chain on all of x (one plate)."""
    z0 = initial_latents(vae.guide, (x,), init="mean")[0]
    return float(transition_stamps(stock_kernel(vae, sampler, args), z0, args.num_transitions, x).diff().mean())


def benchmark(num_points: int, sampler: str, args, device) -> list[tuple]:
    vae = random_colour_vae(device)
    x = torch.rand((num_points,) + IMAGE_SHAPE, generator=torch.Generator().manual_seed(1)).to(device)
    with pyro.validation_enabled(False):
        per_transition, overhead, overhead_vs_fastest = time_batched(vae, x, sampler, args)
        timed = min(args.timed_points, num_points)
        per_point = sum(time_stock(vae, x[n : n + 1], sampler, args) for n in range(timed)) / timed
        packed = time_stock(vae, x, sampler, args)
    stock_rate = 1.0 / per_point
    rows = [
        (num_points, f"batched {sampler}", per_transition, num_points / per_transition,
         num_points / per_transition / stock_rate, overhead, overhead_vs_fastest),
        (num_points, f"stock {sampler}, 1 chain/point (timed {timed}, extrapolated)",
         per_point * num_points, stock_rate, 1.0, None, None),
        (num_points, f"stock {sampler}, all points in 1 plate (shared accept)",
         packed, num_points / packed, num_points / packed / stock_rate, None, None),
    ]
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-points", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--num-transitions", type=int, default=3)
    parser.add_argument("--num-leapfrog-steps", type=int, default=20)
    parser.add_argument("--step-size", type=float, default=0.05)
    parser.add_argument("--max-tree-depth", type=int, default=5,
                        help="NUTS depth cap (kept small: every lockstep level doubles the cost)")
    parser.add_argument("--samplers", nargs="+", default=["hmc", "nuts"], choices=["hmc", "nuts"])
    parser.add_argument("--timed-points", type=int, default=3,
                        help="points timed for stock Pyro one-chain-per-point")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 by default: on a shared CPU, 2 OpenMP threads stall "
                             "each other and make small batches up to 10x slower")
    parser.add_argument("--quick", action="store_true", help="N = 50, 2 transitions, L = 5")
    args = parser.parse_args(argv)
    if args.quick:
        args.num_points, args.num_transitions, args.num_leapfrog_steps = [50], 2, 5
        args.max_tree_depth, args.timed_points = 3, 2
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)

    print(f"device={device} threads={torch.get_num_threads()} L={args.num_leapfrog_steps} "
          f"T={args.num_transitions} η={args.step_size} NUTS max depth={args.max_tree_depth} "
          f"load average={os.getloadavg()[0]:.2f}")
    header = (f"{'N':>5}  {'method':<58} {'s/transition':>12} {'points·trans/s':>15} {'vs stock/pt':>11} "
              f"{'overhead':>8} {'vs fastest':>10}")
    print(header)
    print("-" * len(header))
    for sampler in args.samplers:
        for num_points in args.num_points:
            for n, name, per_transition, rate, speedup, overhead, vs_fastest in benchmark(
                num_points, sampler, args, device
            ):
                overheads = f"{overhead:8.3f} {vs_fastest:10.3f}" if overhead is not None else ""
                print(f"{n:>5}  {name:<58} {per_transition:12.3f} {rate:15.1f} {speedup:10.1f}x {overheads}",
                      flush=True)
    print(f"load average at the end={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
