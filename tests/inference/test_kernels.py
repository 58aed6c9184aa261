import pytest
import torch
from pyro.infer import MCMC

from inference import (BatchedHMC, BatchedMALA, BatchedMAP, BatchedNUTS, HMCInfo, NUTSInfo, PosteriorTarget,
                       StepSizeAdaptation, leapfrog)
from inference.hmc import hmc_init, hmc_step, kinetic_energy
from inference.nuts import _checkpoint_range


def gaussian(scales):
    """Independent Gaussians with per-coordinate scales: U = ½ Σ (z/s)²."""

    def value_and_grad(z):
        return 0.5 * ((z / scales) ** 2).sum(-1), z / scales**2

    return value_and_grad


@pytest.mark.parametrize("kernel_class, info_class", [(BatchedHMC, HMCInfo), (BatchedNUTS, NUTSInfo)])
def test_kernel_runs_inside_pyro_mcmc_and_hands_back_records(problem, kernel_class, info_class):
    x = problem.data(4)
    z0 = torch.zeros(3, 4, problem.latent_dim)
    kernel = kernel_class(problem.model, step_size=0.2, adaptation=StepSizeAdaptation("paper"),
                          generator=torch.Generator().manual_seed(0), progress_every=1)
    mcmc = MCMC(kernel, num_samples=7, warmup_steps=5, initial_params={"z": z0}, disable_progbar=True)
    mcmc.run(x)
    assert mcmc.get_samples(group_by_chain=True)["z"].shape == (1, 7, 3, 4, problem.latent_dim)
    records = kernel.diagnostics()
    assert isinstance(records["samples"], info_class) and isinstance(records["warmup"], info_class)
    assert records["samples"].diverging.shape == (7, 3, 4)
    assert records["warmup"].step_size.shape == (5, 3, 4)
    assert records["divergences"] == int(records["samples"].diverging.sum())
    assert torch.equal(kernel.state.z, mcmc.get_samples(group_by_chain=True)["z"][0, -1])
    # The progress line (refreshed every transition here) shows the last transition's numbers; a
    # formatted "0.000" is truthy, so parse it: a stale record or a wrong field would differ.
    last, progress = records["samples"], kernel.logging()
    accept = float(progress["acc. prob"])
    assert 0.0 <= accept <= 1.0
    assert accept == pytest.approx(float(last.accept_prob[-1].float().mean()), abs=5e-4)
    assert float(progress["step size"]) == pytest.approx(float(kernel.step_size.median()), rel=5e-3)
    assert progress["div."] == int(last.diverging[-1].sum())


def test_kernel_needs_initial_latents(problem):
    mcmc = MCMC(BatchedHMC(problem.model, step_size=0.1), num_samples=2, warmup_steps=0, disable_progbar=True)
    with pytest.raises(ValueError, match="initial_params"):
        mcmc.run(problem.data(2))


def test_map_kernel_has_no_adaptation():
    with pytest.raises(ValueError, match="no step-size adaptation"):
        BatchedMAP(potential_fn=gaussian(torch.ones(2)), step_size=0.1, adaptation=StepSizeAdaptation())


def test_leapfrog_is_reversible_and_second_order():
    value_and_grad = gaussian(torch.tensor([1.0, 0.3]))
    z = torch.tensor([[[0.5, -0.2], [1.0, 0.1]]], dtype=torch.float64)
    p = torch.tensor([[[0.3, 1.0], [-0.7, 0.2]]], dtype=torch.float64)
    potential, grad = value_and_grad(z)
    energy = potential + kinetic_energy(p)
    errors = []
    for eps in (0.02, 0.01):
        step = torch.full(z.shape[:-1], eps, dtype=z.dtype)
        z1, p1, u1, g1 = leapfrog(z, p, grad, step, int(1 / eps), value_and_grad)
        z2, p2, _, _ = leapfrog(z1, p1, g1, -step, int(1 / eps), value_and_grad)
        assert torch.allclose(z2, z, atol=1e-10) and torch.allclose(p2, p, atol=1e-10)
        errors.append((u1 + kinetic_energy(p1) - energy).abs().max())
    assert 3.0 < errors[0] / errors[1] < 5.0  # halving η quarters the energy error


def test_hmc_step_uses_each_chains_step_size():
    value_and_grad = gaussian(torch.ones(2))
    state = hmc_init(torch.zeros(1, 3, 2), value_and_grad)
    step = torch.tensor([[0.1, 1.0, 5.0]])
    _, info = hmc_step(state, value_and_grad, step, 10, torch.Generator().manual_seed(0))
    assert torch.equal(info.step_size, step)
    assert ((info.accept_prob >= 0) & (info.accept_prob <= 1)).all()
    assert info.accept_prob[0, 0] > 0.99 and info.diverging[0, 2]  # η = 5 blows up on N(0, 1)
    assert not info.accepted[0, 2]


