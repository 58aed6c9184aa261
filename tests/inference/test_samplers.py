"""The sampler registry and what every run records about its cost."""

import pyro
import pytest
import torch

import inference.api
from inference import SAMPLERS, BatchedHMC, SamplerRegistry, SamplerSpec, sample_posterior
from pyro_vae import ConvVAE, VAEConfig, batch_of, load_dataset, pretrained
from pyro_vae.hvae import HierarchicalVAE, HVAEConfig


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
    else:  # NUTS: the chains' own tree sizes (that they are all used: the test below)
        assert evals.unique().numel() > 1


def _linear_gaussian(request):
    problem = request.getfixturevalue("problem")
    return problem.model, problem.guide, problem.data(4), "z"


def _random_vae(request):
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig()).eval().requires_grad_(False)
    return vae.model, vae.guide, torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1)), "z"


def _random_hvae(request):
    torch.manual_seed(0)
    hvae = HierarchicalVAE(HVAEConfig(width=8, latent_channels=(2, 2, 2))).requires_grad_(False)
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    return hvae.model, hvae.guide, x, hvae.latent_sites


def _zoo_vae(request):
    """The zoo's trained MNIST VAE on the first test images: the trees of a real posterior."""
    test = load_dataset("mnist", request.getfixturevalue("mnist_root"), download=False).test
    vae = pretrained("mnist").requires_grad_(False)
    return vae.model, vae.guide, batch_of(test, torch.arange(4))[0], "z"


POSTERIORS = {"linear_gaussian": _linear_gaussian, "random_vae": _random_vae,
              "random_hvae": _random_hvae, "zoo_vae": _zoo_vae}


@pytest.mark.parametrize("sampler, posterior, mass_matrix", [
    ("nuts", "linear_gaussian", "identity"),
    ("nuts", "linear_gaussian", "encoder"),  # the whitened rows
    ("nuts", "random_vae", "auto"),
    ("nuts", "random_hvae", "auto"),  # several sites in one flat z
    ("nuts", "zoo_vae", "auto"),
    ("hmc", "random_vae", "auto"),
])
def test_every_gradient_evaluation_is_used(request, sampler, posterior, mass_matrix):
    """The canonical test of n_grad_evals = n_steps in every transition, warm-up included: NUTS
    integrates only the chains still extending their trees, HMC its L steps. The trees differ
    in size between chains, so a NUTS that evaluates every chain as long as the deepest tree
    (lockstep, see test_kernels.py) fails it."""
    model, guide, x, sites = POSTERIORS[posterior](request)
    with pyro.validation_enabled(False):
        result = sample_posterior(model, guide, (x,), sampler=sampler, num_chains=2, num_warmup=3,
                                  num_samples=4, step_size=0.1, num_leapfrog_steps=3, max_tree_depth=5,
                                  mass_matrix=mass_matrix, latent_site=sites, seed=0)
    for stats in (result.warmup_stats, result.sample_stats):
        assert torch.equal(stats["n_grad_evals"], stats["n_steps"])
    steps = torch.cat([result.warmup_stats["n_steps"], result.sample_stats["n_steps"]], 1)
    if sampler == "nuts":  # some transition where the chains' trees differ
        assert (steps.amax(dim=(0, 2)) > steps.amin(dim=(0, 2))).any()
    else:
        assert (steps == 3).all()


def test_stock_references_do_not_claim_a_count(problem):
    result = sample_posterior(problem.model, problem.guide, (problem.data(1),), sampler="pyro_hmc", num_chains=1,
                              num_warmup=2, num_samples=4, num_leapfrog_steps=2, seed=0)
    assert result.num_grad_evals is None and "n_grad_evals" not in result.sample_stats
