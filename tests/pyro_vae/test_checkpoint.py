import os
import pickle

import pytest
import torch

from pyro_vae import CheckpointError, ConvVAE, VAEConfig, load_checkpoint, save_checkpoint


def test_round_trip_restores_config_weights_and_metadata(tmp_path):
    vae = ConvVAE(VAEConfig(kind="beta_tcvae", beta=5.0, num_channels=3))
    path = tmp_path / "model.pt"
    save_checkpoint(vae, path, metadata={"epochs": 3, "loss": [1.5, 1.2]})
    loaded, metadata = load_checkpoint(path, with_metadata=True)
    assert loaded.config == vae.config and metadata == {"epochs": 3, "loss": [1.5, 1.2]}
    for (name, a), (_, b) in zip(vae.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
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
