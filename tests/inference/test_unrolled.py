"""The differentiable chain (inference/unrolled.py): the defence's own algorithm (the same random
numbers and Metropolis decisions, the same states up to float rounding), with gradients to the
data that match finite differences."""

import pytest
import torch

from inference import UnrolledHMC, initial_latents, sample_posterior
from inference.unrolled import draw_chain_noise

NUM_CHAINS, NUM_TRANSITIONS, NUM_LEAPFROG, STEP = 3, 5, 4, 0.4


@pytest.mark.parametrize("jitter", [0.0, 0.5])
@pytest.mark.parametrize("compile_potential", [True, False])
@pytest.mark.parametrize("mass_matrix", ["identity", "encoder"])
def test_forward_pass_is_the_defence(problem, jitter, compile_potential, mass_matrix):
    x = problem.data(6)
    samples = sample_posterior(problem.model, problem.guide, (x,), sampler="hmc", num_chains=NUM_CHAINS,
                               num_warmup=0, num_samples=NUM_TRANSITIONS, step_size=STEP,
                               num_leapfrog_steps=NUM_LEAPFROG, adapt=None, mass_matrix=mass_matrix,
                               jitter=jitter, seed=3, compile_potential=compile_potential)
    generator = torch.Generator().manual_seed(3)
    z0 = initial_latents(problem.guide, (x,), num_chains=NUM_CHAINS, generator=generator)
    chain = UnrolledHMC(problem.model, step_size=STEP, num_transitions=NUM_TRANSITIONS,
                        num_leapfrog_steps=NUM_LEAPFROG, jitter=jitter, mass_matrix=mass_matrix,
                        guide=problem.guide)
    # With a graph to x.
    state, info = chain.run((x.clone().requires_grad_(True),), z0, generator)
    assert state.z.requires_grad
    accepted = info.accepted.transpose(0, 1)  # (C, K, N) like the sampler's stats
    assert 0.0 < accepted.float().mean() < 1.0  # both branches of the Metropolis test are taken
    # Exact where exactness is guaranteed: the step sizes come from the same generator stream
    # through the same function (jittered_step_size), and a Metropolis decision flips only if
    # the uniform falls within float rounding of the acceptance probability. The states are
    # computed by two code paths (a graph-keeping leapfrog against the sampler's traced
    # potential), whose float32 rounding may differ across torch versions and devices: a tight
    # tolerance, far below any real difference (one wrong momentum or decision moves z by O(0.1)).
    assert torch.equal(accepted, samples.sample_stats["accepted"])
    assert torch.equal(info.step_size.transpose(0, 1), samples.sample_stats["step_size"])
    torch.testing.assert_close(state.z.detach(), samples.final_z, rtol=1e-5, atol=1e-5)


def test_no_grad_and_uncheckpointed_runs_give_the_same_chain(problem):
    x = problem.data(4)
    z0 = initial_latents(problem.guide, (x,), num_chains=2, generator=torch.Generator().manual_seed(0))
    runs = []
    for checkpoint, grad in ((True, True), (False, True), (False, False)):
        chain = UnrolledHMC(problem.model, step_size=STEP, num_transitions=3, num_leapfrog_steps=3,
                            jitter=0.5, checkpoint=checkpoint)
        with torch.set_grad_enabled(grad):
            runs.append(chain(x, z0, torch.Generator().manual_seed(1)))
    assert all(torch.equal(runs[0], run) for run in runs[1:])


def test_gradient_to_the_data_matches_finite_differences(problem):
    """x -> z_K through the start z0 = loc(x) + 0.5·ξ and the potential, in float64."""
    x = problem.data(2).double()
    problem = type(problem)(problem.weight.double(), problem.bias.double(), problem.noise)
    noise = torch.randn(2, 2, problem.latent_dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    projection = torch.randn(2, 2, problem.latent_dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def defended(x, checkpoint=False):
        z0 = 0.3 * (x - problem.bias) @ problem.weight + 0.5 * noise  # the guide's q(z|x), reparameterised
        chain = UnrolledHMC(problem.model, step_size=0.3, num_transitions=2, num_leapfrog_steps=3,
                            jitter=0.5, checkpoint=checkpoint)
        state, info = chain.run((x,), z0, torch.Generator().manual_seed(2))
        assert info.accepted.any()
        return (state.z * projection).sum()

    x = x.requires_grad_(True)
    assert torch.autograd.gradcheck(defended, (x,), eps=1e-6, atol=1e-6)
    (without,) = torch.autograd.grad(defended(x), x)
    (with_checkpoints,) = torch.autograd.grad(defended(x, checkpoint=True), x)
    assert torch.isfinite(with_checkpoints).all() and with_checkpoints.abs().sum() > 0
    torch.testing.assert_close(with_checkpoints, without, rtol=1e-12, atol=1e-12)


def test_log_joint_is_the_models_and_differentiable(problem):
    x = problem.data(3).requires_grad_(True)
    z = torch.randn(2, 3, problem.latent_dim, generator=torch.Generator().manual_seed(0))
    log_joint = UnrolledHMC(problem.model, step_size=0.1, num_transitions=1).log_joint(x, z)
    torch.testing.assert_close(log_joint, problem.log_joint(x, z))
    (gradient,) = torch.autograd.grad(log_joint.sum(), x)
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0


@pytest.mark.parametrize("options, message", [
    (dict(num_transitions=0), "num_transitions"),
    (dict(num_leapfrog_steps=0), "num_leapfrog_steps"),
    (dict(jitter=1.0), "jitter"),
    (dict(step_size=0.0), "step_size"),
    (dict(mass_matrix="windowed"), "mass_matrix must be"),
    (dict(mass_matrix="encoder"), "needs the guide"),
])
def test_bad_settings_are_refused(problem, options, message):
    with pytest.raises(ValueError, match=message):
        UnrolledHMC(problem.model, **({"step_size": 0.1, "num_transitions": 2} | options))


def test_bad_start_is_refused_before_any_work(problem):
    chain = UnrolledHMC(problem.model, step_size=0.1, num_transitions=2)
    with pytest.raises(ValueError, match="z0 must have shape"):
        chain(problem.data(3), torch.zeros(3, problem.latent_dim), None)
    with pytest.raises(ValueError, match="num_transitions"):
        draw_chain_noise(torch.ones(2, 3), 4, 0, jitter=0.0, generator=None)
