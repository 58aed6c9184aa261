import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from pyro_vae import CheckpointError, ConvVAE, VAEConfig, save_checkpoint
from pyro_vae.checkpoint import checkpoint_payload, model_from_payload
from pyro_vae.evaluate import importance_log_weights
from pyro_vae.hvae import ATTACKED_GROUPS, LATENT_SITES, HierarchicalVAE, HVAEConfig
from pyro_vae.interface import MODEL_CLASSES, MODEL_KINDS, PyroVAE, config_for
from pyro_vae.zoo import PretrainedNotFound, add_to_zoo, pretrained


@pytest.fixture
def hvae():
    torch.manual_seed(0)
    return HierarchicalVAE(HVAEConfig())


def test_both_models_implement_the_interface_and_are_registered(hvae):
    vae = ConvVAE(VAEConfig(latent_dim=4))
    x = torch.rand(2, 1, 28, 28)
    for model in (vae, hvae):
        assert isinstance(model, PyroVAE)
        assert MODEL_CLASSES[type(model).__name__] is type(model)
        sites = model.encode_sites(x)
        assert tuple(sites) == model.latent_sites
        assert model.attacked_sites == model.latent_sites[:len(model.attacked_sites)]
        means = {site: loc for site, (loc, _) in sites.items()}
        assert torch.allclose(model.decode_sites(means), model.reconstruct(x))
        loc, scale = model.encode(x)
        attacked = sum(torch.Size(model.latent_shapes[s]).numel() for s in model.attacked_sites)
        assert loc.shape == scale.shape == (2, attacked)
    assert vae.latent_sites == ("z",) and vae.latent_shapes == {"z": (4,)}
    assert hvae.attacked_sites == LATENT_SITES[:ATTACKED_GROUPS] == ("z3", "z2")
    assert {kind: cls.__name__ for kind, cls in MODEL_KINDS.items()} == {
        "vae": "ConvVAE", "beta_vae": "ConvVAE", "beta_tcvae": "ConvVAE",
        "hvae": "HierarchicalVAE"}


def test_config_for_builds_each_kind_and_refuses_bad_requests():
    assert config_for("beta_vae", beta=5.0, num_channels=3) == VAEConfig(
        kind="beta_vae", beta=5.0, num_channels=3)
    assert config_for("hvae", beta=2.0) == HVAEConfig(beta=2.0)
    with pytest.raises(ValueError, match="unknown model kind 'nvae'"):
        config_for("nvae")
    with pytest.raises(ValueError, match="ConvVAE option"):
        config_for("hvae", decoder_output="identity")


def test_a_checkpoint_without_class_name_is_a_convvae_and_a_foreign_name_is_refused():
    payload = checkpoint_payload(ConvVAE(VAEConfig(latent_dim=4)))
    del payload["model_class"]  # as written before there was a choice
    vae, _ = model_from_payload(payload)
    assert type(vae) is ConvVAE and vae.config.latent_dim == 4
    with pytest.raises(CheckpointError, match="'NVAE'.*known: ConvVAE, HierarchicalVAE"):
        model_from_payload({**payload, "model_class": "NVAE"})
    with pytest.raises(CheckpointError, match="inconsistent"):  # an HVAE config for a ConvVAE
        model_from_payload({**payload, "config": HVAEConfig().to_dict()})


def test_importance_weights_of_the_convvae_are_the_old_closed_form():
    """The trace-based weights equal log p(x, z) − log q(z|x) written out for the ConvVAE."""
    torch.manual_seed(1)
    vae = ConvVAE(VAEConfig(latent_dim=4))
    x = torch.rand(3, 1, 28, 28)
    pyro.set_rng_seed(2)
    log_w = importance_log_weights(vae, x, 5)
    pyro.set_rng_seed(2)
    loc, scale = vae.encode(x)
    z = loc + scale * torch.randn(5 * 3, 4).view(5, 3, 4)
    p = vae.decode(z.view(-1, 4)).view(5, 3, 1, 28, 28).clamp(1e-5, 1 - 1e-5)
    log_likelihood = (x * p.log() + (1 - x) * (1 - p).log()).flatten(2).sum(2)
    normal = torch.distributions.Normal
    expected = (log_likelihood + normal(0.0, 1.0).log_prob(z).sum(2)
                - normal(loc, scale).log_prob(z).sum(2))
    assert log_w.shape == (5, 3)
    assert torch.allclose(log_w, expected, rtol=1e-5, atol=1e-3)


def test_importance_weights_of_the_hvae_are_its_full_elbo_sample(hvae):
    """One importance weight per point is the (unscaled) single-sample ELBO over all groups."""
    x = torch.rand(3, 1, 28, 28)
    pyro.set_rng_seed(3)
    log_w = importance_log_weights(hvae, x, 1)
    pyro.set_rng_seed(3)
    loss = Trace_ELBO().loss(hvae.model, hvae.guide, x)
    assert log_w.shape == (1, 3)
    assert log_w.sum().item() == pytest.approx(-loss, rel=1e-5)


def test_the_zoo_serves_an_hvae_by_kind(tmp_path, hvae):
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(hvae, checkpoint)
    with pytest.raises(PretrainedNotFound, match="--models hvae --zoo"):
        pretrained("mnist", kind="hvae", zoo_dir=tmp_path / "zoo")
    with pytest.raises(ValueError, match="ConvVAE option"):
        pretrained("mnist", kind="hvae", decoder_output="identity", zoo_dir=tmp_path / "zoo")
    entry = add_to_zoo(checkpoint, {"command": "test"}, vae=hvae, dataset="mnist",
                       zoo_dir=tmp_path / "zoo")
    assert entry["file"] == "mnist-hvae_beta1.pt"
    loaded = pretrained("mnist", kind="hvae", zoo_dir=tmp_path / "zoo")
    assert type(loaded) is HierarchicalVAE
