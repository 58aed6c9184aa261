import numpy as np
import pytest
import torch

from benchmarks.frechet import frechet_distance


def test_frechet_distance_of_a_set_with_itself_is_zero():
    features = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
    assert abs(frechet_distance(features, features)) < 1e-6


def test_frechet_distance_matches_closed_form_for_shifted_isotropic_gaussians():
    # Same covariance, means differing by 3 along one axis: distance = 9 exactly in the limit.
    generator = torch.Generator().manual_seed(1)
    a = torch.randn(20000, 3, generator=generator)
    b = torch.randn(20000, 3, generator=generator) + torch.tensor([3.0, 0.0, 0.0])
    assert abs(frechet_distance(a, b) - 9.0) < 0.2


def test_frechet_distance_matches_the_general_formula_and_stays_finite_when_singular():
    from scipy import linalg
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(400, 6, generator=generator) @ torch.randn(6, 6, generator=generator)
    b = torch.randn(400, 6, generator=generator) + 0.5
    cov_a, cov_b = np.cov(a.double().numpy(), rowvar=False), np.cov(b.double().numpy(), rowvar=False)
    general = (((a.double().mean(0) - b.double().mean(0)) ** 2).sum().item()
               + np.trace(cov_a + cov_b - 2 * np.real(linalg.sqrtm(cov_a @ cov_b))))
    assert frechet_distance(a, b) == pytest.approx(general, rel=1e-9)
    dead = a.clone()
    dead[:, 2] = 0.0  # a feature that is always 0: a singular covariance
    assert np.isfinite(frechet_distance(dead, b)) and frechet_distance(dead, dead) == pytest.approx(0.0, abs=1e-9)
