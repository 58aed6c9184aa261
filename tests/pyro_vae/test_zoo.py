import pytest
import torch

from pyro_vae import CheckpointError, ConvVAE, HierarchicalVAE, VAEConfig, save_checkpoint
from pyro_vae.zoo import (ZOO_DIR, PretrainedNotFound, add_to_zoo, entry_name, pretrained,
                          training_command, zoo_index)


@pytest.fixture
def tiny_zoo(tmp_path):
    """A zoo folder with one ColorMNIST entry (identity decoder) made by ``add_to_zoo``."""
    vae = ConvVAE(VAEConfig(num_channels=3, decoder_output="identity"))
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(vae, checkpoint)
    zoo = tmp_path / "zoo"
    entry = add_to_zoo(checkpoint, {"command": "python -m benchmarks.train ...", "epochs": 1},
                       vae=vae, dataset="colormnist", zoo_dir=zoo)
    return zoo, vae, entry


def test_an_entry_loads_with_its_provenance(tiny_zoo):
    zoo, vae, entry = tiny_zoo
    loaded, provenance = pretrained("colormnist", decoder_output="identity", zoo_dir=zoo,
                                    with_provenance=True)
    assert provenance == entry and provenance["epochs"] == 1 and len(provenance["sha256"]) == 64
    assert loaded.config == vae.config and not loaded.training
    for a, b in zip(vae.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    assert list(zoo_index(zoo)) == ["colormnist-vae_beta1-identity"]


def test_a_missing_entry_names_the_command_that_trains_it(tiny_zoo):
    zoo, _, _ = tiny_zoo
    with pytest.raises(PretrainedNotFound) as error:
        pretrained("fashionmnist", zoo_dir=zoo)
    message = str(error.value)
    assert training_command("fashionmnist") in message
    assert "colormnist-vae_beta1-identity" in message  # what is available instead


def test_a_tampered_file_is_refused(tiny_zoo):
    zoo, _, entry = tiny_zoo
    path = zoo / entry["file"]
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(CheckpointError, match="sha256"):
        pretrained("colormnist", decoder_output="identity", zoo_dir=zoo)


def test_bad_requests_fail_before_any_lookup():
    with pytest.raises(ValueError, match="unknown dataset"):
        pretrained("cifar10")
    with pytest.raises(ValueError, match="decoder_output"):
        pretrained("mnist", decoder_output="tanh")


def test_names_and_commands():
    assert entry_name("mnist") == "mnist-vae_beta1"
    assert entry_name("colormnist", decoder_output="identity") == "colormnist-vae_beta1-identity"
    assert training_command("mnist", "beta_vae", 5.0) == (
        "python -m benchmarks.train --dataset mnist --models beta_vae:5 --zoo")


def test_the_shipped_zoo_is_consistent_and_small():
    """Every entry in the repository's zoo has its file, matching sha256 and full provenance,
    and the zoo stays under 25 MB."""
    index = zoo_index()
    assert {"mnist-vae_beta1", "colormnist-vae_beta1", "colormnist-vae_beta1-identity",
            "fashionmnist-vae_beta1", "mnist-hvae_beta1"} <= set(index)
    total = 0
    for name, entry in index.items():
        for key in ("command", "commit", "epochs", "seed", "train_seconds", "test_nll",
                    "nll_importance_samples", "nll_points", "sha256"):
            assert key in entry, (name, key)
        dataset = name.split("-")[0]
        config = entry["model_config"]
        vae = pretrained(dataset, config["kind"], config["beta"],
                         decoder_output=config.get("decoder_output", "sigmoid"))
        assert isinstance(vae, HierarchicalVAE if config["kind"] == "hvae" else ConvVAE)
        total += (ZOO_DIR / entry["file"]).stat().st_size
    assert total < 25e6
