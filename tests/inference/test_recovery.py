"""Samplers recover the closed-form posterior of the linear-Gaussian model within Monte Carlo
error, the error measured with ArviZ's effective sample size."""

import arviz as az
import numpy as np
import pytest
import torch

from inference import sample_posterior


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
        # trajectory η·L = 0.5 rotates these posteriors (sd 0.3-0.46) by 1.1-1.7 rad: far from the
        # resonant π and 2π at which fixed-length HMC on a Gaussian mixes badly
        ("hmc", dict(num_leapfrog_steps=5, step_size=0.1, adapt="paper")),
        ("nuts", dict(step_size=0.15, max_tree_depth=6)),
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


def test_map_finds_the_posterior_mode(problem):
    x = problem.data(20)
    result = sample_posterior(problem.model, problem.guide, (x,), sampler="map", num_chains=2,
                              num_warmup=1000, num_samples=5, step_size=0.05, seed=0)
    mode, _ = problem.posterior(x)  # Gaussian posterior: mode = mean
    assert result.config.adapt is None
    assert torch.allclose(result.final_z, mode.expand_as(result.final_z), atol=1e-3)
    lp = result.sample_stats["lp"]
    assert lp.shape == (2, 5, 20)
    assert torch.all(lp[:, -1] >= lp[:, 0] - 1e-6)
