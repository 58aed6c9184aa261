"""Adaptive attacks on the MCMC defence (attacks/adaptive.py): shapes, gradients, and the
gradient path each one promises, on the tiny VAE and its differentiable chain."""

import pytest
import torch

from attacks import (DefendedLatentDistance, EncoderDivergence, PGDConfig, PosteriorShift,
                     ScoreFunctionDistance, pgd_attack)
from inference import UnrolledHMC, initial_latents, sample_posterior

RESTARTS = 2


@pytest.fixture
def chain(vae):
    return UnrolledHMC(vae.model, step_size=0.1, num_transitions=3, num_leapfrog_steps=3, jitter=0.5)


@pytest.fixture
def x_ref(image_factory):
    return image_factory(3)


def identity_chain(x, z0, generator):
    return z0


def attack_point(x_ref):
    """A fixed random point of the ball around every reference, one per restart."""
    noise = torch.rand(x_ref.shape[0] * RESTARTS, *x_ref.shape[1:], generator=torch.Generator().manual_seed(5))
    return (x_ref.repeat_interleave(RESTARTS, 0) + 0.1 * (noise - 0.5)).clamp(0, 1)


def value_and_gradient(objective, x_ref):
    """The bound objective's value and its gradient at :func:`attack_point`."""
    bound = objective.bind(x_ref, restarts=RESTARTS)
    x_adv = attack_point(x_ref).requires_grad_(True)
    value = bound.value(x_adv)
    (gradient,) = torch.autograd.grad(value.sum(), x_adv)
    return value, gradient


def objectives(encode, chain, log_joint, x_ref):
    return {
        "unrolled": DefendedLatentDistance(encode, chain),
        "bpda": DefendedLatentDistance(encode, chain, gradient="bpda"),
        "bpda_eot_skl": DefendedLatentDistance(encode, chain, gradient="bpda", draws=8, skl_weight=1.0),
        "unrolled_eot": DefendedLatentDistance(encode, chain, draws=8),
        "detached_skl": DefendedLatentDistance(encode, chain, gradient="detached", skl_weight=1.0),
        "score_function": ScoreFunctionDistance(encode, chain, log_joint, draws=8),
        "posterior_shift": PosteriorShift(encode, log_joint, x_ref.roll(1, 0)),
    }


@pytest.mark.parametrize("name", ["unrolled", "bpda", "bpda_eot_skl", "unrolled_eot", "detached_skl",
                                  "score_function", "posterior_shift"])
def test_value_per_row_and_a_finite_nonzero_gradient(encode, chain, x_ref, name):
    objective = objectives(encode, chain, chain.log_joint, x_ref)[name]
    value, gradient = value_and_gradient(objective, x_ref)
    assert value.shape == (x_ref.shape[0] * RESTARTS,)
    assert torch.isfinite(value).all() and torch.isfinite(gradient).all()
    assert (gradient.flatten(1).abs().sum(-1) > 0).all()  # every row gets its own gradient


def test_bpda_runs_the_real_chain_forward_and_the_identity_backward(encode, chain, x_ref):
    unrolled, unrolled_gradient = value_and_gradient(DefendedLatentDistance(encode, chain), x_ref)
    bpda, bpda_gradient = value_and_gradient(DefendedLatentDistance(encode, chain, gradient="bpda"), x_ref)
    assert torch.equal(bpda, unrolled)  # same chain, same random numbers
    assert not torch.allclose(bpda_gradient, unrolled_gradient)
    # With a chain that is the identity, BPDA is the plain ‖z0 − z̃_r‖² path, which is then unrolled's.
    plain, plain_gradient = value_and_gradient(DefendedLatentDistance(encode, identity_chain), x_ref)
    through_identity, identity_gradient = value_and_gradient(
        DefendedLatentDistance(encode, identity_chain, gradient="bpda"), x_ref)
    assert torch.equal(through_identity, plain)
    torch.testing.assert_close(identity_gradient, plain_gradient)


