import pyro
import pyro.distributions as dist
import pytest
import torch

from attacks import encoder_from_guide
from attacks.divergences import Gaussian, symmetric_kl
from pyro_vae.hvae import HierarchicalVAE, HVAEConfig


def test_guide_encoder_returns_the_guide_posterior(vae, images):
    loc, scale = encoder_from_guide(vae.guide)(images)
    expected_loc, expected_scale = vae.encode(images)
    assert loc.shape == scale.shape == (4, 4)
    assert torch.allclose(loc, expected_loc) and torch.allclose(scale, expected_scale)


def test_guide_encoder_draws_no_random_numbers(encode, images):
    state = torch.get_rng_state()
    encode(images)
    assert torch.equal(torch.get_rng_state(), state)


def test_gradients_reach_the_input(encode, images):
    x = images.clone().requires_grad_(True)
    loc, scale = encode(x)
    (loc.sum() + scale.sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_missing_or_non_gaussian_site_is_reported(vae, images):
    with pytest.raises(ValueError, match="no sample site 'w'"):
        encoder_from_guide(vae.guide, latent_site="w")(images)

    def bernoulli_guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Bernoulli(torch.full((x.shape[0], 2), 0.5)).to_event(1))

    with pytest.raises(ValueError, match="not a \\(diagonal\\) Normal"):
        encoder_from_guide(bernoulli_guide)(images)


def test_the_top_groups_of_a_hierarchical_guide_are_concatenated_and_their_skls_add():
    torch.manual_seed(0)
    hvae = HierarchicalVAE(HVAEConfig(width=8, latent_channels=(2, 2, 2)))
    x = torch.rand(3, 1, 28, 28)
    x_adversarial = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    encode = encoder_from_guide(hvae.guide, latent_site=hvae.attacked_sites)
    state = torch.get_rng_state()
    loc, scale = encode(x)
    assert torch.equal(torch.get_rng_state(), state)  # every group read at the means above it
    # the model's own k_A = 2 groups, whose layout test_hvae.py pins
    expected_loc, expected_scale = hvae.encode(x)
    assert loc.shape == expected_loc.shape
    assert torch.allclose(loc, expected_loc) and torch.allclose(scale, expected_scale)
    total = symmetric_kl(Gaussian(*encode(x_adversarial)), Gaussian(loc, scale))
    clean, adversarial = hvae.encode_sites(x), hvae.encode_sites(x_adversarial)
    per_group = [symmetric_kl(Gaussian(*(t.flatten(1) for t in adversarial[site])),
                              Gaussian(*(t.flatten(1) for t in clean[site])))
                 for site in hvae.attacked_sites]
    assert (per_group[1] > 0).all()
    assert torch.allclose(total, sum(per_group), rtol=1e-5)
    with pytest.raises(ValueError, match="non-empty sequence"):
        encoder_from_guide(hvae.guide, latent_site=())
