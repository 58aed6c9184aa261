import pytest
import torch

from inference import SAMPLERS, BatchedHMC, BatchedMAP, StepSizeAdaptation, sample_posterior


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sampler="slice"), "unknown sampler 'slice'; choose one of " + ", ".join(SAMPLERS)),
        (dict(step_size=0.0), "step_size must be > 0"),
        (dict(step_size=-0.1), "step_size must be > 0"),
        (dict(num_leapfrog_steps=0), r"num_leapfrog_steps \(L\) must be >= 1"),
        (dict(num_chains=0), "num_chains must be >= 1"),
        (dict(num_samples=0), "num_samples must be >= 1"),
        (dict(num_warmup=-1), "num_warmup must be >= 0"),
        (dict(max_tree_depth=0), "max_tree_depth must be >= 1"),
        (dict(init="mode"), "init must be 'sample', 'mean' or a tensor"),
        (dict(init=torch.zeros(4, 3)), r"initial latents must have shape \(3, 3\)"),
        (dict(init=torch.full((3, 3), float("nan"))), "initial latents must be finite"),
        (dict(adapt="robbins_monro"), "adapt must be"),
        (dict(sampler="map", adapt="paper"), "no step-size adaptation"),
        (dict(sampler="pyro_hmc", adapt="paper"), "adapts by 'dual_averaging' only"),
        (dict(jitter=1.0), r"jitter must be in \[0, 1\)"),
        (dict(jitter=-0.1), r"jitter must be in \[0, 1\)"),
        (dict(sampler="map", jitter=0.2), "no step-size jitter"),
        (dict(sampler="pyro_nuts", jitter=0.2), "no step-size jitter"),
    ],
)
def test_bad_arguments_raise_clear_errors(problem, kwargs, message):
    x = problem.data(3)
    with pytest.raises(ValueError, match=message):
        sample_posterior(problem.model, problem.guide, (x,), **kwargs)


def test_kernel_checks_its_arguments(problem):
    with pytest.raises(ValueError, match="exactly one"):
        BatchedHMC(step_size=0.1)
    with pytest.raises(ValueError, match="num_leapfrog_steps must be >= 1"):
        BatchedHMC(problem.model, step_size=0.1, num_leapfrog_steps=0)
    with pytest.raises(ValueError, match="step_size must be > 0"):
        BatchedHMC(problem.model, step_size=0.0)
    with pytest.raises(ValueError, match="target_accept"):
        StepSizeAdaptation("paper", target_accept=1.5)
    with pytest.raises(ValueError, match=r"jitter must be in \[0, 1\)"):
        BatchedHMC(problem.model, step_size=0.1, jitter=1.5)
    with pytest.raises(ValueError, match="no step-size jitter"):
        BatchedMAP(problem.model, step_size=0.1, jitter=0.1)
