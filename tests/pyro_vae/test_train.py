import math

import pytest
import torch

from pyro_vae import (CheckpointError, ConvVAE, TrainConfig, VAEConfig, batch_of, evaluate_vae,
                      load_dataset, make_elbo, train_vae)
from pyro_vae.hvae import HierarchicalVAE, HVAEConfig
from pyro_vae.train import clamp_shares

def mean_image_nll(splits, num_test_points):
    """Average NLL, in nats, of the first ``num_test_points`` test images under the best model that
    ignores z: independent Bernoulli pixels whose means are the training set's per-pixel mean
    image, clamped as the VAE's likelihood is. (On ../shared/data MNIST: 198.1 on the first 500
    test images, 205.8 on all 10,000.)"""
    total = 0.0
    for chunk in torch.arange(len(splits.train)).split(5000):
        total = total + batch_of(splits.train, chunk)[0].sum(0)
    p = (total / len(splits.train)).clamp(1e-5, 1 - 1e-5)
    x, _ = batch_of(splits.test, torch.arange(num_test_points))
    return -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1).mean().item()


@pytest.mark.slow
def test_brief_training_on_mnist_beats_mean_image(mnist_root):
    """A VAE whose negative ELBO, an upper bound on its NLL, ends clearly (25 nats) below the
    mean-image model's NLL on the same test images must be using its latent code; an untrained
    one is above it. Catches training that does not train, or an ELBO/NLL on the wrong scale."""
    splits = load_dataset("mnist", mnist_root, download=False)
    baseline = mean_image_nll(splits, 500)
    vae = ConvVAE(VAEConfig())
    before = evaluate_vae(vae, splits.test, num_importance_samples=1, max_points=500,
                          progress=False)
    history = train_vae(vae, splits, TrainConfig(epochs=2, max_train_points=20000),
                        progress=False, validation_points=1000)
    after = evaluate_vae(vae, splits.test, num_importance_samples=50, max_points=500,
                         progress=False)
    assert history.validation_loss[1] < history.validation_loss[0]
    assert -after.elbo < baseline - 25 < -before.elbo
    assert after.nll <= -after.elbo + 1.0  # importance sampling tightens the ELBO bound
    assert math.isfinite(after.mse) and after.mse < 255**2


def test_training_rejects_bad_config():
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(learning_rate=0.0)


def test_training_moves_weights_on_synthetic_data(synthetic_root):
    splits = load_dataset("mnist", synthetic_root, num_validation=6, download=False)
    vae = ConvVAE(VAEConfig())
    before = [p.detach().clone() for p in vae.parameters()]
    history = train_vae(vae, splits, TrainConfig(epochs=2, batch_size=8), progress=False)
    assert len(history.train_loss) == 2 and all(map(math.isfinite, history.validation_loss))
    assert all(not torch.equal(a, b) for a, b in zip(before, vae.parameters()))


@pytest.mark.parametrize("bias, clamped, stuck", [
    (-0.5, 1.0, 0.5), (1.5, 1.0, 0.5), (0.5, 0.0, 0.0), (2e-5, 0.0, 0.0)])
def test_clamp_shares_count_raw_outputs_outside_the_clamp(bias, clamped, stuck):
    """The identity decoder with its last layer's weights zeroed outputs its bias everywhere:
    outside [1e-5, 1 − 1e-5] every output is clamped, inside none is. Half of the images are
    black and half white: a constant output below the clamp is stuck on the white ones (they
    would pull it up), above it on the black ones."""
    vae = ConvVAE(VAEConfig(decoder_output="identity", num_channels=3))
    last = vae.decoder.net[-2]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(bias)
    images = torch.cat([torch.zeros(2, 3, 28, 28), torch.ones(2, 3, 28, 28)])
    assert clamp_shares(vae, images) == (clamped, stuck)
    assert clamp_shares(HierarchicalVAE(HVAEConfig(width=8)), torch.rand(2, 1, 28, 28)) is None


def test_training_records_the_clamp_shares_from_the_initialisation_on(synthetic_root):
    splits = load_dataset("mnist", synthetic_root, num_validation=6, download=False)
    history = train_vae(ConvVAE(VAEConfig(decoder_output="identity")), splits,
                        TrainConfig(epochs=2, batch_size=8), progress=False)
    assert 0.0 <= history.stuck_share_at_start <= history.clamped_share_at_start <= 1.0
    assert len(history.clamped_share) == len(history.stuck_share) == 2
    assert all(0.0 <= stuck <= clamped <= 1.0
               for clamped, stuck in zip(history.clamped_share, history.stuck_share))
    assert history.record()["stuck_share"] == history.stuck_share


