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
