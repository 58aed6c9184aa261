"""ChEES-HMC (inference/chees.py): recovery of a 50×-anisotropic Gaussian posterior, the adapted
trajectory length on isotropic Gaussians, isolation of a poisoned point, the C ≥ 2 check, and
the gradient-evaluation count."""

import arviz as az
import numpy as np
import pyro
import pytest
import torch
from pyro.infer import MCMC

from inference import SAMPLERS, BatchedChEES, StepSizeAdaptation, sample_posterior
from inference.chees import CHEES_TARGET_ACCEPT, chees_num_steps, harmonic_mean_accept, van_der_corput

DUAL_AVERAGING = StepSizeAdaptation("dual_averaging", CHEES_TARGET_ACCEPT)
# argmax of the jitter-averaged ChEES of N(0, σ²): ½ − sin(2T/σ)/(4T/σ) peaks at 2T/σ = 4.4934
CHEES_OPTIMUM = 4.4934 / 2


def run_chees(potential_fn, z0, *, num_warmup, num_samples, seed=0, **options):
    kernel = BatchedChEES(potential_fn=potential_fn, adaptation=DUAL_AVERAGING,
                          generator=torch.Generator().manual_seed(seed), **options)
    mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=num_warmup, initial_params={"z": z0},
                disable_progbar=True)
    mcmc.run()
    return kernel, mcmc.get_samples(group_by_chain=True)["z"][0].transpose(0, 1)  # (C, S, N, D)


def axis_aligned_gaussian(posterior_sd, num_points, data_dim=6, seed=0):
    """p(z) = N(0, I), p(x|z) = N(Wz, I) with W = Q·diag(√(1/s² − 1)), Q orthonormal columns:
    the posterior is exactly N(Wᵀx·diag(s²), diag(s²)). Returns (value_and_grad, mean (N, D))."""
    sd = torch.tensor(posterior_sd, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(data_dim, len(posterior_sd), generator=g, dtype=torch.float64))
    weight = q * (1 / sd**2 - 1).sqrt()
    z_true = torch.randn(num_points, len(posterior_sd), generator=g, dtype=torch.float64)
    x = z_true @ weight.T + torch.randn(num_points, data_dim, generator=g, dtype=torch.float64)
    mean = (x @ weight) * sd**2

    def value_and_grad(z):
        residual = z @ weight.T - x
        return 0.5 * (z * z).sum(-1) + 0.5 * (residual * residual).sum(-1), z + residual @ weight

    return value_and_grad, mean


def test_van_der_corput_jitter_and_step_counts():
    assert [van_der_corput(k) for k in range(1, 8)] == [0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875]
    with pytest.raises(ValueError):
        van_der_corput(0)
    length, step = torch.tensor([1.0, 1.0, 50.0, float("nan")]), torch.tensor([0.3, 0.01, 0.01, 0.1])
    assert chees_num_steps(length, 0.5, step, max_steps=1000).tolist() == [2, 50, 1000, 1]
    # harmonic mean over the chains of each point, divergent chains left out
    alpha = torch.tensor([[0.5, 1.0, 0.0], [0.25, 1.0, 0.9]])
    diverging = torch.tensor([[False, False, True], [False, True, True]])
    assert torch.allclose(harmonic_mean_accept(alpha, diverging), torch.tensor([1 / 3, 1.0, 0.0]))


