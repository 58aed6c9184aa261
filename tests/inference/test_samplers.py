"""The sampler registry and what every run records about its cost."""

import pytest
import torch

import inference.api
from inference import SAMPLERS, BatchedHMC, SamplerRegistry, SamplerSpec, sample_posterior


def test_registry_lists_the_samplers_by_name():
    assert tuple(SAMPLERS) == ("hmc", "nuts", "map", "mala", "chees", "pyro_hmc", "pyro_nuts")
    assert "mala" in SAMPLERS and SAMPLERS["mala"].num_leapfrog_steps == 1
    with pytest.raises(ValueError, match="already registered"):
        SamplerRegistry([SAMPLERS["hmc"], SAMPLERS["hmc"]])
    with pytest.raises(ValueError, match="exactly one of `kernel` or `runner`"):
        SamplerSpec("empty")
    with pytest.raises(ValueError, match="default_adapt"):
        SamplerSpec("odd", kernel=BatchedHMC, adapt_kinds=(), default_adapt="paper")


class TwoStepHMC(BatchedHMC):
    """A new sampler is a kernel class ..."""

    @classmethod
    def _config_options(cls, config):
        return {"num_leapfrog_steps": 2}


def test_one_registration_makes_a_sampler_usable(problem, monkeypatch):
    # ... plus one registration; sample_posterior needs nothing else.
    registry = SamplerRegistry(SAMPLERS.values())
    registry.register(SamplerSpec("two_step", kernel=TwoStepHMC, default_adapt="paper", jitter=0.1))
    monkeypatch.setattr(inference.api, "SAMPLERS", registry)
    result = sample_posterior(problem.model, problem.guide, (problem.data(3),), sampler="two_step",
                              num_warmup=2, num_samples=3, seed=0)
    assert (result.config.adapt, result.config.target_accept, result.config.jitter) == ("paper", 0.9, 0.1)
    assert (result.sample_stats["n_steps"] == 2).all()


@pytest.mark.parametrize("sampler, per_transition", [("hmc", 5), ("mala", 1), ("map", 1), ("nuts", None)])
def test_every_run_records_gradient_evaluations_per_chain_and_point(problem, sampler, per_transition):
    result = sample_posterior(problem.model, problem.guide, (problem.data(4),), sampler=sampler, num_chains=2,
                              num_warmup=6, num_samples=9, num_leapfrog_steps=5, max_tree_depth=4, step_size=0.2,
                              seed=0)
    evals = result.num_grad_evals
    assert evals.shape == (2, 4) and evals.dtype == torch.int64
    stats = result.sample_stats["n_grad_evals"], result.warmup_stats["n_grad_evals"]
    assert stats[0].shape == (2, 9, 4) and stats[1].shape == (2, 6, 4)
    assert torch.equal(evals, 1 + stats[0].sum(1) + stats[1].sum(1))
    if per_transition is not None:
        assert torch.equal(evals, torch.full((2, 4), 1 + 15 * per_transition))
    else:  # NUTS: the chains' own tree sizes, all of them used
        assert torch.equal(result.sample_stats["n_grad_evals"], result.sample_stats["n_steps"])
        assert evals.unique().numel() > 1


def test_stock_references_do_not_claim_a_count(problem):
    result = sample_posterior(problem.model, problem.guide, (problem.data(1),), sampler="pyro_hmc", num_chains=1,
                              num_warmup=2, num_samples=4, num_leapfrog_steps=2, seed=0)
    assert result.num_grad_evals is None and "n_grad_evals" not in result.sample_stats
