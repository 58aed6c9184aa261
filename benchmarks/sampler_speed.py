"""Sampler speed: batched kernels against stock Pyro and against a bare loop on the decoder.

Section ``stock``: throughput in points × transitions per second for
  (a) the batched kernel (``inference.BatchedHMC``/``BatchedNUTS`` in ``pyro.infer.MCMC``, as
      ``inference.sample_posterior`` runs it; one chain per point, the paper's adaptation),
  (b) stock ``pyro.infer.mcmc.HMC``/``NUTS`` with one chain per point: a few points are timed and
      the per-point time is extrapolated to N (the table says so),
  (c) stock Pyro with all N points packed in one plate: one chain, one step size and ONE
      accept/reject for all N·D latents (the authors' way; not a per-point sampler).
Times are steady-state seconds per transition (set-up excluded, see ``transition_stamps``).
For the batched kernels: ``grad use`` = gradients used / computed (NUTS evaluates only the
chains still extending their trees, so 1.0 unless a chain is evaluated idle), ``overhead`` =
time per transition / time inside its value-and-grad calls, ``vs fastest`` = time per
transition / (used evaluations / N × the fastest full-batch value-and-grad call on its own).

Section ``bare``: ``inference.sample_posterior(sampler="hmc")`` end to end (encoder start, set-up,
T transitions of L leapfrog steps, the paper's adaptation, default jitter) against the same
algorithm written directly against the decoder in plain torch autograd (:func:`bare_hmc`: one
chain per point, same N, T, L, η₀, accept/reject and adaptation), interleaved, best of
``--bare-repeats``. Two bare loops: one evaluates the likelihood with the model's own expression
(``torch.distributions.Bernoulli(probs).log_prob``), so its ratio is what sample_posterior adds
(Pyro, the sampler, set-up); the other with x·log p + (1 − x)·log(1 − p), the same density with
fewer kernels, so its ratio also contains the model's choice of formula. Two ratios per bare loop:
best against best, and the median over repeats of the ratio within one repeat (each repeat runs
the three one after the other, so a load change between repeats cancels in its own ratio).

Section ``calls``: where sample_posterior's time goes. Building the target
(``inference.PosteriorTarget``: the structure trace, recording the value-and-gradient program,
its check), and the seconds per value-and-grad call of (a) that program, (b) the model run under
the Pyro handler with ``autograd.grad`` (``compile=False``), (c) :func:`bare_potential` with the
model's Bernoulli expression, each timed over a block of ``--block-calls`` consecutive calls
along a gradient path, the three blocks alternating, ``--bare-repeats`` times.

Section ``layout``: what storing the weights channels-last (NHWC; the benchmarks' frozen models,
``benchmarks.stages.models.frozen``) buys:
seconds per call of the compiled target's value-and-grad (the decoder's latent gradient, every
MCMC step) and of the encoder's input gradient (every attack step), with the weights stored
channels-last and as trained (contiguous, NCHW), alternating, ``--bare-repeats``
blocks of ``--block-calls`` calls, C = 4 chains per point as the quick profile runs the defence.

The models are ``pyro_vae.ConvVAE`` (PROTOCOL.md §3, 64-d latent -> C×28×28; MNIST C = 1,
ColorMNIST C = 3) with random weights and a fixed random x in [0, 1]: the cost per point does
not depend on the weights. ``--pretrained`` times the zoo's trained models on the first N test
images instead: the cost is the same, but NUTS's trees (how deep each chain goes, and so the
gradient use) are those of a real posterior.

    python -m benchmarks.sampler_speed            # N ∈ {50, 500}, L = 20, every section
    python -m benchmarks.sampler_speed --sections bare --datasets mnist colormnist
    python -m benchmarks.sampler_speed --sections layout --datasets colormnist --num-points 350
    python -m benchmarks.sampler_speed --quick    # N = 50, fewer transitions
    python -m benchmarks.sampler_speed --sections stock --samplers nuts --dataset mnist --pretrained
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import pyro
import torch
from pyro.infer import MCMC
from pyro.infer.mcmc import HMC, NUTS

from inference import (BatchedHMC, BatchedNUTS, PosteriorTarget, StepSizeAdaptation, initial_latents,
                       sample_posterior)
from pyro_vae import ConvVAE, VAEConfig, batch_of, load_dataset, pretrained
from pyro_vae.vae import BERNOULLI_CLAMP

from .stages.models import frozen

CHANNELS = {"mnist": 1, "colormnist": 3}


def random_vae(device: torch.device, num_channels: int = 3, seed: int = 0) -> ConvVAE:
    """The VAE of PROTOCOL.md §3 with random weights: timing needs its shapes only."""
    torch.manual_seed(seed)
    return ConvVAE(VAEConfig(num_channels=num_channels)).to(device).eval().requires_grad_(False)


def random_images(num_points: int, num_channels: int, device: torch.device) -> torch.Tensor:
    """Fixed random x in [0, 1]. Shape: (N, C, 28, 28)."""
    generator = torch.Generator().manual_seed(1)
    return torch.rand((num_points, num_channels, 28, 28), generator=generator).to(device)


def model_and_images(dataset: str, num_points: int, args, device: torch.device):
    """The timed model and its N inputs: random weights and random x (the default: the cost per
    point does not depend on the weights), or with ``--pretrained`` the zoo's trained model and
    the first N test images, where NUTS's trees, and so its gradient use, are the real ones.
    Shape of x: (N, C, 28, 28)."""
    if not args.pretrained:
        return random_vae(device, CHANNELS[dataset]), random_images(num_points, CHANNELS[dataset], device)
    test = load_dataset(dataset, args.data_root, all_colours=False).test  # a missing dataset fails first
    vae = pretrained(dataset, map_location=device).requires_grad_(False)
    x, _ = batch_of(test, torch.arange(num_points))
    return vae, x.to(device)


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def wall_seconds(run, device: torch.device) -> float:
    """Seconds that ``run()`` takes, the device's queued work included."""
    synchronize(device)
    start = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - start


