import pytest
import torch
import torch.nn.functional as F

from attacks import ClassifierConfig, classifier_accuracy, train_latent_classifier


def blobs(count, seed, spread=0.5):
    """Four Gaussian clusters in 8 dimensions, well separated for small ``spread``."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (count,), generator=generator)
    centres = 3.0 * torch.eye(8)[:4]
    return centres[labels] + spread * torch.randn(count, 8, generator=generator), labels


def test_reaches_high_accuracy_on_separable_data():
    (train, train_labels), (val, val_labels), (test, test_labels) = (blobs(1000, s)
                                                                    for s in (0, 1, 2))
    classifier = train_latent_classifier(train_codes=train, train_labels=train_labels,
                                         val_codes=val, val_labels=val_labels,
                                         config=ClassifierConfig(max_epochs=30),
                                         generator=torch.Generator().manual_seed(0))
    assert classifier.out_features == 4
    assert classifier_accuracy(classifier, codes=test, labels=test_labels) > 0.97
    assert not classifier.weight.requires_grad


def test_training_is_reproducible_and_keeps_the_best_weights():
    (train, train_labels), (val, val_labels) = blobs(500, 3), blobs(500, 4)
    config = ClassifierConfig(max_epochs=8, early_stopping_patience=3)
    fits = [train_latent_classifier(train_codes=train, train_labels=train_labels, val_codes=val,
                                    val_labels=val_labels, num_classes=5, config=config,
                                    generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    assert torch.equal(fits[0].weight, fits[1].weight)
    assert fits[0].out_features == 5
    assert classifier_accuracy(fits[0], codes=val, labels=val_labels) > 0.95


def test_best_validation_weights_are_kept():
    # Overlapping classes and lr-1 steps on small batches: validation accuracy goes up and down.
    (train, train_labels), (val, val_labels) = blobs(400, 3, spread=2.5), blobs(400, 4, spread=2.5)
    config = ClassifierConfig(batch_size=16, max_epochs=8, lr_patience=100,
                              early_stopping_patience=100)
    # The same SGD run written out, recording the accuracy of the latest weights every epoch.
    linear = torch.nn.Linear(8, 4)
    torch.nn.init.zeros_(linear.weight), torch.nn.init.zeros_(linear.bias)
    optimizer, generator = torch.optim.SGD(linear.parameters(), lr=1.0), torch.Generator()
    generator.manual_seed(1)
    latest = []
    for _ in range(8):
        for batch in torch.randperm(400, generator=generator).split(16):
            optimizer.zero_grad()
            F.cross_entropy(linear(train[batch]), train_labels[batch]).backward()
            optimizer.step()
        latest.append(classifier_accuracy(linear, codes=val, labels=val_labels))
    assert latest[-1] < max(latest)  # so returning the last weights would fail below
    fitted = train_latent_classifier(train_codes=train, train_labels=train_labels, val_codes=val,
                                     val_labels=val_labels, config=config,
                                     generator=torch.Generator().manual_seed(1))
    assert classifier_accuracy(fitted, codes=val, labels=val_labels) == pytest.approx(max(latest))


def test_rejects_mismatched_inputs_and_bad_config():
    codes, labels = blobs(10, 5)
    with pytest.raises(ValueError, match="labels"):
        train_latent_classifier(train_codes=codes, train_labels=labels[:5], val_codes=codes,
                                val_labels=labels, generator=torch.Generator())
    with pytest.raises(ValueError, match="lr_factor"):
        ClassifierConfig(lr_factor=1.5)
