"""The diagonal mass matrix (inference.mass): Stan's windows, the pooled variance, the whitened
potential, the encoder's variance, and what the windowed estimate converges to."""

import pytest
import torch

from inference import BatchedHMC, PosteriorTarget, sample_posterior
from inference.mass import PooledVariance, Whitening, slow_windows
from inference.target import draw_initial_latents, encoder_moments, encoder_variance


def test_slow_windows_follow_stan():
    # Stan's documented schedule for 1000 warm-up iterations (buffers 75 / 25 doubling / 50).
    assert slow_windows(1000) == [(75, 100), (100, 150), (150, 250), (250, 450), (450, 950)]
    assert slow_windows(150) == [(75, 100)]
    assert slow_windows(300) == [(75, 100), (100, 150), (150, 250)]  # the last one stretched
    # Shorter than Stan's buffers: no window, the starting mass matrix is kept.
    assert slow_windows(149) == [] and slow_windows(50) == []


def test_pooled_variance_equals_the_variance_of_all_draws():
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(3, 4, 5, generator=g) * 2 + 1 for _ in range(4)]
    pooled = PooledVariance()
    for batch in batches:
        pooled.update(batch)
    draws = torch.cat(batches)  # (12, 4, 5): 12 draws per point
    assert pooled.count == 12
    torch.testing.assert_close(pooled.sum_squares / 11, draws.var(0), rtol=1e-5, atol=1e-6)
    # Regularised towards the prior with weight 5 / (n + 5).
    torch.testing.assert_close(pooled.variance(prior=2.0), (12 * draws.var(0) + 5 * 2.0) / 17,
                               rtol=1e-5, atol=1e-6)


def test_whitened_rows_agree_with_the_whole_batch(problem):
    x = problem.data(5)
    target = PosteriorTarget(problem.model, (x,), num_chains=3)
    scale = torch.rand(5, problem.latent_dim, generator=torch.Generator().manual_seed(1)) + 0.5
    whitening = Whitening(scale, num_chains=3)
    u = torch.randn(3, 5, problem.latent_dim, generator=torch.Generator().manual_seed(2))
    value, grad = whitening.value_and_grad(target.value_and_grad)(u)
    # By hand: U(s·u) and s·∇U(s·u).
    expected_value, expected_grad = target.value_and_grad(u * scale)
    torch.testing.assert_close(value, expected_value)
    torch.testing.assert_close(grad, expected_grad * scale)
    rows = torch.tensor([0, 7, 14, 4])  # flat chain-major c·N + n: points 0, 2, 4, 4
    row_value, row_grad = whitening.value_and_grad_rows(target.value_and_grad_rows)(
        u.reshape(-1, problem.latent_dim)[rows], rows)
    torch.testing.assert_close(row_value, value.reshape(-1)[rows])
    torch.testing.assert_close(row_grad, grad.reshape(-1, problem.latent_dim)[rows])


def test_rescaling_keeps_the_state_in_model_space(problem):
    x = problem.data(4)
    target = PosteriorTarget(problem.model, (x,), num_chains=2)
    whitening = Whitening(torch.full((4, problem.latent_dim), 0.5), num_chains=2)
    value_and_grad = whitening.value_and_grad(target.value_and_grad)
    kernel = BatchedHMC(potential_fn=value_and_grad, step_size=0.1)
    z = torch.randn(2, 4, problem.latent_dim, generator=torch.Generator().manual_seed(3))
    kernel.initial_params = {"z": whitening.to_whitened(z)}
    kernel.setup(0)
    new_scale = torch.full((4, problem.latent_dim), 2.0)
    state = whitening.rescale(kernel.state, new_scale)
    torch.testing.assert_close(whitening.to_model(state.z), z)
    # The carried gradient is the one the new coordinates would compute.
    _, grad = value_and_grad(state.z)
    torch.testing.assert_close(state.grad, grad)


def test_encoder_variance_is_the_guides(problem, scaled_problem):
    x = problem.data(6)
    assert torch.equal(encoder_variance(problem.guide, (x,)), torch.full((6, problem.latent_dim), 0.25))
    x2, scale = torch.randn(3, 2), torch.ones(3)
    torch.testing.assert_close(encoder_variance(scaled_problem.guide, (x2, scale)),
                               torch.full((3, 2), 0.01))
    with pytest.raises(ValueError, match="no sample site named 'w'"):
        encoder_variance(problem.guide, (x,), latent_site="w")
    # the same guide run gives the means, the start of init="mean"
    means, variance = encoder_moments(problem.guide, (x,))
    assert torch.equal(variance, encoder_variance(problem.guide, (x,)))
    assert torch.equal(means, draw_initial_latents(problem.guide, (x,), init="mean")[0][0])


def test_windowed_estimate_finds_the_posterior_variance(anisotropic_problem):
    # Posterior sds span 50×; after Stan's 1000-transition warm-up the inverse mass of every
    # point and coordinate is the posterior variance within the noise of ~500 correlated draws
    # × 2 chains pooled (a factor 2 either way is far outside that noise, and far inside the
    # 2,500× spread of the variances, so a unit or wrong-axis estimate fails).
    problem = anisotropic_problem
    x = problem.data(8)
    _, cov = problem.posterior(x)
    result = sample_posterior(problem.model, problem.guide, (x,), sampler="hmc", num_chains=2,
                              num_warmup=1000, num_samples=1, num_leapfrog_steps=10,
                              adapt="dual_averaging", mass_matrix="windowed", seed=0)
    ratio = result.inverse_mass / cov.diagonal()
    assert ratio.shape == (8, 4)
    assert ((ratio > 0.5) & (ratio < 2.0)).all(), ratio


def test_unit_mass_is_the_unwhitened_sampler(problem):
    x = problem.data(5)
    identity = sample_posterior(problem.model, problem.guide, (x,), sampler="hmc", num_warmup=5,
                                num_samples=5, seed=4, mass_matrix="identity", adapt="dual_averaging")
    assert identity.inverse_mass is None and identity.config.mass_matrix == "identity"
    # An all-ones encoder-free mass matrix is the same chain up to rounding (u = z / 1).
    ones = sample_posterior(problem.model, problem.guide, (x,), sampler="hmc", num_warmup=5,
                            num_samples=5, seed=4, mass_matrix="windowed", adapt="dual_averaging")
    # 5 warm-up transitions are below Stan's buffers: no window, so the mass stays at one.
    assert torch.equal(ones.inverse_mass, torch.ones(5, problem.latent_dim))
    torch.testing.assert_close(ones.z, identity.z)


@pytest.mark.parametrize("sampler, mass, allowed", [("map", "encoder", "'identity'"),
                                                    ("pyro_nuts", "encoder", "'identity' or 'windowed'")])
def test_samplers_refuse_a_mass_matrix_they_cannot_use(problem, sampler, mass, allowed):
    with pytest.raises(ValueError, match=f"takes mass_matrix={allowed} only"):
        sample_posterior(problem.model, problem.guide, (problem.data(2),), sampler=sampler,
                         mass_matrix=mass)


def test_unknown_mass_matrix_is_refused(problem):
    with pytest.raises(ValueError, match="mass_matrix must be 'auto' or one of"):
        sample_posterior(problem.model, problem.guide, (problem.data(2),), mass_matrix="dense")
