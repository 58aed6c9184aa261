import math

import pytest
import torch

from pyro_vae import ConvVAE, TrainConfig, VAEConfig, evaluate_vae, load_dataset, train_vae

# The best model that ignores z, the per-pixel mean image of the training set, scores a test NLL of
# 205.8 nats under the same Bernoulli likelihood (measured on ../shared/data MNIST). A VAE whose
# negative ELBO, an upper bound on its NLL, ends clearly below that must be using its latent code.
MEAN_IMAGE_NLL = 205.8


@pytest.mark.slow
def test_brief_training_on_mnist_beats_mean_image(mnist_root):
    splits = load_dataset("mnist", mnist_root, download=False)
    vae = ConvVAE(VAEConfig())
    before = evaluate_vae(vae, splits.test, num_importance_samples=1, max_points=500,
                          progress=False)
    history = train_vae(vae, splits, TrainConfig(epochs=2, max_train_points=20000),
                        progress=False, validation_points=1000)
    after = evaluate_vae(vae, splits.test, num_importance_samples=50, max_points=500,
                         progress=False)
    assert history.validation_loss[1] < history.validation_loss[0]
    assert -after.elbo < MEAN_IMAGE_NLL - 25 < -before.elbo
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