def test_a_channels_last_model_still_trains(synthetic_root):
    """Pyro's parameter store keeps a contiguous copy of each parameter: a model whose weights
    are stored channels-last (as the benchmarks freeze them for the defence) would leave its
    weights behind while the optimiser updated the copies. train_vae converts it back first."""
    splits = load_dataset("mnist", synthetic_root, num_validation=6, download=False)
    vae = ConvVAE(VAEConfig()).to(memory_format=torch.channels_last)
    before = [p.detach().clone() for p in vae.parameters()]
    train_vae(vae, splits, TrainConfig(epochs=1, batch_size=8), progress=False)
    assert all(not torch.equal(a, b) for a, b in zip(before, vae.parameters()))


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(synthetic_root, tmp_path):
    """Two epochs in one go, and one epoch then a resumed second, give identical weights and
    history: the state file carries model, optimiser, scheduler and both random streams."""
    splits = load_dataset("mnist", synthetic_root, num_validation=6, download=False)
    config = TrainConfig(epochs=2, batch_size=8, lr_patience=0)  # patience 0: the LR moves too
    straight = ConvVAE(VAEConfig())
    torch.manual_seed(1)
    resumed = ConvVAE(VAEConfig())
    resumed.load_state_dict(straight.state_dict())
    history = train_vae(straight, splits, config, progress=False)

    state = tmp_path / "state.pt"
    first = train_vae(resumed, splits, TrainConfig(epochs=1, batch_size=8, lr_patience=0),
                      progress=False, state_path=state)
    assert first.epochs_done == 1 and state.is_file()
    fresh_process = ConvVAE(VAEConfig())  # as after a restart: weights come from the state file
    torch.manual_seed(123)  # the global stream too
    second = train_vae(fresh_process, splits, config, progress=False, state_path=state)
    assert second.train_loss == history.train_loss
    assert second.learning_rate == history.learning_rate
    for (name, a), b in zip(straight.state_dict().items(), fresh_process.state_dict().values()):
        assert torch.equal(a, b), name


def test_resuming_with_another_configuration_is_refused(synthetic_root, tmp_path):
    splits = load_dataset("mnist", synthetic_root, num_validation=6, download=False)
    state = tmp_path / "state.pt"
    train_vae(ConvVAE(VAEConfig()), splits, TrainConfig(epochs=1, batch_size=8), progress=False,
              state_path=state)
    with pytest.raises(CheckpointError, match="another model or training configuration"):
        train_vae(ConvVAE(VAEConfig()), splits, TrainConfig(epochs=2, batch_size=4),
                  progress=False, state_path=state)


def test_kl_warmup_ramps_the_kl_weight_linearly_to_beta(synthetic_root):
    splits = load_dataset("mnist", synthetic_root, num_validation=6, download=False)
    vae = ConvVAE(VAEConfig(kind="beta_vae", beta=4.0, latent_dim=4))
    seen = []
    model = vae.model

    def recording_model(x, *, kl_scale):
        seen.append(kl_scale)
        return model(x, kl_scale=kl_scale)

    vae.model = recording_model  # train_vae reads vae.model; validation runs it too
    train_vae(vae, splits, TrainConfig(epochs=2, batch_size=8, kl_warmup_epochs=1),
              progress=False)
    # 24 training points in batches of 8: 3 steps per epoch, then 1 validation batch (β)
    assert seen == pytest.approx([4 / 3, 8 / 3, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0])
    with pytest.raises(ValueError, match="kl_warmup_epochs"):
        TrainConfig(kl_warmup_epochs=-1)


def test_a_state_written_before_the_kl_warmup_existed_still_resumes(synthetic_root, tmp_path):
    splits = load_dataset("mnist", synthetic_root, num_validation=6, download=False)
    state = tmp_path / "state.pt"
    train_vae(ConvVAE(VAEConfig(latent_dim=4)), splits, TrainConfig(epochs=1, batch_size=8),
              progress=False, state_path=state)
    saved = torch.load(state, weights_only=True)
    del saved["train_config"]["kl_warmup_epochs"]
    torch.save(saved, state)
    history = train_vae(ConvVAE(VAEConfig(latent_dim=4)), splits,
                        TrainConfig(epochs=2, batch_size=8), progress=False, state_path=state)
    assert history.epochs_done == 2


def test_the_total_correlation_loss_needs_one_latent_site():
    config = VAEConfig(kind="beta_tcvae", beta=5.0)
    assert make_elbo(config, dataset_size=100).tc_weight == 4.0
    with pytest.raises(ValueError, match="single latent site 'z'"):
        make_elbo(config, dataset_size=100, latent_sites=("z3", "z2", "z1"))