def test_nuts_checkpoints_cover_every_balanced_subtree():
    for leaf in range(1, 2**9, 2):
        lowest, highest = _checkpoint_range(leaf)
        starts = [leaf - 2**k + 1 for k in range(1, 10) if (leaf + 1) % 2**k == 0]
        assert sorted(bin(s).count("1") for s in starts) == list(range(lowest, highest + 1))
        # no even leaf between a start and `leaf` reuses that start's slot
        for start in starts:
            between = range(start + 2, leaf, 2)
            assert all(bin(m).count("1") != bin(start).count("1") for m in between)


def test_nuts_stops_at_max_tree_depth():
    value_and_grad = gaussian(torch.ones(2))
    kernel = BatchedNUTS(potential_fn=value_and_grad, step_size=1e-3, max_tree_depth=3,
                         generator=torch.Generator().manual_seed(0))
    mcmc = MCMC(kernel, num_samples=4, warmup_steps=0, initial_params={"z": torch.ones(2, 3, 2)},
                disable_progbar=True)
    mcmc.run()
    info = kernel.diagnostics()["samples"]
    assert (info.tree_depth == 3).all() and (info.num_steps == 7).all()


def _nuts_run(potential_fn, z0, **options):
    kernel = BatchedNUTS(potential_fn=potential_fn, step_size=0.3, max_tree_depth=6,
                         generator=torch.Generator().manual_seed(0), **options)
    mcmc = MCMC(kernel, num_samples=25, warmup_steps=0, initial_params={"z": z0}, disable_progbar=True)
    mcmc.run()
    return mcmc.get_samples(group_by_chain=True)["z"][0], kernel


def test_nuts_evaluates_only_the_chains_still_building(problem):
    x = problem.data(40)
    target = PosteriorTarget(problem.model, (x,), num_chains=2)
    z0 = torch.randn(2, 40, problem.latent_dim, generator=torch.Generator().manual_seed(1))
    gathered, _ = _nuts_run(target, z0)
    lockstep, lockstep_kernel = _nuts_run(lambda z: target.value_and_grad(z), z0)  # no rows method
    assert torch.allclose(gathered, lockstep, atol=1e-5)  # same chains, up to float rounding

    # that the gathered run uses every gradient it computes: test_samplers.py's canonical test
    lockstep_info = lockstep_kernel.diagnostics()["samples"]
    used, computed = lockstep_info.num_steps.sum(), lockstep_info.num_grad_evals.sum()
    assert (lockstep_info.num_grad_evals >= lockstep_info.num_steps).all() and used < 0.9 * computed
    # lockstep: every chain is evaluated as often as the transition's longest trajectory needs
    evals = lockstep_info.num_grad_evals
    assert (evals == evals[:, :1, :1]).all()
    assert torch.equal(evals[:, 0, 0], lockstep_info.num_steps.amax(dim=(1, 2)))


@pytest.mark.parametrize("kernel_class, per_transition", [(BatchedHMC, 4), (BatchedMALA, 1), (BatchedNUTS, None)])
def test_kernels_count_gradient_evaluations_per_chain(kernel_class, per_transition):
    options = {"num_leapfrog_steps": 4} if kernel_class is BatchedHMC else {}
    kernel = kernel_class(potential_fn=gaussian(torch.tensor([1.0, 0.2])), step_size=0.3, jitter=0.3,
                          generator=torch.Generator().manual_seed(0), **options)
    mcmc = MCMC(kernel, num_samples=6, warmup_steps=3, initial_params={"z": torch.ones(2, 3, 2)},
                disable_progbar=True)
    mcmc.run()
    records = kernel.diagnostics()
    per_chain = records["warmup"].num_grad_evals.sum(0) + records["samples"].num_grad_evals.sum(0)
    assert torch.equal(kernel.num_grad_evals, 1 + per_chain)  # the initial evaluation included
    if per_transition is not None:
        assert (records["samples"].num_grad_evals == per_transition).all()


def test_select_chains_takes_every_field_per_chain():
    from inference.hmc import HMCState, select_chains
    take = torch.tensor([[True, False, True]])  # (C=1, N=3)
    new = HMCState(torch.ones(1, 3, 2), torch.ones(1, 3), torch.full((1, 3, 2), 2.0))
    old = HMCState(torch.zeros(1, 3, 2), torch.zeros(1, 3), torch.zeros(1, 3, 2))
    chosen = select_chains(take, new, old)
    assert isinstance(chosen, HMCState)
    assert chosen.z[0, :, 0].tolist() == [1.0, 0.0, 1.0] and chosen.z[0, :, 1].tolist() == [1.0, 0.0, 1.0]
    assert chosen.potential[0].tolist() == [1.0, 0.0, 1.0]
    assert chosen.grad[0, :, 1].tolist() == [2.0, 0.0, 2.0]