def test_bpda_gradient_is_the_chain_output_pulled_back_through_the_start(encode, chain, x_ref):
    """BPDA: ∇_x = (∂z0/∂x)ᵀ · 2(z̃ − z̃_r), z̃ the real chain's output (recorded by a spy)."""
    calls = []

    def spy(x, z0, generator):
        calls.append((z0, chain(x, z0, generator)))
        return calls[-1][1]

    _, gradient = value_and_gradient(DefendedLatentDistance(encode, spy, gradient="bpda"), x_ref)
    (_, reference), (start, final) = calls
    x_adv = attack_point(x_ref).requires_grad_(True)
    loc, scale = encode(x_adv)
    noise = ((start - loc) / scale).detach()  # the start's ξ, to rebuild z0(x) with its graph
    (pulled_back,) = torch.autograd.grad(loc + scale * noise, x_adv,
                                         grad_outputs=2 * (final - reference[0].repeat_interleave(RESTARTS, 0)))
    torch.testing.assert_close(gradient, pulled_back, rtol=1e-4, atol=1e-5)


def test_eot_averages_the_distance_over_its_draws(encode, chain, x_ref):
    calls = []

    def spy(x, z0, generator):
        calls.append((z0.detach(), chain(x, z0, generator).detach()))
        return calls[-1][1]

    value, _ = value_and_gradient(DefendedLatentDistance(encode, spy, gradient="bpda", draws=4), x_ref)
    (_, reference), (start, final) = calls
    assert start.shape == (4, x_ref.shape[0] * RESTARTS, reference.shape[-1])
    assert not torch.equal(start[0], start[1])  # every draw its own start and chain
    reference = reference[0].repeat_interleave(RESTARTS, 0)
    torch.testing.assert_close(value, (final - reference).pow(2).sum(-1).mean(0))


def test_eot_with_one_draw_is_the_single_draw_objective(encode, chain, x_ref):
    single, single_gradient = value_and_gradient(DefendedLatentDistance(encode, chain), x_ref)
    one, one_gradient = value_and_gradient(DefendedLatentDistance(encode, chain, draws=1), x_ref)
    assert torch.equal(one, single) and torch.equal(one_gradient, single_gradient)


def test_detached_gradient_reaches_only_chains_that_never_moved(encode, x_ref):
    def moved_chain(x, z0, generator):
        return z0 + 1.0

    _, moved = value_and_gradient(DefendedLatentDistance(encode, moved_chain, gradient="detached"), x_ref)
    assert torch.equal(moved, torch.zeros_like(moved))
    _, still = value_and_gradient(DefendedLatentDistance(encode, identity_chain, gradient="detached"), x_ref)
    _, bpda = value_and_gradient(DefendedLatentDistance(encode, identity_chain, gradient="bpda"), x_ref)
    assert torch.equal(still, bpda) and still.abs().sum() > 0


def test_skl_weight_adds_the_encoder_attack(encode, chain, x_ref):
    without, _ = value_and_gradient(DefendedLatentDistance(encode, chain, gradient="bpda"), x_ref)
    with_skl, _ = value_and_gradient(DefendedLatentDistance(encode, chain, gradient="bpda", skl_weight=2.0), x_ref)
    skl, _ = value_and_gradient(EncoderDivergence(encode), x_ref)
    torch.testing.assert_close(with_skl, without + 2.0 * skl)


def test_score_function_gradient_matches_the_analytic_one_on_a_gaussian_posterior():
    """p(z|x) = N(xA + c, Σ) exactly: ∇_x E‖z − r‖² = 2(xA + c − r)Aᵀ; the chain is an exact sampler."""
    generator = torch.Generator().manual_seed(0)
    weight, noise_scale = torch.randn(5, 2, generator=generator, dtype=torch.float64), 0.7
    covariance = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + weight.T @ weight / noise_scale**2)
    gain = weight @ covariance / noise_scale**2  # posterior mean = x @ gain
    cholesky = torch.linalg.cholesky(covariance)

    def exact_posterior(x, z0, generator):
        draws = torch.randn(z0.shape, generator=generator, dtype=z0.dtype)
        return x @ gain + draws @ cholesky.T

    def log_likelihood(x, z):
        return torch.distributions.Normal(z @ weight.T, noise_scale).log_prob(x).sum(-1)

    def encode(x):
        return x @ gain, torch.ones(x.shape[0], 2, dtype=x.dtype)

    x_ref = torch.rand(2, 5, generator=generator, dtype=torch.float64)
    objective = ScoreFunctionDistance(encode, exact_posterior, log_likelihood, draws=20000, seed=1)
    bound = objective.bind(x_ref, restarts=1)
    replay = torch.Generator().manual_seed(1)  # the bind-time reference, drawn as bind draws it
    torch.randn((1, 2, 2), generator=replay, dtype=torch.float64)
    z_ref = exact_posterior(x_ref, torch.zeros(1, 2, 2, dtype=torch.float64), replay)[0]
    x_adv = (x_ref + 0.05).requires_grad_(True)
    (gradient,) = torch.autograd.grad(bound.value(x_adv).sum(), x_adv)
    analytic = 2 * (x_adv.detach() @ gain - z_ref) @ gain.T
    assert torch.linalg.norm(gradient - analytic) < 0.1 * torch.linalg.norm(analytic)


