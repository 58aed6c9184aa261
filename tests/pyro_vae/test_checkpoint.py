import os
import pickle

import pytest
import torch

from pyro_vae import CheckpointError, ConvVAE, VAEConfig, load_checkpoint, save_checkpoint
from pyro_vae.hvae import HierarchicalVAE, HVAEConfig


@pytest.mark.parametrize("model_class, config", [
    (ConvVAE, VAEConfig(kind="beta_tcvae", beta=5.0, num_channels=3)),
    (HierarchicalVAE, HVAEConfig(beta=2.0)),
], ids=["ConvVAE", "HierarchicalVAE"])
def test_round_trip_restores_class_config_weights_and_metadata(tmp_path, model_class, config):
    torch.manual_seed(0)
    vae = model_class(config)
    path = tmp_path / "model.pt"
    save_checkpoint(vae, path, metadata={"epochs": 3, "loss": [1.5, 1.2]})
    assert torch.load(path, weights_only=True)["model_class"] == model_class.__name__
    loaded, metadata = load_checkpoint(path, with_metadata=True)
    assert type(loaded) is model_class and loaded.config == vae.config
    assert metadata == {"epochs": 3, "loss": [1.5, 1.2]}
    assert loaded.state_dict().keys() == vae.state_dict().keys()
    for name, value in vae.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary left behind


def test_corrupt_file_is_a_clear_error(tmp_path):
    vae = ConvVAE(VAEConfig())
    path = tmp_path / "model.pt"
    save_checkpoint(vae, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(path)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_foreign_pickle_executes_no_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"format": "pyro_vae.checkpoint/1", "x": _Payload()}, handle)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_foreign_tensor_file_is_rejected(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not a pyro_vae checkpoint"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")
