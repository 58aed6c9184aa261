import pytest
import torch

from inference import sample_posterior


@pytest.mark.parametrize("sampler", ["hmc", "nuts", "map"])
def test_same_seed_same_run_other_seed_other_run(problem, sampler):
    x = problem.data(5)
    options = dict(sampler=sampler, num_chains=2, num_warmup=5, num_samples=8, num_leapfrog_steps=3,
                   max_tree_depth=4, step_size=0.2)
    first = sample_posterior(problem.model, problem.guide, (x,), seed=7, **options)
    again = sample_posterior(problem.model, problem.guide, (x,), seed=7, **options)
    other = sample_posterior(problem.model, problem.guide, (x,), seed=8, **options)
    assert torch.equal(first.z, again.z)
    assert all(torch.equal(v, again.sample_stats[k]) for k, v in first.sample_stats.items())
    assert not torch.equal(first.z, other.z)
    assert first.config.seed == 7


def test_unseeded_runs_record_their_seed(problem):
    x = problem.data(3)
    options = dict(num_chains=2, num_warmup=2, num_samples=3, num_leapfrog_steps=2)
    first = sample_posterior(problem.model, problem.guide, (x,), **options)
    replay = sample_posterior(problem.model, problem.guide, (x,), seed=first.config.seed, **options)
    assert torch.equal(first.z, replay.z)


def test_init_mean_starts_every_chain_at_the_encoder_mean(problem):
    x = problem.data(3)
    result = sample_posterior(problem.model, problem.guide, (x,), sampler="map", init="mean",
                              num_chains=2, num_warmup=0, num_samples=1, step_size=1e-3, seed=0)
    # One Adam step of size 1e-3 moves each coordinate by at most about 1e-3, so the first draw of
    # every chain sits at the guide's mean 0.3·(x − b)·W (conftest's encoder), not at a shared but
    # wrong start (a guide draw, zeros, the prior's mean): those are more than 0.1 away.
    encoder_mean = 0.3 * (x - problem.bias) @ problem.weight
    assert encoder_mean.abs().max() > 0.1
    assert torch.allclose(result.z[:, 0], encoder_mean.expand(2, -1, -1), atol=2e-3)
    assert result.config.init == "mean"


def test_given_initial_latents_start_each_chain_there(problem):
    x = problem.data(3)
    start = torch.stack([torch.full((3, 3), 5.0), torch.full((3, 3), -5.0)])  # (C, N, D)
    result = sample_posterior(problem.model, problem.guide, (x,), sampler="map", init=start,
                              num_chains=2, num_warmup=0, num_samples=1, step_size=1e-4, seed=0)
    # one Adam step of size 1e-4 moves each coordinate by at most about 1e-4
    assert torch.allclose(result.z[:, 0], start, atol=1e-3)
    assert result.config.init == "given"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("sampler", ["hmc", "nuts"])
def test_cuda_path_stays_on_the_device(problem, sampler):
    device = torch.device("cuda")
    cuda_problem = problem.to(device)
    x = problem.data(8).to(device)
    result = sample_posterior(cuda_problem.model, cuda_problem.guide, (x,), sampler=sampler, num_chains=2,
                              num_warmup=5, num_samples=5, num_leapfrog_steps=3, max_tree_depth=3, seed=0)
    assert result.z.device.type == "cuda" and result.step_size.device.type == "cuda"
    assert all(v.device.type == "cuda" for v in result.sample_stats.values())
    assert torch.isfinite(result.z).all()
