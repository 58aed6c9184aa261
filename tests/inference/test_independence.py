"""A point whose potential or gradient is not finite must not change any other point's chain."""

import pyro
import pytest
import torch
from pyro.infer import MCMC

from inference import BatchedHMC, BatchedNUTS, sample_posterior

POISONED = 3


def run(problem, x, sampler):
    options = dict(sampler=sampler, num_chains=2, num_warmup=10, num_samples=15, step_size=0.2,
                   num_leapfrog_steps=4, max_tree_depth=4, seed=11)
    return sample_posterior(problem.model, problem.guide, (x,), **options)


@pytest.mark.parametrize("sampler", ["hmc", "nuts", "map"])
@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
def test_poisoned_point_leaves_the_others_bit_identical(problem, sampler, bad_value):
    x = problem.data(6)
    poisoned = x.clone()
    poisoned[POISONED, 1] = bad_value
    # Pyro's validation would reject the non-finite row up front; here it must reach the sampler.
    with pyro.validation_enabled(False):
        clean_run, bad_run = run(problem, x, sampler), run(problem, poisoned, sampler)

    others = [n for n in range(6) if n != POISONED]
    assert torch.equal(bad_run.z[:, :, others], clean_run.z[:, :, others])
    for name, value in clean_run.sample_stats.items():
        assert torch.equal(bad_run.sample_stats[name][..., others], value[..., others]), name
    assert torch.isfinite(bad_run.z).all() and torch.isfinite(bad_run.final_z).all()
    assert bad_run.sample_stats["diverging"][..., POISONED].all()
    assert bad_run.warmup_stats["diverging"][..., POISONED].all()
    # rejected every time: it never leaves its (finite) starting point
    assert (bad_run.z[:, :, POISONED] == bad_run.z[:, :1, POISONED]).all()


def standard_normal(z):
    return 0.5 * (z * z).sum(-1), z


def trapped_normal(z):
    """Point 0 has a NaN potential and gradient wherever its first coordinate exceeds 0.5."""
    potential, grad = standard_normal(z)
    trap = torch.zeros_like(potential, dtype=torch.bool)
    trap[:, 0] = z[:, 0, 0] > 0.5
    nan = torch.tensor(float("nan"))
    return torch.where(trap, nan, potential), torch.where(trap.unsqueeze(-1), nan, grad)


@pytest.mark.parametrize("kernel_class", [BatchedHMC, BatchedNUTS])
def test_nan_inside_a_trajectory_is_rejected_and_isolated(kernel_class):
    z0 = torch.zeros(2, 5, 2)

    def run_kernel(potential_fn):
        kernel = kernel_class(potential_fn=potential_fn, step_size=0.3,
                              generator=torch.Generator().manual_seed(0))
        mcmc = MCMC(kernel, num_samples=60, warmup_steps=0, initial_params={"z": z0},
                    disable_progbar=True)
        mcmc.run()
        return mcmc.get_samples(group_by_chain=True)["z"][0], kernel.diagnostics()["samples"]

    clean, clean_info = run_kernel(standard_normal)
    trapped, trapped_info = run_kernel(trapped_normal)
    assert torch.equal(trapped[:, :, 1:], clean[:, :, 1:])
    assert torch.equal(trapped_info.diverging[:, :, 1:], clean_info.diverging[:, :, 1:])
    assert torch.isfinite(trapped).all()
    assert (trapped[:, :, 0, 0] <= 0.5).all()  # the trap region is never entered
    assert trapped_info.diverging[:, :, 0].any()
