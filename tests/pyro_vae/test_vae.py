import re

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from pyro_vae import LATENT_SITE, ConvVAE, VAEConfig, log_joint, make_elbo


@pytest.fixture(params=[1, 3], ids=["grey", "colour"])
def vae_and_images(request):
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig(num_channels=request.param))
    return vae, torch.rand(5, request.param, 28, 28)


def test_shapes_and_decoder_range(vae_and_images):
    vae, x = vae_and_images
    loc, scale = vae.encode(x)
    assert loc.shape == scale.shape == (5, 64) and (scale > 0).all()
    mean = vae.decode(loc)
    assert mean.shape == x.shape and 0 < mean.min() and mean.max() < 1


def test_model_and_guide_traces_have_named_sites(vae_and_images):
    vae, x = vae_and_images
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(vae.model, guide_trace)).get_trace(x)
    assert guide_trace.nodes[LATENT_SITE]["value"].shape == (5, 64)
    assert model_trace.nodes["x"]["is_observed"]
    assert torch.equal(model_trace.nodes[LATENT_SITE]["value"], guide_trace.nodes[LATENT_SITE]["value"])


def test_elbo_loss_is_the_negative_single_sample_elbo(vae_and_images):
    """Trace_ELBO's loss equals −[log p(x|z) + log p(z) − log q(z|x)] written out by hand for the
    guide's own draw z (same seed): a likelihood summed over the wrong axes, a dropped prior or
    entropy term, a wrong clamp or sign in ``model``/``guide`` changes the number."""
    vae, x = vae_and_images
    pyro.set_rng_seed(7)
    loss = Trace_ELBO().loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(7)
    z = poutine.trace(vae.guide).get_trace(x).nodes[LATENT_SITE]["value"]
    with torch.no_grad():
        loc, scale = vae.encode(x)
        p = vae.decode(z).clamp(1e-5, 1 - 1e-5)
        log_likelihood = (x * p.log() + (1 - x) * (1 - p).log()).sum()
        log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum()
        log_q = torch.distributions.Normal(loc, scale).log_prob(z).sum()
    assert loss == pytest.approx(-(log_likelihood + log_prior - log_q).item(), rel=1e-5)


def test_beta_scales_exactly_the_kl_part():
    torch.manual_seed(1)
    vae = ConvVAE(VAEConfig(kind="beta_vae", beta=5.0))
    x = torch.rand(4, 1, 28, 28)
    losses = {}
    for kl_scale in (1.0, 5.0):
        pyro.set_rng_seed(7)
        losses[kl_scale] = Trace_ELBO().loss(vae.model, vae.guide, x, kl_scale=kl_scale)
    pyro.set_rng_seed(7)
    guide_trace = poutine.trace(vae.guide).get_trace(x)
    z = guide_trace.nodes[LATENT_SITE]["value"]
    log_q = guide_trace.log_prob_sum()
    log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum()
    kl_sample = (log_q - log_prior).item()
    assert losses[5.0] - losses[1.0] == pytest.approx(4.0 * kl_sample, rel=1e-4)


def test_beta_scales_the_closed_form_kl_of_the_training_elbo():
    torch.manual_seed(1)
    vae = ConvVAE(VAEConfig(kind="beta_vae", beta=5.0))
    torch.nn.init.constant_(vae.encoder.loc_head.bias, 1.5)  # a KL far from zero
    x = torch.rand(4, 1, 28, 28)
    losses = {}
    for kl_scale in (1.0, 5.0):
        pyro.set_rng_seed(7)
        losses[kl_scale] = make_elbo(vae.config, dataset_size=100).loss(
            vae.model, vae.guide, x, kl_scale=kl_scale)
    loc, scale = vae.encode(x)
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(loc, scale),
                                           torch.distributions.Normal(0.0, 1.0)).sum().item()
    assert kl > 100
    assert losses[5.0] - losses[1.0] == pytest.approx(4.0 * kl, rel=1e-5)


def test_log_joint_matches_bernoulli_plus_gaussian_prior():
    torch.manual_seed(2)
    vae = ConvVAE(VAEConfig())
    x, z = torch.rand(3, 1, 28, 28), torch.randn(3, 64)
    p = vae.decode(z).clamp(1e-5, 1 - 1e-5)
    expected = (x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    expected = expected + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    assert torch.allclose(log_joint(vae, x, z), expected, rtol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (2, 1, 32, 32), (1, 28, 28)])
def test_wrong_shape_names_expected_shape(shape):
    vae = ConvVAE(VAEConfig(num_channels=1))
    with pytest.raises(ValueError, match=r"\(batch, 1, 28, 28\)"):
        vae.encode(torch.rand(*shape))


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_pixels_outside_unit_interval_are_rejected(bad):
    vae = ConvVAE(VAEConfig())
    x = torch.rand(2, 1, 28, 28)
    x[1, 0, 3, 3] = bad
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        vae.model(x)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="gan"), "unknown model kind 'gan'"),
    (dict(kind="vae", beta=2.0), "a plain 'vae' has beta = 1"),
    (dict(num_channels=2), "num_channels must be 1 or 3, got 2"),
    (dict(kind="beta_vae", beta=0.0), "beta must be positive, got 0.0"),
])
def test_bad_config_is_rejected(kwargs, message):
    # match= pins which check fired: an unrelated ValueError (a typo in another field's
    # check, a dataclass error) would otherwise pass
    with pytest.raises(ValueError, match=re.escape(message)):
        VAEConfig(**kwargs)


def test_identity_decoder_is_the_authors_clamped_likelihood():
    """decoder_output='identity' (PROTOCOL.md §10): the raw output is clamped only inside the
    likelihood, so decode() stays in [1e-5, 1 − 1e-5] and, where the raw output leaves that range,
    log p(x|z) has no gradient in z; the weights have the same names as the sigmoid decoder's."""
    sigmoid = ConvVAE(VAEConfig(num_channels=3))
    identity = ConvVAE(VAEConfig(num_channels=3, decoder_output="identity"))
    assert sigmoid.state_dict().keys() == identity.state_dict().keys()
    with torch.no_grad():  # push every raw output far below 0: the clamp is active everywhere
        identity.decoder.net[-2].bias.fill_(-50.0)
    z = torch.randn(4, 64, requires_grad=True)
    mean = identity.decode(z)
    assert mean.min() >= 1e-5 and mean.max() <= 1 - 1e-5
    x = torch.rand(4, 3, 28, 28)
    trace = poutine.trace(poutine.condition(identity.model, data={"z": z})).get_trace(x)
    (gradient,) = torch.autograd.grad(trace.nodes["x"]["fn"].log_prob(x).sum(), z)
    assert torch.count_nonzero(gradient) == 0
    with pytest.raises(ValueError, match="decoder_output"):
        VAEConfig(decoder_output="tanh")
