"""Samplers recover the closed-form posterior of the linear-Gaussian model within Monte Carlo
error, the error measured with ArviZ's effective sample size."""

import math

import arviz as az
import numpy as np
import pytest
import torch

from inference import SAMPLERS, convergence, sample_posterior, to_inference_data


def assert_matches_gaussian(draws, mean, cov, z_scores=5.0):
    """draws (C, S, N, D) vs exact mean (N, D) and covariance (D, D).

    Means: every |mean − true| ≤ z·sd/√ESS_bulk. Variances, pooled over points per latent
    dimension: |mean_n E[(z − μ)²] − Σ_dd| ≤ z·√(Var[(z − μ)²] / Σ_n ESS_n) with the ESS of the
    squared deviations themselves.
    """
    draws = draws.double().numpy()
    mean, var = mean.double().numpy(), np.diag(cov.double().numpy())
    ess = az.ess(az.convert_to_dataset({"z": draws}))["z"].values  # (N, D)
    sd = draws.std(axis=(0, 1))
    error = np.abs(draws.mean(axis=(0, 1)) - mean)
    assert (error <= z_scores * sd / np.sqrt(ess)).all(), (error / (sd / np.sqrt(ess))).max()

    squared = (draws - mean) ** 2
    ess_sq = az.ess(az.convert_to_dataset({"s": squared}))["s"].values  # (N, D)
    estimate = squared.mean(axis=(0, 1, 2))
    mc_sd = np.sqrt(squared.var(axis=(0, 1)).mean(0) / ess_sq.sum(0))
    assert (np.abs(estimate - var) <= z_scores * mc_sd).all(), (estimate, var, mc_sd)


@pytest.mark.parametrize(
    "sampler, options",
    [
        ("hmc", dict(num_leapfrog_steps=8, step_size=0.15, adapt="dual_averaging")),
        ("hmc", dict(num_leapfrog_steps=5, step_size=0.1, adapt="paper")),
        ("nuts", dict(step_size=0.15, max_tree_depth=6)),
        ("mala", dict(step_size=0.15)),
    ],
)
def test_batched_samplers_recover_posterior_of_100_points(problem, sampler, options):
    x = problem.data(100)
    result = sample_posterior(problem.model, problem.guide, (x,), sampler=sampler, num_chains=2,
                              num_warmup=100, num_samples=150, seed=0, **options)
    assert result.z.shape == (2, 150, 100, problem.latent_dim)
    assert not result.sample_stats["diverging"].any()
    mean, cov = problem.posterior(x)
    assert_matches_gaussian(result.z, mean, cov)


# The resonance of a fixed trajectory. On a Gaussian of sd σ one leapfrog step of size η turns
# the (scaled) phase by φ = arccos(1 − (η/σ)²/2); L steps by L·φ. Near L·φ = π every transition
# reflects z about the mean (the chain keeps its distance to the mean forever), near 2π it
# barely moves. The narrow problem has posterior sds 0.10, 0.13, 0.16, 0.19 and the runs start
# 2 units (10-20 sd) off the mean, on opposite sides for the two chains.
NARROW_STEP_SIZE = 0.1


def _narrow_run(problem, num_leapfrog_steps, **options):
    x = problem.data(64)
    mean, cov = problem.posterior(x)
    start = mean + 2.0 * torch.tensor([1.0, -1.0]).view(2, 1, 1)
    result = sample_posterior(problem.model, problem.guide, (x,), sampler="hmc", num_chains=2, num_warmup=200,
                              num_samples=400, step_size=NARROW_STEP_SIZE, num_leapfrog_steps=num_leapfrog_steps,
                              init=start, seed=0, **options)
    return result, mean, cov


def _phase_per_transition(num_leapfrog_steps, cov):
    """L·φ per posterior direction at the initial step size, shape (D,)."""
    h = NARROW_STEP_SIZE / cov.diagonal().sqrt()
    return num_leapfrog_steps * torch.arccos(1 - h**2 / 2)


@pytest.mark.parametrize("num_leapfrog_steps", [3, 7, 10, 20])
def test_jittered_hmc_forgets_a_far_start_even_at_resonant_lengths(narrow_problem, num_leapfrog_steps):
    # L = 3 turns the sd-0.10 direction by π (reflection), L = 10 the sd-0.16 one by 2π + 0.08;
    # with the default jitter both mix like the others (tolerances from the ESS).
    result, mean, cov = _narrow_run(narrow_problem, num_leapfrog_steps, adapt="paper",
                                    mass_matrix="identity")
    assert result.config.jitter == 0.5
    assert not result.sample_stats["diverging"].any()
    assert_matches_gaussian(result.z, mean, cov)
    assert float(convergence(to_inference_data(result))["rhat"].max()) < 1.1


@pytest.mark.parametrize("num_leapfrog_steps, half_periods", [(3, 1), (10, 2)])
def test_fixed_trajectory_resonance_is_flagged_by_rhat(narrow_problem, num_leapfrog_steps, half_periods):
    # The paper's exact algorithm (jitter 0, η fixed so the resonance stays put).
    result, mean, cov = _narrow_run(narrow_problem, num_leapfrog_steps, adapt=None, jitter=0.0,
                                    mass_matrix="identity")
    phase = _phase_per_transition(num_leapfrog_steps, cov)
    assert (phase - half_periods * math.pi).abs().min() < 0.1  # the premise: some direction resonates
    assert result.config.jitter == 0.0
    assert float(convergence(to_inference_data(result))["rhat"].max()) > 1.1
    with pytest.raises(AssertionError):
        assert_matches_gaussian(result.z, mean, cov)


