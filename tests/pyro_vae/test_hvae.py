import math
import re

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, TraceMeanField_ELBO
from pyro.poutine.util import site_is_subsample
from torch.distributions import Normal, kl_divergence

from pyro_vae import TrainConfig, load_dataset, make_elbo, pretrained, train_vae
from pyro_vae.hvae import ATTACKED_GROUPS, LATENT_SITES, HierarchicalVAE, HVAEConfig

SHAPES = {"z3": (8, 4, 4), "z2": (8, 7, 7), "z1": (8, 14, 14)}
SHAPES_64 = {"z3": (8, 8, 8), "z2": (8, 16, 16), "z1": (8, 32, 32)}


@pytest.fixture(params=[1, 3], ids=["grey", "colour"])
def hvae_and_images(request):
    torch.manual_seed(0)
    hvae = HierarchicalVAE(HVAEConfig(num_channels=request.param))
    return hvae, torch.rand(5, request.param, 28, 28)


def latent_values(batch_size: int = 3) -> dict[str, torch.Tensor]:
    return {site: torch.randn(batch_size, *shape) for site, shape in SHAPES.items()}


def registered(fn, module):
    """``fn`` with the module's weights in the parameter store, as ``train_vae`` wraps them."""

    def wrapped(*args, **kwargs):
        pyro.module("hvae", module)
        return fn(*args, **kwargs)

    return wrapped


def test_sites_are_named_top_first_with_their_shapes(hvae_and_images):
    hvae, x = hvae_and_images
    assert hvae.latent_sites == LATENT_SITES == ("z3", "z2", "z1")
    assert hvae.latent_shapes == SHAPES
    guide_trace = poutine.trace(hvae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(hvae.model, guide_trace)).get_trace(x)
    for trace in (guide_trace, model_trace):
        latent = [name for name, site in trace.nodes.items()
                  if site["type"] == "sample" and not site["is_observed"]
                  and not site_is_subsample(site)]
        assert latent == list(LATENT_SITES)  # the order TraceMeanField_ELBO expects
        for site, shape in SHAPES.items():
            node = trace.nodes[site]
            assert node["value"].shape == (5, *shape)
            assert node["fn"].batch_shape == (5,) and node["fn"].event_shape == shape
            assert "data" in [frame.name for frame in node["cond_indep_stack"]]
    observed = model_trace.nodes["x"]
    assert observed["is_observed"] and observed["fn"].event_shape == x.shape[1:]
    for site in LATENT_SITES:  # the model's conditionals read the guide's samples
        assert torch.equal(model_trace.nodes[site]["value"], guide_trace.nodes[site]["value"])


