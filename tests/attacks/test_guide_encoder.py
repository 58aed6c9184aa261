import pyro
import pyro.distributions as dist
import pytest
import torch

from attacks import encoder_from_guide


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