@pytest.mark.slow  # about a minute on one quiet core for the NUTS and stock-Pyro cases
@pytest.mark.parametrize("sampler", [name for name, spec in SAMPLERS.items() if spec.mcmc])
def test_every_mcmc_sampler_recovers_a_posterior_whose_scales_span_50x(anisotropic_problem, sampler):
    """Each registered MCMC sampler with its own defaults (adaptation, mass matrix, jitter), on
    posterior sds 0.02, 0.1, 0.5, 0.98 (a VAE's sharp coordinates beside one at the prior), both
    chains started one unit off the mean (50 sd on the sharp axis), on opposite sides. With unit
    mass and a fixed L, one step size cannot fit both ends: the broad axis random-walks and its
    variance misses (measured before the default mass matrix: hmc's variance ratios 0.25-2.5)."""
    problem = anisotropic_problem
    stock = SAMPLERS[sampler].runner is not None  # one Pyro chain per point: keep N small
    x = problem.data(2 if stock else 32)
    mean, cov = problem.posterior(x)
    start = mean + torch.tensor([1.0, -1.0]).view(2, 1, 1)
    result = sample_posterior(problem.model, problem.guide, (x,), sampler=sampler, num_chains=2,
                              num_warmup=300, num_samples=300 if stock else 400, init=start,
                              max_tree_depth=6, seed=0)  # NUTS: the benchmarks' depth
    assert result.sample_stats["diverging"].float().mean() < 0.01
    assert_matches_gaussian(result.z, mean, cov)


@pytest.mark.parametrize("sampler", ["pyro_hmc", "pyro_nuts"])
def test_stock_pyro_reference_recovers_posterior(problem, sampler):
    x = problem.data(2)
    result = sample_posterior(problem.model, problem.guide, (x,), sampler=sampler, num_chains=2,
                              num_warmup=50, num_samples=150, step_size=0.2, num_leapfrog_steps=5,
                              max_tree_depth=5, seed=0)
    assert result.z.shape == (2, 150, 2, problem.latent_dim)
    assert set(result.sample_stats) == {"step_size", "diverging"}
    assert result.sample_stats["step_size"].shape == (2, 150, 2)
    mean, cov = problem.posterior(x)
    assert_matches_gaussian(result.z, mean, cov)


def test_map_climbs_from_the_encoder_mean_to_the_posterior_mode(problem):
    """Recorded from the first step (no warm-up) and started at the deliberately poor encoder
    mean, which lies 0.85 to 257 nats of log p(x, z) below the mode: the chain has to climb the
    whole way. Catches a step that descends log p or stalls (the final z misses the mode), an
    ``lp`` record that is not log p(x, z) of the draw, and an optimiser that overshoots and stays
    above the maximum (impossible for a correct lp)."""
    x = problem.data(20)
    result = sample_posterior(problem.model, problem.guide, (x,), sampler="map", init="mean",
                              num_chains=2, num_warmup=0, num_samples=1000, step_size=0.05, seed=0)
    mode, _ = problem.posterior(x)  # Gaussian posterior: mode = mean
    start = 0.3 * (x - problem.bias) @ problem.weight  # the guide's mean (conftest)
    peak = problem.log_joint(x, mode)  # (N,)
    assert (peak - problem.log_joint(x, start) > 0.5).all()  # far from the mode at the start
    assert result.config.adapt is None

    lp = result.sample_stats["lp"]
    assert lp.shape == (2, 1000, 20)
    torch.testing.assert_close(lp, problem.log_joint(x, result.z), rtol=1e-5, atol=1e-4)
    assert (lp <= peak + 1e-4).all()
    assert (lp[:, -1] > lp[:, 0]).all()
    assert torch.allclose(lp[:, -1], peak.expand_as(lp[:, -1]), atol=1e-4)
    # At the mode in the posterior's own metric: the Mahalanobis distance d from the mode, for
    # which the Gaussian's lp gap is d² / 2 (so the 1e-4 gap above is d ≈ 0.014). An absolute
    # tolerance on z would not do: along the flattest direction Adam's last steps are the
    # largest in z and the smallest in lp, and their size there depends on float rounding.
    _, covariance = problem.posterior(x)
    offset = result.final_z - mode
    distance = torch.einsum("cnd,de,cne->cn", offset, torch.linalg.inv(covariance), offset).sqrt()
    assert (distance < 0.02).all(), distance.max()


@pytest.mark.parametrize("sampler", [name for name, spec in SAMPLERS.items()
                                     if spec.mcmc and spec.kernel is not None])
def test_batched_samplers_recover_a_coupled_hierarchy_non_centred(two_level_problem, sampler):
    """Two groups whose posterior correlation is 0.92 in z (0.36 in the non-centred noise),
    each sampler with its defaults, which non-centre a model with several latent sites."""
    problem = two_level_problem
    x = problem.data(32)
    result = sample_posterior(problem.model, problem.guide, (x,), sampler=sampler,
                              latent_site=problem.sites, num_chains=2, num_warmup=200,
                              num_samples=300, max_tree_depth=6, seed=0)
    assert result.config.parametrisation == "noncentred"
    assert result.sample_stats["diverging"].float().mean() < 0.01
    mean, cov = problem.posterior(x)
    assert_matches_gaussian(result.z, mean, cov)