def test_log_joint_is_each_groups_prior_given_the_groups_above_plus_bernoulli():
    torch.manual_seed(2)
    hvae = HierarchicalVAE(HVAEConfig())
    x, z = torch.rand(3, 1, 28, 28), latent_values()
    trace = poutine.trace(poutine.condition(hvae.model, data=z)).get_trace(x)
    trace.compute_log_prob()
    from_model = sum(site["log_prob"] for site in trace.nodes.values() if site["type"] == "sample")

    priors = hvae.prior(z)
    assert torch.equal(priors["z3"][0], torch.zeros(3, *SHAPES["z3"]))
    assert torch.equal(priors["z3"][1], torch.ones(3, *SHAPES["z3"]))
    expected = sum(Normal(*priors[site]).log_prob(z[site]).flatten(1).sum(1) for site in SHAPES)
    p = hvae.decode(z).clamp(1e-5, 1 - 1e-5)
    expected = expected + (x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    assert from_model.shape == (3,)
    assert torch.allclose(from_model, expected, rtol=1e-5)


def test_each_prior_depends_only_on_the_groups_above():
    torch.manual_seed(3)
    hvae = HierarchicalVAE(HVAEConfig())
    z = latent_values()
    base = hvae.prior(z)
    for changed, index in (("z1", 2), ("z2", 1), ("z3", 0)):
        moved = hvae.prior({**z, changed: z[changed] + 1.0})
        for position, site in enumerate(LATENT_SITES):
            same = all(torch.equal(a, b) for a, b in zip(base[site], moved[site]))
            assert same == (position <= index), (changed, site)


def test_encode_sites_is_deterministic_and_is_the_guide_at_the_posterior_means(hvae_and_images):
    hvae, x = hvae_and_images
    params = hvae.encode_sites(x)
    again = hvae.encode_sites(x)
    assert list(params) == list(LATENT_SITES)
    for site, (loc, scale) in params.items():
        assert loc.shape == scale.shape == (5, *SHAPES[site]) and (scale > 0).all()
        assert torch.equal(loc, again[site][0]) and torch.equal(scale, again[site][1])
    means = {site: loc for site, (loc, _) in params.items()}
    trace = poutine.trace(poutine.condition(hvae.guide, data=means)).get_trace(x)
    for site, (loc, scale) in params.items():
        posterior = trace.nodes[site]["fn"].base_dist
        assert torch.allclose(posterior.loc, loc) and torch.allclose(posterior.scale, scale)


@pytest.mark.parametrize("num_channels, image_size, shapes", [(1, 28, SHAPES), (3, 64, SHAPES_64)],
                         ids=["grey-28", "colour-64"])
@pytest.mark.parametrize("num_groups", [1, 2, 3])
def test_encode_concatenates_the_top_groups_flattened_and_differentiates_in_x(
        num_channels, image_size, shapes, num_groups):
    """encode(x, k) = [loc, scale] of the top k groups, each flattened, top group first (the
    attacks' view of the model; the guide encoder of attacks/ must agree with it)."""
    torch.manual_seed(4)
    hvae = HierarchicalVAE(HVAEConfig(num_channels=num_channels, image_size=image_size))
    x = torch.rand(2, num_channels, image_size, image_size, requires_grad=True)
    params = hvae.encode_sites(x)
    loc, scale = hvae.encode(x, num_groups=num_groups)
    widths = [math.prod(shapes[site]) for site in LATENT_SITES[:num_groups]]
    assert loc.shape == scale.shape == (2, sum(widths))
    for part, site in enumerate(LATENT_SITES[:num_groups]):
        span = slice(sum(widths[:part]), sum(widths[:part + 1]))
        assert torch.equal(loc[:, span], params[site][0].flatten(1))
        assert torch.equal(scale[:, span], params[site][1].flatten(1))
    if num_groups == ATTACKED_GROUPS:  # the default: the attacked groups, k_A = 2
        assert torch.equal(hvae.encode(x)[0], loc) and torch.equal(hvae.encode(x)[1], scale)
    (gradient,) = torch.autograd.grad(loc.sum() + scale.sum(), x)
    assert torch.count_nonzero(gradient) > 0
    with pytest.raises(ValueError, match="num_groups"):
        hvae.encode(x, num_groups=4)


def test_decode_and_reconstruct_are_images(hvae_and_images):
    hvae, x = hvae_and_images
    mean = hvae.decode(latent_values(5))
    assert mean.shape == x.shape and 0 <= mean.min() and mean.max() <= 1
    params = hvae.encode_sites(x)
    reconstruction = hvae.reconstruct(x)
    assert torch.allclose(reconstruction, hvae.decode({s: loc for s, (loc, _) in params.items()}))


def test_elbo_is_finite_and_falls_under_svi():
    torch.manual_seed(5)
    pyro.set_rng_seed(5)
    hvae = HierarchicalVAE(HVAEConfig())
    x = (torch.rand(8, 1, 28, 28) < 0.2).float()
    with pyro.get_param_store().scope():
        svi = SVI(registered(hvae.model, hvae), registered(hvae.guide, hvae),
                  pyro.optim.Adam({"lr": 2e-3}), TraceMeanField_ELBO())
        losses = [svi.step(x) for _ in range(20)]
    assert all(map(math.isfinite, losses))
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5])


def test_kl_scale_multiplies_the_closed_form_kl_of_every_group():
    torch.manual_seed(6)
    hvae = HierarchicalVAE(HVAEConfig(beta=5.0))
    torch.nn.init.constant_(hvae.groups[0].posterior_head.bias, 1.0)  # a KL far from zero
    x = torch.rand(4, 1, 28, 28)
    elbo = make_elbo(hvae.config, dataset_size=100)
    assert type(elbo) is TraceMeanField_ELBO and hvae.config.kl_scale == 5.0
    losses = {}
    for kl_scale in (1.0, 5.0):
        pyro.set_rng_seed(7)
        losses[kl_scale] = elbo.loss(hvae.model, hvae.guide, x, kl_scale=kl_scale)
    pyro.set_rng_seed(7)
    guide_trace = poutine.trace(hvae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(hvae.model, guide_trace)).get_trace(x)
    kls = [kl_divergence(guide_trace.nodes[s]["fn"], model_trace.nodes[s]["fn"]).sum().item()
           for s in LATENT_SITES]
    assert all(kl > 0 for kl in kls) and sum(kls) > 100
    assert losses[5.0] - losses[1.0] == pytest.approx(4.0 * sum(kls), rel=1e-5)
    log_likelihood = model_trace.nodes["x"]["fn"].log_prob(x).sum().item()
    assert losses[1.0] == pytest.approx(sum(kls) - log_likelihood, rel=1e-5)


def test_train_vae_trains_it_unchanged(synthetic_root):
    splits = load_dataset("mnist", synthetic_root, num_validation=6, download=False)
    hvae = HierarchicalVAE(HVAEConfig())
    before = [p.detach().clone() for p in hvae.parameters()]
    history = train_vae(hvae, splits, TrainConfig(epochs=1, batch_size=8), progress=False)
    assert math.isfinite(history.train_loss[0]) and math.isfinite(history.validation_loss[0])
    assert all(not torch.equal(a, b) for a, b in zip(before, hvae.parameters()))


