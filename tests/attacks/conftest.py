"""Fixtures for the attack tests: a tiny Pyro VAE (model/guide on one nn.Module), its guide's
encoder, a latent classifier and synthetic images. Factories are fixtures too, so test modules
never import this file (its name is shared with other packages' conftest files)."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from attacks import encoder_from_guide

LATENT_DIM = 4
NUM_CLASSES = 3


class TinyVAE(nn.Module):
    """A small conv encoder and linear decoder on C×28×28 images; latent site "z"."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.encoder = nn.Sequential(nn.Conv2d(channels, 8, 4, stride=4), nn.Tanh(), nn.Flatten(),
                                     nn.Linear(8 * 7 * 7, 2 * LATENT_DIM))
        self.decoder = nn.Sequential(nn.Linear(LATENT_DIM, channels * 28 * 28), nn.Sigmoid())

    def encode(self, x):
        loc, log_scale = self.encoder(x).chunk(2, dim=-1)
        return loc, log_scale.exp()

    def decode(self, z):
        return self.decoder(z).reshape(-1, self.channels, 28, 28)

    def model(self, x):
        pyro.module("tiny_vae", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(LATENT_DIM), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(probs=self.decode(z), validate_args=False)
                        .to_event(3), obs=x)

    def guide(self, x):
        pyro.module("tiny_vae", self)
        loc, scale = self.encode(x)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def make_vae(channels: int = 1, seed: int = 0) -> TinyVAE:
    """A fixed random TinyVAE; the seed is set in a forked RNG so tests stay independent."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        vae = TinyVAE(channels)
        # Larger first-layer weights make the encoder sensitive to small perturbations, like a
        # trained one, so that lr-1 PGD steps are visible within a few steps.
        vae.encoder[0].weight.data.mul_(4.0)
    return vae.eval().requires_grad_(False)


def make_images(count: int, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0, 1] with a few saturated pixels, like digits."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, channels, 7, 7, generator=generator)
    images = nn.functional.interpolate(coarse, size=(28, 28), mode="bilinear")
    return ((images - 0.3) * 2.0).clamp(0.0, 1.0)


@pytest.fixture
def vae_factory():
    return make_vae


@pytest.fixture
def image_factory():
    return make_images


@pytest.fixture
def vae() -> TinyVAE:
    return make_vae()


@pytest.fixture
def encode(vae):
    return encoder_from_guide(vae.guide)


@pytest.fixture
def classifier() -> nn.Linear:
    with torch.random.fork_rng():
        torch.manual_seed(1)
        return nn.Linear(LATENT_DIM, NUM_CLASSES).requires_grad_(False)


@pytest.fixture
def images() -> torch.Tensor:
    return make_images(4)
