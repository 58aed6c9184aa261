import math

import pyro
import pytest
import torch
from pyro.infer import SVI, TraceMeanField_ELBO

from pyro_vae import ConvVAE, TotalCorrelationELBO, VAEConfig, make_elbo, total_correlation_mws


def normal_log_density(value, loc, scale):
    return -0.5 * ((value - loc) / scale) ** 2 - math.log(scale) - 0.5 * math.log(2 * math.pi)


def brute_force_tc(z, loc, scale, dataset_size):
    """Chen et al.'s minibatch-weighted sampling written as explicit loops over i, j, d."""
    batch, dims = len(z), len(z[0])
    norm = math.log(dataset_size * batch)
    result = []
    for i in range(batch):
        joint = [sum(normal_log_density(z[i][d], loc[j][d], scale[j][d]) for d in range(dims))
                 for j in range(batch)]
        log_q = math.log(sum(math.exp(v) for v in joint)) - norm
        log_marginals = 0.0
        for d in range(dims):
            terms = [normal_log_density(z[i][d], loc[j][d], scale[j][d]) for j in range(batch)]
            log_marginals += math.log(sum(math.exp(v) for v in terms)) - norm
        result.append(log_q - log_marginals)
    return result


def test_tc_estimator_matches_brute_force():
    torch.manual_seed(0)
    z, loc = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    scale = torch.rand(4, 3, dtype=torch.float64) + 0.5
    expected = brute_force_tc(z.tolist(), loc.tolist(), scale.tolist(), dataset_size=100)
    assert total_correlation_mws(z, loc, scale, 100).tolist() == pytest.approx(expected, rel=1e-9)


def test_tc_is_larger_for_correlated_codes():
    # Two nearly identical code dimensions carry about -0.5 log(1 - rho^2) ≈ 2 nats of TC; two
    # independent ones carry none. MWS is biased but must rank them clearly.
    torch.manual_seed(0)
    shared = torch.randn(512, 1)
    correlated_loc = shared.expand(512, 2) + 0.05 * torch.randn(512, 2)
    independent_loc = torch.randn(512, 2)
    scale = torch.full((512, 2), 0.1)
    tcs = [total_correlation_mws(loc + scale * torch.randn(512, 2), loc, scale, 512).mean()
           for loc in (correlated_loc, independent_loc)]
    assert tcs[0] > tcs[1] + 1.0


def test_tc_elbo_adds_weighted_penalty_to_mean_field_elbo():
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(kind="beta_tcvae", beta=5.0))
    x = torch.rand(6, 1, 28, 28)
    elbo = make_elbo(vae.config, dataset_size=1000)
    assert isinstance(elbo, TotalCorrelationELBO) and elbo.tc_weight == 4.0
    pyro.set_rng_seed(3)
    with_tc = elbo.loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(3)
    plain = TraceMeanField_ELBO().loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(3)
    loc, scale = vae.encode(x)
    z = torch.distributions.Normal(loc, scale).rsample()
    tc = total_correlation_mws(z, loc, scale, 1000).sum().item()
    assert with_tc - plain == pytest.approx(4.0 * tc, rel=1e-4, abs=1e-3)


def test_tc_elbo_trains_through_svi():
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(kind="beta_tcvae", beta=5.0))
    x = torch.rand(16, 1, 28, 28)

    def model(x):
        pyro.module("vae", vae)
        return vae.model(x)

    def guide(x):
        pyro.module("vae", vae)
        return vae.guide(x)

    before = [p.detach().clone() for p in vae.parameters()]
    with pyro.get_param_store().scope():
        svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}),
                  TotalCorrelationELBO(dataset_size=100, tc_weight=4.0))
        assert math.isfinite(svi.step(x))
    assert any(not torch.equal(a, b) for a, b in zip(before, vae.parameters()))


def test_tc_rejects_dataset_smaller_than_batch():
    with pytest.raises(ValueError, match="dataset_size"):
        total_correlation_mws(torch.zeros(8, 2), torch.zeros(8, 2), torch.ones(8, 2), 4)