def test_recovers_a_50x_anisotropic_gaussian_started_far_away():
    # Posterior sds 0.02, 0.02, 0.05, 0.95 (47.5×), the same for every point, unit mass: η is set
    # by the 0.02 directions and T by the 0.95 one (ChEES weighs directions by variance²), so a
    # transition takes ~40 leapfrog steps. The chains start 1 unit off the mean (50 sd on the
    # sharp directions), on both sides: T climbs from η₀ = 0.1 to ≈ 2σ_wide = 1.9 in warm-up
    # once the chains have fallen into the typical set (~40 transitions).
    sd = (0.02, 0.02, 0.05, 0.95)
    num_chains, num_points = 4, 16
    value_and_grad, mean = axis_aligned_gaussian(sd, num_points)
    offset = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64).view(-1, 1, 1)
    kernel, draws = run_chees(value_and_grad, mean + offset, num_warmup=200, num_samples=200, step_size=0.1)
    assert not kernel.diagnostics()["samples"].diverging.any()

    draws, mean, var = draws.numpy(), mean.numpy(), np.square(sd)
    # Means: every point and direction within 5 Monte-Carlo standard errors, sd/√ESS_bulk
    # (64 comparisons; a 5-MCSE excursion has probability ~6e-7 each when the chains are right).
    ess = az.ess(az.convert_to_dataset({"z": draws}))["z"].values  # (N, D)
    assert ess.min() > 50  # of 800 draws per point (6 seeds: 129 to 276)
    mcse = draws.std(axis=(0, 1)) / np.sqrt(ess)
    assert (np.abs(draws.mean(axis=(0, 1)) - mean) <= 5 * mcse).all()
    assert float(az.rhat(az.convert_to_dataset({"z": draws}))["z"].max()) < 1.1

    # Variances pooled over points: the ratio to the exact variance has Monte-Carlo sd
    # √(Var[(z−μ)²] / Σ_n ESS_n) / σ² ≈ √(2 / Σ_n ESS_n) for a Gaussian. With Σ ESS of the squared
    # deviations ≥ 2500 per direction, 5 such sds are ≤ 0.14, inside the stated ratio [0.85, 1.15].
    squared = (draws - mean) ** 2
    ess_sq = az.ess(az.convert_to_dataset({"s": squared}))["s"].values.sum(0)  # (D,)
    assert (ess_sq >= 2500).all(), ess_sq
    ratio = squared.mean(axis=(0, 1, 2)) / var
    ratio_sd = np.sqrt(squared.var(axis=(0, 1)).mean(0) / ess_sq) / var
    assert (np.abs(ratio - 1) <= 5 * ratio_sd).all(), (ratio, ratio_sd)
    assert ((ratio > 0.85) & (ratio < 1.15)).all(), ratio  # 6 seeds: 0.96 to 1.04
    assert (kernel.trajectory_length > 1.0).all()  # ≈ 2σ_wide, well above the start at 0.1


def test_trajectory_length_adapts_to_each_points_scale():
    # N(0, σ_n² I_10) with σ_n from 0.1 to 3 (a 30× range across points), 8 chains per point.
    # Exact dynamics: ChEES(t) = D σ⁴ sin²(t/σ), maximal at the quarter period (π/2)σ; with the
    # trajectory jittered uniformly on (0, T) the criterion is ½ − sin(2T/σ)/(4T/σ), maximal at
    # T = 2.247σ (mean integrated length 1.12σ ≈ 0.72·(π/2)σ). With leapfrog steps of η ≈ 0.7σ
    # to 0.85σ (D = 10 at acceptance 0.651) and the length rounded up to ⌈h·T/η⌉ steps, the
    # maximiser of the discretised criterion E_h sin²(⌈hT/η⌉·θ), cos θ = 1 − (η/σ)²/2, is
    # 1.4σ to 1.7σ; 6 seeds gave 1.34σ to 1.85σ. The check: within a factor 2 of 2.247σ, from
    # a start at T₀ = η₀ = 0.05 (0.5σ down to 0.017σ), and T ∝ σ across the 30× range of σ
    # (T/σ within a factor 1.5 across points; the seeds gave ≤ 1.3).
    sigma = torch.tensor([0.1, 0.3, 1.0, 3.0])
    num_chains, dim = 8, 10

    def value_and_grad(z):
        precision = sigma.square().reciprocal().view(-1, 1)
        return 0.5 * (z * z * precision).sum(-1), z * precision

    z0 = torch.randn(num_chains, len(sigma), dim, generator=torch.Generator().manual_seed(1)) * sigma.view(-1, 1)
    kernel, _ = run_chees(value_and_grad, z0, num_warmup=200, num_samples=20, step_size=0.05)
    length = kernel.trajectory_length
    assert length.shape == (len(sigma),)
    in_sigmas = length / sigma
    assert ((in_sigmas > CHEES_OPTIMUM / 2) & (in_sigmas < CHEES_OPTIMUM * 2)).all(), in_sigmas
    assert in_sigmas.max() / in_sigmas.min() < 1.5, in_sigmas
    # frozen after warm-up: every kept transition drew from the same T and η
    kept = kernel.diagnostics()["samples"]
    assert torch.equal(kept.trajectory_length, length.expand_as(kept.trajectory_length))
    assert (kept.step_size == kept.step_size[:1]).all()
    assert 0.5 < kernel.diagnostics()["acceptance rate"] < 0.9  # the per-point harmonic means, target 0.651


