import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from inference import ks_two_sample, log_posterior_ratio


def test_log_posterior_ratio_equals_closed_form(problem):
    x = problem.data(6)
    z1, z2 = torch.randn(6, problem.latent_dim), torch.randn(6, problem.latent_dim)
    ratio = log_posterior_ratio(problem.model, (x,), z1, z2)
    expected = problem.log_joint(x, z1) - problem.log_joint(x, z2)
    assert ratio.shape == (6,)
    assert torch.allclose(ratio, expected, atol=1e-4)


def test_log_posterior_ratio_of_many_draws(problem):
    x = problem.data(4)
    z1, z2 = torch.randn(3, 4, problem.latent_dim), torch.randn(3, 4, problem.latent_dim)
    ratio = log_posterior_ratio(problem.model, (x,), z1, z2)
    assert ratio.shape == (3, 4)
    expected = torch.stack([problem.log_joint(x, a) - problem.log_joint(x, b) for a, b in zip(z1, z2)])
    assert torch.allclose(ratio, expected, atol=1e-4)
    with pytest.raises(ValueError, match="same shape"):
        log_posterior_ratio(problem.model, (x,), z1, z2[:2])


def test_ks_helper_matches_scipy_and_separates_shifted_samples():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=400), rng.normal(size=300)
    same = ks_two_sample(torch.tensor(a), b)
    reference = ks_2samp(a, b)
    assert same.statistic == pytest.approx(reference.statistic)
    assert same.pvalue == pytest.approx(reference.pvalue)
    assert ks_two_sample(a, b + 1.0).pvalue < 1e-10
    with pytest.raises(ValueError, match="finite"):
        ks_two_sample([0.0, float("nan")], b)