def test_posterior_shift_is_the_likelihood_ratio_of_the_two_codes(encode, chain, x_ref):
    x_target = x_ref.roll(1, 0)
    value, _ = value_and_gradient(PosteriorShift(encode, chain.log_joint, x_target, skl_weight=0.0), x_ref)
    x_adv = attack_point(x_ref)
    codes = [encode(x)[0].repeat_interleave(RESTARTS, 0)[None] for x in (x_target, x_ref)]
    expected = chain.log_joint(x_adv, codes[0]) - chain.log_joint(x_adv, codes[1])
    torch.testing.assert_close(value, expected[0])


@pytest.mark.parametrize("gradient", ["unrolled", "bpda"])
def test_pgd_raises_the_defended_distance(encode, chain, x_ref, gradient):
    """Three paper-default steps (lr 1) at radius 0.2 beat radius 0 (x_a = x_r), both scored
    by a 32-draw estimate of E‖z̃_a − z̃_r‖² with its own random numbers."""
    objective = DefendedLatentDistance(encode, chain, gradient=gradient, draws=2)
    config = PGDConfig(num_steps=3, restarts=RESTARTS)
    result = pgd_attack(objective, x_ref, radii=[0.0, 0.2], config=config, generator=torch.Generator().manual_seed(0))
    assert result.objective.shape == (2, x_ref.shape[0], RESTARTS)
    score = DefendedLatentDistance(encode, chain, gradient="bpda", draws=32, seed=7).bind(x_ref, restarts=RESTARTS)
    with torch.no_grad():
        clean, attacked = (score.value(adversarial.flatten(0, 1)).mean() for adversarial in result.adversarial)
    assert attacked > 1.3 * clean


@pytest.mark.parametrize("make, message", [
    (lambda e, c: DefendedLatentDistance(e, c, gradient="straight"), "gradient must be one of"),
    (lambda e, c: DefendedLatentDistance(e, c, draws=0), "draws must be >= 1"),
    (lambda e, c: DefendedLatentDistance(e, c, skl_weight=-1.0), "skl_weight"),
    (lambda e, c: ScoreFunctionDistance(e, c, c.log_joint, draws=1), "draws must be >= 2"),
    (lambda e, c: PosteriorShift(e, c.log_joint, torch.zeros(1, 1, 28, 28), skl_weight=float("nan")), "skl_weight"),
])
def test_bad_settings_are_refused(encode, chain, make, message):
    with pytest.raises(ValueError, match=message):
        make(encode, chain)


def test_posterior_shift_needs_one_target_per_reference(encode, chain, x_ref):
    with pytest.raises(ValueError, match="one row per reference"):
        PosteriorShift(encode, chain.log_joint, x_ref[:1]).bind(x_ref, restarts=RESTARTS)


@pytest.mark.parametrize("jitter", [0.0, 0.5])
def test_the_chain_attacked_is_the_defence_on_the_vae(vae, x_ref, jitter):
    """UnrolledHMC on the tiny VAE equals sample_posterior("hmc") with the traced potential the
    defence runs by default, under the same seed."""
    samples = sample_posterior(vae.model, vae.guide, (x_ref,), sampler="hmc", num_chains=2, num_warmup=0,
                               num_samples=3, step_size=0.1, num_leapfrog_steps=3, adapt=None, mass_matrix="identity",
                               jitter=jitter, seed=4)
    generator = torch.Generator().manual_seed(4)
    z0 = initial_latents(vae.guide, (x_ref,), num_chains=2, generator=generator)
    chain = UnrolledHMC(vae.model, step_size=0.1, num_transitions=3, num_leapfrog_steps=3, jitter=jitter)
    state, info = chain.run((x_ref.clone().requires_grad_(True),), z0, generator)
    # The decisions exactly (a flip needs the uniform within rounding of the acceptance
    # probability); the states, computed by two code paths whose float32 rounding may differ
    # across torch versions and devices, to a tolerance far below one wrong step.
    assert torch.equal(info.accepted.transpose(0, 1), samples.sample_stats["accepted"])
    torch.testing.assert_close(state.z.detach(), samples.final_z, rtol=1e-5, atol=1e-5)