POISONED = 3


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
def test_poisoned_point_leaves_the_others_bit_identical(problem, bad_value):
    x = problem.data(6)
    poisoned = x.clone()
    poisoned[POISONED, 1] = bad_value
    options = dict(sampler="chees", num_chains=2, num_warmup=10, num_samples=15, step_size=0.2, seed=11)
    with pyro.validation_enabled(False):  # Pyro would reject the non-finite row up front
        clean_run = sample_posterior(problem.model, problem.guide, (x,), **options)
        bad_run = sample_posterior(problem.model, problem.guide, (poisoned,), **options)

    others = [n for n in range(6) if n != POISONED]
    assert torch.equal(bad_run.z[:, :, others], clean_run.z[:, :, others])
    for name, value in clean_run.sample_stats.items():
        assert torch.equal(bad_run.sample_stats[name][..., others], value[..., others]), name
    assert torch.isfinite(bad_run.z).all() and torch.isfinite(bad_run.final_z).all()
    assert bad_run.sample_stats["diverging"][..., POISONED].all()
    assert bad_run.warmup_stats["diverging"][..., POISONED].all()
    assert (bad_run.z[:, :, POISONED] == bad_run.z[:, :1, POISONED]).all()
    # its chains can never accept, so they integrate one step and do not lengthen the lockstep
    assert (bad_run.sample_stats["n_steps"][..., POISONED] == 1).all()
    assert torch.isfinite(bad_run.sample_stats["trajectory_length"]).all()


def test_nan_inside_a_trajectory_is_rejected_and_isolated():
    def standard_normal(z):
        return 0.5 * (z * z).sum(-1), z

    def trapped_normal(z):  # point 0: NaN wherever its first coordinate exceeds 0.5
        potential, grad = standard_normal(z)
        trap = torch.zeros_like(potential, dtype=torch.bool)
        trap[:, 0] = z[:, 0, 0] > 0.5
        nan = torch.tensor(float("nan"))
        return torch.where(trap, nan, potential), torch.where(trap.unsqueeze(-1), nan, grad)

    z0 = torch.zeros(3, 5, 2)
    clean_kernel, clean = run_chees(standard_normal, z0, num_warmup=20, num_samples=40, step_size=0.3)
    trapped_kernel, trapped = run_chees(trapped_normal, z0, num_warmup=20, num_samples=40, step_size=0.3)
    assert torch.equal(trapped[:, :, 1:], clean[:, :, 1:])
    assert torch.equal(trapped_kernel.trajectory_length[1:], clean_kernel.trajectory_length[1:])
    assert torch.isfinite(trapped).all() and torch.isfinite(trapped_kernel.trajectory_length).all()
    assert (trapped[:, :, 0, 0] <= 0.5).all()
    assert trapped_kernel.diagnostics()["samples"].diverging[:, :, 0].any()


def test_one_chain_is_refused_before_any_work(problem):
    calls = []

    def counting_model(x):
        calls.append(1)
        return problem.model(x)

    with pytest.raises(ValueError, match="ChEES needs at least 2 chains per point"):
        sample_posterior(counting_model, problem.guide, (problem.data(3),), sampler="chees", num_chains=1)
    assert not calls

    def counting_potential(z):
        calls.append(1)
        return 0.5 * (z * z).sum(-1), z

    kernel = BatchedChEES(potential_fn=counting_potential, step_size=0.1)
    mcmc = MCMC(kernel, num_samples=2, warmup_steps=1, initial_params={"z": torch.zeros(1, 4, 2)},
                disable_progbar=True)
    with pytest.raises(ValueError, match="at least 2 chains"):
        mcmc.run()
    assert not calls


def test_grad_evals_are_the_steps_each_chain_integrated(problem):
    result = sample_posterior(problem.model, problem.guide, (problem.data(4),), sampler="chees", num_chains=3,
                              num_warmup=25, num_samples=15, step_size=0.2, max_tree_depth=5, seed=0)
    spec = SAMPLERS["chees"]
    assert (result.config.adapt, result.config.target_accept, result.config.jitter) == (
        "dual_averaging", CHEES_TARGET_ACCEPT, 0.0)
    assert spec.kernel is BatchedChEES
    stats = [result.warmup_stats, result.sample_stats]
    steps = torch.cat([s["n_steps"] for s in stats], dim=1)  # (C, T, N)
    assert torch.equal(torch.cat([s["n_grad_evals"] for s in stats], dim=1), steps)
    assert torch.equal(result.num_grad_evals, 1 + steps.sum(1))
    # the chains of a point share η, T and the Halton jitter h_k, so they integrate alike;
    # the steps are ⌈h_k·T/η⌉ capped at 2^max_tree_depth − 1
    assert (steps == steps[:1]).all()
    step_size = torch.cat([s["step_size"] for s in stats], dim=1)
    length = torch.cat([s["trajectory_length"] for s in stats], dim=1)
    assert (step_size == step_size[:1]).all() and (length == length[:1]).all()
    jitter = torch.tensor([van_der_corput(k + 1) for k in range(steps.shape[1])]).view(1, -1, 1)
    expected = torch.ceil(jitter * length / step_size).clamp(1, 2**5 - 1).long()
    assert torch.equal(steps, expected)
    assert steps.unique().numel() > 1