@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (2, 1, 32, 32), (1, 28, 28)])
def test_wrong_image_shape_names_the_expected_shape(shape):
    hvae = HierarchicalVAE(HVAEConfig(num_channels=1))
    for method in (hvae.model, hvae.guide, hvae.encode_sites):
        with pytest.raises(ValueError, match=r"\(batch, 1, 28, 28\)"):
            method(torch.rand(*shape))


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_pixels_outside_unit_interval_are_rejected(bad):
    hvae = HierarchicalVAE(HVAEConfig())
    x = torch.rand(2, 1, 28, 28)
    x[1, 0, 3, 3] = bad
    for method in (hvae.model, hvae.guide, hvae.encode_sites):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            method(x)


def test_wrong_latents_name_the_expected_shapes():
    hvae = HierarchicalVAE(HVAEConfig())
    z = latent_values()
    with pytest.raises(ValueError, match="latent sites"):
        hvae.decode({"z3": z["z3"]})
    with pytest.raises(ValueError, match=r"'z2' must have shape \(batch, 8, 7, 7\)"):
        hvae.decode({**z, "z2": torch.randn(3, 8, 14, 14)})
    with pytest.raises(ValueError, match="same batch size"):
        hvae.prior({**z, "z1": torch.randn(2, *SHAPES["z1"])})


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="vae"), "unknown model kind 'vae' for HVAEConfig"),
    (dict(beta=0.0), "beta must be positive, got 0.0"),
    (dict(num_channels=2), "num_channels must be 1 or 3, got 2"),
    (dict(image_size=32), "image_size in 28, 64, got image_size=32"),
    (dict(latent_channels=(8, 8)), "latent_channels must be 3 positive integers (z3, z2, z1), got (8, 8)"),
    (dict(latent_channels=(8, 0, 8)), "latent_channels must be 3 positive integers (z3, z2, z1), got (8, 0, 8)"),
    (dict(width=0), "width must be at least 1, got 0"),
])
def test_bad_config_is_rejected(kwargs, message):
    # match= pins which check fired (see test_vae.py's test of the same name)
    with pytest.raises(ValueError, match=re.escape(message)):
        HVAEConfig(**kwargs)


def test_unsupported_image_size_lists_the_supported_ones():
    with pytest.raises(ValueError, match="image_size in 28, 64, got image_size=32"):
        HVAEConfig(image_size=32)


def test_config_round_trips_through_plain_data():
    config = HVAEConfig(num_channels=3, beta=2.0, width=16, latent_channels=(4, 6, 2))
    data = config.to_dict()
    assert HVAEConfig(**{**data, "latent_channels": list(data["latent_channels"])}) == config
    assert config.kl_scale == 2.0 and config.tc_weight == 0.0
    hvae = HierarchicalVAE(config)
    trace = poutine.trace(hvae.guide).get_trace(torch.rand(2, 3, 28, 28))
    assert {site: trace.nodes[site]["value"].shape[1:] for site in LATENT_SITES} == {
        "z3": (4, 4, 4), "z2": (6, 7, 7), "z1": (2, 14, 14)}


def test_pretrained_mnist_hvae_still_loads_with_its_28_pixel_shapes():
    hvae = pretrained("mnist", kind="hvae")
    assert hvae.config.image_size == 28 and hvae.latent_shapes == SHAPES
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        params = hvae.encode_sites(x)
        assert {site: tuple(loc.shape[1:]) for site, (loc, _) in params.items()} == SHAPES
        assert hvae.reconstruct(x).shape == x.shape
    assert hvae.output[1].weight.shape == (32, 1, 4, 4)  # 14 → 28, as trained


def test_64_pixel_colour_model_runs_end_to_end():
    torch.manual_seed(8)
    pyro.set_rng_seed(8)
    hvae = HierarchicalVAE(HVAEConfig(num_channels=3, image_size=64))
    x = torch.rand(2, 3, 64, 64)
    assert hvae.latent_shapes == SHAPES_64
    guide_trace = poutine.trace(hvae.guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(hvae.model, guide_trace)).get_trace(x)
    for trace in (guide_trace, model_trace):
        for site, shape in SHAPES_64.items():
            assert trace.nodes[site]["value"].shape == (2, *shape)
            assert trace.nodes[site]["fn"].event_shape == shape
    assert model_trace.nodes["x"]["fn"].event_shape == (3, 64, 64)
    params = hvae.encode_sites(x)
    assert {site: tuple(loc.shape[1:]) for site, (loc, _) in params.items()} == SHAPES_64
    mean = hvae.decode({site: torch.randn(2, *shape) for site, shape in SHAPES_64.items()})
    assert mean.shape == x.shape and 0 <= mean.min() and mean.max() <= 1
    assert hvae.reconstruct(x).shape == x.shape
    with pytest.raises(ValueError, match=r"\(batch, 3, 64, 64\)"):
        hvae.guide(torch.rand(2, 3, 28, 28))
    with pyro.get_param_store().scope():
        svi = SVI(registered(hvae.model, hvae), registered(hvae.guide, hvae),
                  pyro.optim.Adam({"lr": 1e-3}), TraceMeanField_ELBO())
        assert math.isfinite(svi.step(x))
