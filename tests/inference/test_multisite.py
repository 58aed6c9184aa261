"""Several latent sites (a hierarchical VAE's groups) sampled jointly as one flat z."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from inference import (LatentLayout, PosteriorTarget, draw_initial_latents, sample_posterior,
                       summarize, summarize_sites, to_inference_data)
from pyro_vae.hvae import LATENT_SITES, HierarchicalVAE, HVAEConfig

SIZES = {"z3": 2 * 16, "z2": 2 * 49, "z1": 2 * 196}  # latent_channels = (2, 2, 2)
DIM = sum(SIZES.values())


@pytest.fixture(scope="module")
def hvae():
    torch.manual_seed(0)
    return HierarchicalVAE(HVAEConfig(width=8, latent_channels=(2, 2, 2))).requires_grad_(False)


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def test_layout_splits_the_flat_vector_into_the_sites():
    layout = LatentLayout(("a", "b"), ((2,), (1, 3)))
    assert layout.dim == 5 and layout.slices == {"a": slice(0, 2), "b": slice(2, 5)}
    z = torch.arange(10.0).view(2, 5)
    parts = layout.split(z)
    assert torch.equal(parts["a"], z[:, :2]) and torch.equal(parts["b"], z[:, 2:].view(2, 1, 3))
    with pytest.raises(ValueError, match="last dimension of 5"):
        layout.split(torch.zeros(2, 4))


@pytest.mark.parametrize("compile", [True, False], ids=["traced", "handler"])
def test_potential_is_minus_the_models_log_density_over_every_group(hvae, images, compile):
    target = PosteriorTarget(hvae.model, (images,), latent_site=LATENT_SITES, num_chains=2,
                             compile=compile)
    assert target.compiled == compile
    assert target.layout.sites == LATENT_SITES and target.latent_dim == DIM
    z = torch.randn(2, 3, DIM, generator=torch.Generator().manual_seed(2))
    values = {site: z.reshape(6, DIM)[:, part].reshape(6, *hvae.latent_shapes[site])
              for site, part in target.layout.slices.items()}
    trace = poutine.trace(poutine.condition(hvae.model, data=values)).get_trace(images.repeat(2, 1, 1, 1))
    trace.compute_log_prob()
    expected = sum(site["log_prob"] for site in trace.nodes.values()
                   if site["type"] == "sample" and site["name"] != "data")
    potential, grad = target.value_and_grad(z)
    assert torch.allclose(potential, -expected.view(2, 3), rtol=1e-5, atol=1e-3)
    assert grad.shape == z.shape and torch.isfinite(grad).all()
    rows = torch.tensor([4, 1])  # chain 1 point 1, chain 0 point 1
    row_potential, row_grad = target.value_and_grad_rows(z.view(6, DIM)[rows], rows)
    assert torch.allclose(row_potential, potential.view(6)[rows], rtol=1e-5, atol=1e-3)
    assert torch.allclose(row_grad, grad.view(6, DIM)[rows], rtol=1e-4, atol=1e-4)


def test_a_group_left_out_is_named(hvae, images):
    with pytest.raises(ValueError, match="another unobserved sample site 'z1'"):
        PosteriorTarget(hvae.model, (images,), latent_site=("z3", "z2"))


def test_initial_latents_are_ancestral_draws_from_the_guide(hvae, images):
    mean, layout = draw_initial_latents(hvae.guide, (images,), num_chains=2, init="mean",
                                        latent_site=LATENT_SITES)
    params = hvae.encode_sites(images)  # every group at the means above it
    expected = torch.cat([params[site][0].flatten(1) for site in LATENT_SITES], dim=1)
    assert mean.shape == (2, 3, DIM) and layout.sizes == tuple(SIZES.values())
    assert torch.allclose(mean[0], expected, atol=1e-6) and torch.equal(mean[0], mean[1])

    def draw(seed):
        generator = torch.Generator().manual_seed(seed)
        return draw_initial_latents(hvae.guide, (images,), num_chains=2,
                                    latent_site=LATENT_SITES, generator=generator)[0]

    first = draw(5)
    assert torch.equal(first, draw(5)) and not torch.equal(first, draw(6))
    assert not torch.equal(first[0], first[1])
    # z1's guide distribution was read at the drawn z3, z2 (not at their means)
    top_fixed = {site: part for site, part in layout.split(first[0]).items() if site != "z1"}
    trace = poutine.trace(poutine.condition(hvae.guide, data=top_fixed)).get_trace(images)
    assert not torch.allclose(trace.nodes["z1"]["fn"].base_dist.loc, params["z1"][0])


@pytest.mark.parametrize("sampler", ["hmc", "nuts", "mala", "map"])
def test_every_batched_sampler_updates_all_groups_jointly(hvae, images, sampler):
    samples = sample_posterior(hvae.model, hvae.guide, (images[:2],), sampler=sampler,
                               num_chains=2, num_warmup=2, num_samples=4, step_size=0.01,
                               num_leapfrog_steps=3, max_tree_depth=3, latent_site=LATENT_SITES,
                               seed=0)
    assert samples.z.shape == (2, 4, 2, DIM) and samples.layout.sites == LATENT_SITES
    assert samples.config.latent_site == LATENT_SITES
    moved = samples.final_z != samples.z[:, 0]
    for part in samples.layout.slices.values():
        assert moved[..., part].any()


def two_group_model(x):
    """top ~ N(0, I₂), low | top ~ N(Σ top, I₃), x | low ~ N(low, I₃): two sites, one per group."""
    with pyro.plate("data", x.shape[0]):
        top = pyro.sample("top", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
        low_loc = top.sum(-1, keepdim=True).expand(-1, 3)
        low = pyro.sample("low", dist.Normal(low_loc, 1.0).to_event(1))
        pyro.sample("x", dist.Normal(low, 1.0).to_event(1), obs=x)


def two_group_guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("top", dist.Normal(x.new_zeros(2), 1.0).to_event(1))
        pyro.sample("low", dist.Normal(x, 1.0).to_event(1))


def test_diagnostics_are_reported_per_group():
    samples = sample_posterior(two_group_model, two_group_guide, (torch.randn(4, 3),),
                               sampler="hmc", num_chains=2, num_warmup=5, num_samples=20,
                               step_size=0.3, num_leapfrog_steps=3, latent_site=("top", "low"),
                               seed=1)
    idata = to_inference_data(samples)
    assert list(idata.posterior.data_vars) == ["top", "low"]
    assert idata.posterior["low"].shape == (2, 20, 4, 3)
    assert torch.equal(torch.as_tensor(idata.posterior["low"].values), samples.z[..., 2:])
    assert idata.posterior.attrs["latent_site"] == "top,low"
    per_site = summarize_sites(idata)
    overall = summarize(idata)
    assert list(per_site) == ["top", "low"]
    assert overall.max_rhat == max(s.max_rhat for s in per_site.values())
    assert overall.min_ess_bulk == min(s.min_ess_bulk for s in per_site.values())
    assert overall.rhat_per_point.shape == (4,)
    assert summarize(idata, "top").max_rhat == per_site["top"].max_rhat


def test_the_stock_pyro_references_take_one_site(hvae, images):
    with pytest.raises(ValueError, match="takes one latent site"):
        sample_posterior(hvae.model, hvae.guide, (images,), sampler="pyro_hmc",
                         latent_site=LATENT_SITES)