def print_header(header: str):
    print(header)
    print("-" * len(header))


class TimedValueAndGrad:
    """A target's batched value-and-grad (whole batch or some chains' rows), with the wall time
    of every call recorded."""

    def __init__(self, target: PosteriorTarget):
        self.target = target
        self.calls: list[tuple[float, float]] = []

    def _timed(self, evaluate, *args):
        start = time.perf_counter()
        result = evaluate(*args)
        synchronize(args[0].device)
        self.calls.append((start, time.perf_counter()))
        return result

    def __call__(self, z):
        return self._timed(self.target.value_and_grad, z)

    def value_and_grad_rows(self, z_rows, rows):
        return self._timed(self.target.value_and_grad_rows, z_rows, rows)

    def total_duration(self, begin: float, end: float) -> float:
        return sum(b - a for a, b in self.calls if begin <= a and b <= end)

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


def time_batched(vae, x, sampler: str, args) -> tuple[float, float, float, float]:
    """Batched kernel: mean seconds per transition, gradient use, and two overheads, both the
    median over transitions. ``overhead``: time / the time spent inside that transition's
    value-and-grad calls (same CPU load on both sides). ``vs fastest``: time / (evaluations
    used / N × the fastest of a few full-batch calls on their own; conservative on a loaded
    CPU), i.e. what the transition costs against evaluating only the gradients it used, at
    full-batch efficiency. Gradient use = Σ n_steps / Σ n_grad_evals over the timed
    transitions."""
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
    info = kernel.diagnostics()["samples"]
    used = info.num_steps[1:].double().sum(dim=(1, 2))  # the timed transitions
    computed = info.num_grad_evals[1:].double().sum(dim=(1, 2))
    in_calls = torch.tensor([target.total_duration(a, b) for a, b in zip(stamps[:-1].tolist(), stamps[1:].tolist())],
                            dtype=torch.float64)
    fastest = target.fastest(z0, repeats=max(3, args.num_leapfrog_steps // 4))
    used_calls = used / x.shape[0]
    return (float(times.mean()), float(used.sum() / computed.sum()), float((times / in_calls).median()),
            float((times / (used_calls * fastest)).median()))


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
    vae, x = model_and_images(args.dataset, num_points, args, device)
    with pyro.validation_enabled(False):
        per_transition, grad_use, overhead, overhead_vs_fastest = time_batched(vae, x, sampler, args)
        timed = min(args.timed_points, num_points)
        per_point = sum(time_stock(vae, x[n : n + 1], sampler, args) for n in range(timed)) / timed
        packed = time_stock(vae, x, sampler, args)
    stock_rate = 1.0 / per_point
    rows = [
        (num_points, f"batched {sampler}", per_transition, num_points / per_transition,
         num_points / per_transition / stock_rate, grad_use, overhead, overhead_vs_fastest),
        (num_points, f"stock {sampler}, 1 chain/point (timed {timed}, extrapolated)",
         per_point * num_points, stock_rate, 1.0, None, None, None),
        (num_points, f"stock {sampler}, all points in 1 plate (shared accept)",
         packed, num_points / packed, num_points / packed / stock_rate, None, None, None),
    ]
    return rows


BARE_LIKELIHOODS = ("model", "explicit")


def bare_potential(vae: ConvVAE, x: torch.Tensor, likelihood: str = "explicit"):
    """U(z) = ½|z|² − Σ_pixels [x log p + (1 − x) log(1 − p)], p = clamp(decoder(z)): the
    model's potential up to its constant (D/2)·log 2π, written against the decoder. The
    Bernoulli term is computed as the model does (``likelihood="model"``: torch's
    ``Bernoulli(probs).log_prob``) or as written above (``"explicit"``).

    Shape: z (N, D) -> (U (N,), dU/dz (N, D)), both detached.
    """

    def value_and_grad(z):
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            probs = vae.decoder(z).clamp(BERNOULLI_CLAMP, 1 - BERNOULLI_CLAMP)
            if likelihood == "model":
                terms = torch.distributions.Bernoulli(probs=probs, validate_args=False).log_prob(x)
            else:
                terms = x * probs.log() + (1 - x) * (1 - probs).log()
            log_likelihood = terms.flatten(1).sum(1)
            potential = 0.5 * (z * z).sum(-1) - log_likelihood
            (grad,) = torch.autograd.grad(potential.sum(), z)
        return potential.detach(), grad

    return value_and_grad


def bare_hmc(vae: ConvVAE, x: torch.Tensor, num_transitions: int, num_leapfrog_steps: int, step_size: float,
             seed: int = 0, likelihood: str = "explicit") -> torch.Tensor:
    """Algorithm 1 by hand: z₀ ~ q(z|x), then T transitions of L leapfrog steps with a per-point
    step size, accept/reject and the paper's adaptation (PROTOCOL.md §7), no Pyro.

    Shape: x (N, C, 28, 28) -> final z (N, D).
    """
    generator = torch.Generator(x.device).manual_seed(seed)
    value_and_grad = bare_potential(vae, x, likelihood)
    loc, scale = vae.encoder(x)
    z = loc + scale * torch.randn(loc.shape, generator=generator, device=x.device)
    eta = torch.full(z.shape[:1], step_size, device=x.device)
    potential, grad = value_and_grad(z)
    for _ in range(num_transitions):
        momentum = torch.randn(z.shape, generator=generator, device=x.device)
        energy = potential + 0.5 * (momentum * momentum).sum(-1)
        step = eta.unsqueeze(-1)
        z_new, momentum_new = z, momentum - 0.5 * step * grad
        for leaf in range(num_leapfrog_steps):
            z_new = z_new + step * momentum_new
            potential_new, grad_new = value_and_grad(z_new)
            momentum_new = momentum_new - (step if leaf < num_leapfrog_steps - 1 else 0.5 * step) * grad_new
        energy_new = potential_new + 0.5 * (momentum_new * momentum_new).sum(-1)
        accept_prob = torch.exp(torch.clamp(energy - energy_new, max=0.0)).nan_to_num(0.0)
        accepted = torch.rand(accept_prob.shape, generator=generator, device=x.device) < accept_prob
        z = torch.where(accepted.unsqueeze(-1), z_new, z)
        potential = torch.where(accepted, potential_new, potential)
        grad = torch.where(accepted.unsqueeze(-1), grad_new, grad)
        eta = eta * (1 + 0.01 * (accept_prob - 0.9) / 0.9)
    return z


def compare_with_bare(dataset: str, num_points: int, args, device) -> dict[str, list[float]]:
    """Seconds of sample_posterior(hmc) (``"ours"``) and of :func:`bare_hmc` with each likelihood
    expression, timed alternately, one entry per repeat."""
    vae, x = model_and_images(dataset, num_points, args, device)
    steps, length = args.bare_transitions, args.num_leapfrog_steps

    def ours():
        sample_posterior(vae.model, vae.guide, (x,), sampler="hmc", num_chains=1, num_warmup=0,
                         num_samples=steps, step_size=args.step_size, num_leapfrog_steps=length,
                         adapt="paper", adapt_after_warmup=True, seed=0)

    runs = {name: (lambda name=name: bare_hmc(vae, x, steps, length, args.step_size, likelihood=name))
            for name in BARE_LIKELIHOODS}
    runs["ours"] = ours
    seconds = {name: [] for name in runs}
    with pyro.validation_enabled(False):
        for _ in range(args.bare_repeats):
            for name, run in runs.items():
                seconds[name].append(wall_seconds(run, device))
    return seconds


def compare_potentials(dataset: str, num_points: int, args, device) -> dict[str, list[float]]:
    """Seconds to build a compiled :class:`PosteriorTarget` (``"set-up"``) and seconds per call
    of each potential over a block of calls (``"program"``, ``"handler"``, ``"bare"``), one entry
    per repeat, the potentials alternating."""
    vae, x = model_and_images(dataset, num_points, args, device)
    z0 = initial_latents(vae.guide, (x,), generator=torch.Generator(x.device).manual_seed(0))
    program, handler = PosteriorTarget(vae.model, (x,)), PosteriorTarget(vae.model, (x,), compile=False)
    if not program.compiled:
        raise RuntimeError(f"the {dataset} model's potential was not recorded as a program")
    bare = bare_potential(vae, x, likelihood="model")
    potentials = {"program": program.value_and_grad, "handler": handler.value_and_grad,
                  "bare": lambda z: bare(z[0])}
    seconds = {name: [] for name in ("set-up", *potentials)}

    def block(value_and_grad):
        z = z0
        for _ in range(args.block_calls):  # a new point every call, as along a trajectory
            z = z - 1e-4 * value_and_grad(z)[1].reshape(z.shape)

    with pyro.validation_enabled(False):
        for _ in range(args.bare_repeats):
            seconds["set-up"].append(wall_seconds(lambda: PosteriorTarget(vae.model, (x,)), device))
            for name, value_and_grad in potentials.items():
                seconds[name].append(wall_seconds(lambda: block(value_and_grad), device) / args.block_calls)
    return seconds


def compare_layouts(dataset: str, num_points: int, args, device) -> dict[str, list[float]]:
    """Seconds per call of the decoder's value-and-grad (``"decoder NHWC"``, ``"decoder NCHW"``,
    the compiled :class:`PosteriorTarget` with 4 chains per point) and of the encoder's input
    gradient (``"encoder NHWC"``, ``"encoder NCHW"``), one entry per repeat, alternating."""
    contiguous, x = model_and_images(dataset, num_points, args, device)
    channels_last = frozen(copy.deepcopy(contiguous))
    z0 = torch.randn((4, num_points, channels_last.config.latent_dim),
                     generator=torch.Generator().manual_seed(0)).to(device)
    calls = {}
    for layout, vae in (("NHWC", channels_last), ("NCHW", contiguous)):
        target = PosteriorTarget(vae.model, (x,), num_chains=4)
        calls[f"decoder {layout}"] = lambda target=target: target.value_and_grad(z0)

        def encoder_gradient(vae=vae):
            with torch.enable_grad():
                x_attacked = x.clone().requires_grad_(True)
                loc, scale = vae.encode(x_attacked)
                torch.autograd.grad(loc.sum() + scale.sum(), x_attacked)
        calls[f"encoder {layout}"] = encoder_gradient
    seconds = {name: [] for name in calls}
    with pyro.validation_enabled(False):
        for _ in range(args.bare_repeats):
            for name, call in calls.items():
                seconds[name].append(wall_seconds(lambda: [call() for _ in range(args.block_calls)], device)
                                     / args.block_calls)
    return seconds


def print_section(title: str, header: str, row, args) -> None:
    """One table per section: ``row(dataset, N)`` gives the cells after the model and N columns,
    for every dataset of ``--datasets`` and N of ``--num-points``."""
    print(f"\n{title}")
    print_header(f"{'model':<11} {'N':>5} {header}")
    for dataset in args.datasets:
        for num_points in args.num_points:
            print(f"{dataset:<11} {num_points:>5} " + row(dataset, num_points), flush=True)


def per_call_ms(compare, dataset: str, num_points: int, args, device) -> dict[str, list[float]]:
    """A ``compare_*`` section's seconds per call, in milliseconds, one entry per repeat."""
    return {name: [1e3 * t for t in ts] for name, ts in compare(dataset, num_points, args, device).items()}


def best_median(ms: list[float]) -> str:
    """'best,median' of a timing's repeats, as the calls and layout tables print them."""
    return f"{min(ms):6.1f},{statistics.median(ms):6.1f}"


def bare_ratios(seconds: dict[str, list[float]], bare: str) -> tuple[float, float]:
    """sample_posterior ÷ one bare loop: best against best, and the median of the per-repeat
    ratios."""
    paired = [ours / other for ours, other in zip(seconds["ours"], seconds[bare])]
    return min(seconds["ours"]) / min(seconds[bare]), statistics.median(paired)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-points", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--num-transitions", type=int, default=3)
    parser.add_argument("--num-leapfrog-steps", type=int, default=20)
    parser.add_argument("--step-size", type=float, default=0.05)
    parser.add_argument("--max-tree-depth", type=int, default=5,
                        help="NUTS depth cap (kept small: every level doubles the deepest chain's cost)")
    parser.add_argument("--samplers", nargs="+", default=["hmc", "nuts"], choices=["hmc", "nuts"])
    parser.add_argument("--timed-points", type=int, default=3,
                        help="points timed for stock Pyro one-chain-per-point")
    parser.add_argument("--dataset", default="colormnist", choices=sorted(CHANNELS),
                        help="model of the stock section")
    parser.add_argument("--sections", nargs="+", default=["stock", "bare", "calls"],
                        choices=["stock", "bare", "calls", "layout"])
    parser.add_argument("--datasets", nargs="+", default=["mnist", "colormnist"], choices=sorted(CHANNELS),
                        help="models of the bare section")
    parser.add_argument("--bare-transitions", type=int, default=8, help="T of the bare section")
    parser.add_argument("--bare-repeats", type=int, default=5, help="alternating repeats (bare, calls)")
    parser.add_argument("--block-calls", type=int, default=160, help="value-and-grad calls per block (calls)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 by default: on a shared CPU, 2 OpenMP threads stall "
                             "each other and make small batches up to 10x slower")
    parser.add_argument("--quick", action="store_true", help="N = 50, 2 transitions, L = 5")
    parser.add_argument("--pretrained", action="store_true",
                        help="time the zoo's trained model on the first N test images (needs the "
                             "data: --data-root) instead of random weights and random x")
    parser.add_argument("--data-root", default=None,
                        help="with --pretrained: folder holding mnist/ (default: $PYRO_VAE_DATA)")
    args = parser.parse_args(argv)
    if args.quick:
        args.num_points, args.num_transitions, args.num_leapfrog_steps = [50], 2, 5
        args.max_tree_depth, args.timed_points, args.bare_transitions, args.block_calls = 3, 2, 2, 10
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)

    print(f"models: {'the zoo, first N test images' if args.pretrained else 'random weights, random x'}")
    print(f"device={device} threads={torch.get_num_threads()} L={args.num_leapfrog_steps} "
          f"T={args.num_transitions} η={args.step_size} NUTS max depth={args.max_tree_depth} "
          f"load average={os.getloadavg()[0]:.2f}")
    if "stock" in args.sections:
        print(f"model: {args.dataset}")
        header = (f"{'N':>5}  {'method':<58} {'s/transition':>12} {'points·trans/s':>15} {'vs stock/pt':>11} "
                  f"{'grad use':>8} {'overhead':>8} {'vs fastest':>10}")
        print_header(header)
        for sampler in args.samplers:
            for num_points in args.num_points:
                for n, name, per_transition, rate, speedup, grad_use, overhead, vs_fastest in benchmark(
                    num_points, sampler, args, device
                ):
                    extra = (f"{grad_use:8.3f} {overhead:8.3f} {vs_fastest:10.3f}"
                             if overhead is not None else "")
                    print(f"{n:>5}  {name:<58} {per_transition:12.3f} {rate:15.1f} {speedup:10.1f}x {extra}",
                          flush=True)
    if "bare" in args.sections:
        def bare_row(dataset, num_points):
            seconds = compare_with_bare(dataset, num_points, args, device)
            columns = [f"{min(seconds['ours']):18.3f}"]
            for bare, width in zip(BARE_LIKELIHOODS, (22, 17)):
                best, median = bare_ratios(seconds, bare)
                columns.append(f"{min(seconds[bare]):{width}.3f} {best:6.3f} {median:6.3f}")
            return " ".join(columns)

        print_section(
            f"sample_posterior(sampler='hmc') vs a bare per-point HMC loop on the decoder: "
            f"T={args.bare_transitions}, L={args.num_leapfrog_steps}, {args.bare_repeats} "
            f"alternating repeats; seconds: the best; ratios: best ÷ best, then the median of "
            f"the per-repeat ratios",
            f"{'sample_posterior s':>18} {'bare (model formula) s':>22} {'ratio':>6} {'median':>6} "
            f"{'bare (explicit) s':>17} {'ratio':>6} {'median':>6}", bare_row, args)
    if "calls" in args.sections:
        def calls_row(dataset, num_points):
            ms = per_call_ms(compare_potentials, dataset, num_points, args, device)
            cells = [best_median(ms[name]) for name in ms]
            ratios = [statistics.median(a / b for a, b in zip(ms[name], ms["bare"]))
                      for name in ("program", "handler")]
            return (f"{cells[0]:>13} {cells[1]:>13} {cells[2]:>17} {cells[3]:>13} "
                    f"{ratios[0]:12.3f} {ratios[1]:12.3f}")

        print_section(
            f"set-up of the compiled target, and seconds per value-and-grad call in blocks of "
            f"{args.block_calls} calls, {args.bare_repeats} alternating repeats: best, median (ms)",
            f"{'set-up':>13} {'program':>13} {'handler+autograd':>17} {'bare':>13} "
            f"{'program÷bare':>12} {'handler÷bare':>12}", calls_row, args)
    if "layout" in args.sections:
        def layout_row(dataset, num_points):
            ms = per_call_ms(compare_layouts, dataset, num_points, args, device)
            cells = []
            for network in ("decoder", "encoder"):
                fast, slow = ms[f"{network} NHWC"], ms[f"{network} NCHW"]
                speedup = statistics.median(b / a for a, b in zip(fast, slow))
                cells += [f"{best_median(fast):>13}", f"{best_median(slow):>13}", f"{speedup:8.2f}"]
            return " ".join(cells)

        print_section(
            f"channels-last (NHWC) against contiguous (NCHW) weights: ms per call in blocks of "
            f"{args.block_calls} calls, {args.bare_repeats} alternating repeats: best, median; "
            f"speed-up = median of the per-repeat NCHW ÷ NHWC",
            f"{'decoder NHWC':>13} {'decoder NCHW':>13} {'speed-up':>8} {'encoder NHWC':>13} "
            f"{'encoder NCHW':>13} {'speed-up':>8}", layout_row, args)
    print(f"load average at the end={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
