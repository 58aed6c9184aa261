"""The Table 1 objectives' values against their definitions, written out independently with
torch.distributions and plain tensor arithmetic, row by row (row n·R + r is restart r of
reference n). Each test also pins the value the definition gives at a special point (0 at
x_a = x_r for the damage, 0 at x_a = x_target for the target attacks), with the references
differing row to row, so pairing a row with another reference's data (tiling the references
instead of repeating each) fails too."""

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from attacks import (ClassifierCrossEntropy, EncoderDivergence, LatentTarget, MaximumDamage, OutputTarget,
                     forward_kl, reverse_kl, squared_mean_distance)

RESTARTS = 2


def rows(tensor):
    return tensor.repeat_interleave(RESTARTS, 0)


def posterior(vae, x):
    loc, scale = vae.encode(x)
    return Normal(loc, scale)


def kl(p, q):
    return kl_divergence(p, q).sum(-1)


@pytest.fixture
def x_adv(images):
    """One perturbed image per row, every row different."""
    noise = torch.rand(len(images) * RESTARTS, *images.shape[1:], generator=torch.Generator().manual_seed(3))
    return (rows(images) + 0.2 * (noise - 0.5)).clamp(0, 1)


@pytest.fixture
def noise(images):
    return torch.randn(len(images), 4, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("divergence, written_out", [
    (None, lambda a, r: 0.5 * (kl(a, r) + kl(r, a))),  # the default: symmetric KL (the paper's)
    (forward_kl, lambda a, r: kl(r, a)),
    (reverse_kl, lambda a, r: kl(a, r)),
    (squared_mean_distance, lambda a, r: (a.loc - r.loc).pow(2).sum(-1)),
])
def test_encoder_divergence_is_d_of_the_adversarial_and_reference_posteriors(
        divergence, written_out, vae, encode, images, x_adv):
    objective = EncoderDivergence(encode) if divergence is None else EncoderDivergence(encode, divergence)
    bound = objective.bind(images, restarts=RESTARTS)
    expected = written_out(posterior(vae, x_adv), posterior(vae, rows(images)))
    assert expected.min() > 1e-3  # the check is not 0 == 0
    torch.testing.assert_close(bound.value(x_adv), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(bound.value(rows(images)), torch.zeros(len(x_adv)), rtol=0, atol=1e-5)


def test_latent_target_is_minus_skl_to_the_targets_posterior(vae, encode, images, x_adv):
    targets = images.roll(1, 0)
    bound = LatentTarget(encode, targets).bind(images, restarts=RESTARTS)
    a, t = posterior(vae, x_adv), posterior(vae, rows(targets))
    expected = -0.5 * (kl(a, t) + kl(t, a))
    assert expected.max() < -1e-3
    torch.testing.assert_close(bound.value(x_adv), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(bound.value(rows(targets)), torch.zeros(len(x_adv)), rtol=0, atol=1e-5)


@pytest.mark.parametrize("with_noise", [False, True])
def test_output_target_is_minus_the_squared_distance_of_decoded_codes(with_noise, vae, encode, images, x_adv,
                                                                      noise):
    targets = images.roll(1, 0)
    xi = rows(noise) if with_noise else torch.zeros(len(x_adv), 4)  # no noise: posterior means
    bound = OutputTarget(encode, vae.decode, targets, noise=noise if with_noise else None).bind(
        images, restarts=RESTARTS)
    a, t = posterior(vae, x_adv), posterior(vae, rows(targets))
    output, target = vae.decode(a.loc + a.scale * xi), vae.decode(t.loc + t.scale * xi)
    expected = -(output - target).pow(2).sum((1, 2, 3))
    assert expected.max() < -1e-3
    torch.testing.assert_close(bound.value(x_adv), expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(bound.value(rows(targets)), torch.zeros(len(x_adv)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("with_noise", [False, True])
def test_maximum_damage_is_the_squared_distance_to_the_decoded_reference(with_noise, vae, encode, images,
                                                                         x_adv, noise):
    xi = rows(noise) if with_noise else torch.zeros(len(x_adv), 4)
    bound = MaximumDamage(encode, vae.decode, noise=noise if with_noise else None).bind(
        images, restarts=RESTARTS)
    a, r = posterior(vae, x_adv), posterior(vae, rows(images))
    expected = (vae.decode(a.loc + a.scale * xi) - vae.decode(r.loc + r.scale * xi)).pow(2).sum((1, 2, 3))
    assert expected.min() > 1e-3
    torch.testing.assert_close(bound.value(x_adv), expected, rtol=1e-4, atol=1e-6)
    # the same noise for a reference and its attacks: exactly no damage at x_a = x_r
    torch.testing.assert_close(bound.value(rows(images)), torch.zeros(len(x_adv)), rtol=0, atol=1e-6)


def test_classifier_cross_entropy_is_against_the_clean_prediction(vae, encode, images, x_adv):
    # one class per reference, its weights the reference's centred code: the references'
    # predictions differ (the shared fixture's classifier predicts one class for all four)
    loc = vae.encode(images)[0]
    classifier = torch.nn.Linear(4, len(images)).requires_grad_(False)
    classifier.weight.copy_(loc - loc.mean(0)), classifier.bias.zero_()
    bound = ClassifierCrossEntropy(encode, classifier).bind(images, restarts=RESTARTS)
    clean = rows(classifier(vae.encode(images)[0]).argmax(-1))
    assert len(set(clean.tolist())) > 1  # the references disagree, so a row paired wrongly shows
    log_probs = F.log_softmax(classifier(vae.encode(x_adv)[0]), -1)
    torch.testing.assert_close(bound.value(x_adv), -log_probs[torch.arange(len(x_adv)), clean], rtol=1e-5,
                               atol=1e-6)
    assert torch.equal(bound.success(x_adv), log_probs.argmax(-1) != clean)
    # at the references: the loss of the predicted class, the smallest of all classes
    at_reference = F.log_softmax(classifier(vae.encode(rows(images))[0]), -1)
    torch.testing.assert_close(bound.value(rows(images)), -at_reference.max(-1).values)
    assert not bound.success(rows(images)).any()
