"""The non-centred parametrisation: exact maps between z and the standardised noise ε, the
defaults that choose it, and its errors. (Its recovery of a closed-form coupled posterior is in
test_recovery.py.)"""

import pyro
import pyro.distributions as dist
import pytest
import torch

from inference import LatentLayout, sample_posterior
from inference.parametrisation import NonCentred, noise_site
from pyro_vae.hvae import LATENT_SITES, HierarchicalVAE, HVAEConfig


def two_level_map(problem, x):
    layout = LatentLayout(problem.sites, ((problem.dim,), (problem.dim,)))
    return NonCentred(problem.model, (x,), layout)


def test_noise_of_the_two_level_model_is_its_closed_form(two_level_problem):
    problem = two_level_problem
    x = problem.data(5)
    z = torch.randn(3, 5, 2 * problem.dim, generator=torch.Generator().manual_seed(0))
    top, low = z[..., :problem.dim], z[..., problem.dim:]
    eps = two_level_map(problem, x).to_noise(z)
    expected = torch.cat([top, (low - problem.coupling * top) / problem.spread], dim=-1)
    assert torch.allclose(eps, expected, atol=1e-6)
    assert torch.allclose(two_level_map(problem, x).to_latent(eps), z, atol=1e-6)


def test_noise_variance_divides_by_the_prior_scale(two_level_problem):
    problem = two_level_problem
    x = problem.data(4)
    variance = torch.rand(4, 2 * problem.dim) + 0.1
    scaled = two_level_map(problem, x).noise_variance(variance, at=torch.zeros(4, 2 * problem.dim))
    assert torch.allclose(scaled[:, :problem.dim], variance[:, :problem.dim])
    assert torch.allclose(scaled[:, problem.dim:], variance[:, problem.dim:] / problem.spread**2)


def test_hierarchical_vae_round_trips_between_z_and_noise():
    torch.manual_seed(0)
    vae = HierarchicalVAE(HVAEConfig(width=8, latent_channels=(2, 2, 2))).requires_grad_(False)
    images = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    layout = LatentLayout(LATENT_SITES, tuple(vae.latent_shapes[s] for s in LATENT_SITES))
    mapping = NonCentred(vae.model, (images,), layout)
    assert mapping.latent_site == tuple(noise_site(s) for s in LATENT_SITES)
    z = torch.randn(2, 5, 3, layout.dim, generator=torch.Generator().manual_seed(2))  # 2×5 copies
    eps = mapping.to_noise(z)
    assert eps.shape == z.shape
    assert torch.equal(eps[..., layout.slices["z3"]], z[..., layout.slices["z3"]])  # prior N(0, I)
    assert not torch.allclose(eps, z)
    assert torch.allclose(mapping.to_latent(eps), z, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="expected latents of shape"):
        mapping.to_noise(z[..., :-1])


def test_a_hierarchy_is_sampled_non_centred_by_default_and_a_flat_model_centred(
        two_level_problem, problem):
    x = problem.data(4)
    options = dict(num_chains=2, num_warmup=2, num_samples=4, seed=0)
    flat = sample_posterior(problem.model, problem.guide, (x,), **options)
    assert flat.config.parametrisation == "centred"
    x2 = two_level_problem.data(4)
    nested = sample_posterior(two_level_problem.model, two_level_problem.guide, (x2,),
                              latent_site=two_level_problem.sites, **options)
    assert nested.config.parametrisation == "noncentred"
    assert nested.config.latent_site == two_level_problem.sites  # the caller's sites, in z
    assert nested.z.shape == (2, 4, 4, 2 * two_level_problem.dim)
    centred = sample_posterior(two_level_problem.model, two_level_problem.guide, (x2,),
                               latent_site=two_level_problem.sites, parametrisation="centred",
                               **options)
    assert centred.config.parametrisation == "centred"
    for paper in ("map", "pyro_hmc"):
        assert sample_posterior(problem.model, problem.guide, (x,), sampler=paper,
                                **options).config.parametrisation == "centred"


def test_non_centring_a_standard_normal_prior_changes_nothing(problem):
    """ε = (z − 0) / 1 and z = 0 + 1·ε are exact in floating point, so the two runs see the
    same numbers at every step."""
    x = problem.data(6)
    options = dict(num_chains=2, num_warmup=5, num_samples=5, seed=3)
    centred = sample_posterior(problem.model, problem.guide, (x,), **options)
    noncentred = sample_posterior(problem.model, problem.guide, (x,),
                                  parametrisation="noncentred", **options)
    assert torch.equal(centred.z, noncentred.z)
    assert torch.equal(centred.final_z, noncentred.final_z)


def test_a_prior_that_is_not_normal_is_refused_before_sampling():
    def model(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Laplace(x.new_zeros(2), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(x, 1.0).to_event(1))

    with pytest.raises(ValueError, match="needs a Normal prior at latent site 'z', got Laplace"):
        sample_posterior(model, guide, (torch.zeros(3, 2),), parametrisation="noncentred",
                         num_warmup=1, num_samples=1)


@pytest.mark.parametrize("sampler, parametrisation, message", [
    ("map", "noncentred", "takes parametrisation='centred' only"),
    ("hmc", "whitened", "parametrisation must be 'auto' or one of"),
])
def test_bad_parametrisations_are_refused(problem, sampler, parametrisation, message):
    with pytest.raises(ValueError, match=message):
        sample_posterior(problem.model, problem.guide, (problem.data(2),), sampler=sampler,
                         parametrisation=parametrisation, num_warmup=1, num_samples=1)
