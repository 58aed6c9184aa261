import torch
from torch.distributions import Independent, Normal, kl_divergence

from attacks import (Gaussian, forward_kl, gaussian_kl, reverse_kl, squared_mean_distance,
                     symmetric_kl)


def _gaussians(seed):
    generator = torch.Generator().manual_seed(seed)
    a = Gaussian(torch.randn(5, 3, generator=generator), torch.rand(5, 3, generator=generator) + 0.2)
    b = Gaussian(torch.randn(5, 3, generator=generator), torch.rand(5, 3, generator=generator) + 0.2)
    return a, b


def _torch_kl(p, q):
    return kl_divergence(Independent(Normal(*p), 1), Independent(Normal(*q), 1))


def test_gaussian_kl_matches_torch_distributions():
    a, b = _gaussians(0)
    assert torch.allclose(gaussian_kl(a, b), _torch_kl(a, b), atol=1e-5)


def test_directions_and_symmetric_average():
    a, b = _gaussians(1)
    assert torch.allclose(forward_kl(a, b), _torch_kl(b, a), atol=1e-5)
    assert torch.allclose(reverse_kl(a, b), _torch_kl(a, b), atol=1e-5)
    assert torch.allclose(symmetric_kl(a, b), 0.5 * (_torch_kl(a, b) + _torch_kl(b, a)), atol=1e-5)
    assert torch.allclose(symmetric_kl(a, b), symmetric_kl(b, a))


def test_divergences_vanish_between_equal_posteriors():
    a, _ = _gaussians(2)
    for divergence in (symmetric_kl, forward_kl, reverse_kl, squared_mean_distance):
        assert divergence(a, a).shape == (5,)
        assert torch.allclose(divergence(a, a), torch.zeros(5), atol=1e-6)


def test_squared_mean_distance_ignores_scales():
    a, b = _gaussians(3)
    assert torch.allclose(squared_mean_distance(a, Gaussian(b.loc, 3 * b.scale)),
                          ((a.loc - b.loc) ** 2).sum(-1))
