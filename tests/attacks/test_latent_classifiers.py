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


def test_training_is_reproducible():
    (train, train_labels), (val, val_labels) = blobs(500, 3), blobs(500, 4)
    config = ClassifierConfig(max_epochs=8, early_stopping_patience=3)

    def fit(seed):
        return train_latent_classifier(train_codes=train, train_labels=train_labels, val_codes=val,
                                       val_labels=val_labels, num_classes=5, config=config,
                                       generator=torch.Generator().manual_seed(seed))

    first, again, other = fit(1), fit(1), fit(2)
    assert torch.equal(first.weight, again.weight) and torch.equal(first.bias, again.bias)
    assert not torch.equal(first.weight, other.weight)  # the minibatch order does come from it
    assert first.out_features == 5
    assert classifier_accuracy(first, codes=val, labels=val_labels) > 0.95


# Overlapping classes and lr-1 steps on small batches: validation accuracy goes up and down.
NOISY_TRAIN, NOISY_VAL = blobs(400, 3, spread=2.5), blobs(400, 4, spread=2.5)


def written_out_sgd(num_epochs, seed=1, batch_size=16):
    """The classifier's SGD run written out (zero start, lr 1, never reduced), returning the
    validation accuracy of the latest weights after every epoch."""
    (train, train_labels), (val, val_labels) = NOISY_TRAIN, NOISY_VAL
    linear = torch.nn.Linear(8, 4)
    torch.nn.init.zeros_(linear.weight), torch.nn.init.zeros_(linear.bias)
    optimizer, generator = torch.optim.SGD(linear.parameters(), lr=1.0), torch.Generator()
    generator.manual_seed(seed)
    latest = []
    for _ in range(num_epochs):
        for batch in torch.randperm(len(train), generator=generator).split(batch_size):
            optimizer.zero_grad()
            F.cross_entropy(linear(train[batch]), train_labels[batch]).backward()
            optimizer.step()
        latest.append(classifier_accuracy(linear, codes=val, labels=val_labels))
    return latest


def fit_noisy(generator, **config):
    (train, train_labels), (val, val_labels) = NOISY_TRAIN, NOISY_VAL
    # lr_patience beyond max_epochs: the plateau schedule never fires, as in written_out_sgd
    config = ClassifierConfig(batch_size=16, lr_patience=100, **config)
    return train_latent_classifier(train_codes=train, train_labels=train_labels, val_codes=val,
                                   val_labels=val_labels, config=config, generator=generator)


def test_best_validation_weights_are_kept():
    """Catches returning the last epoch's weights instead of the best epoch's."""
    latest = written_out_sgd(8)
    assert latest[-1] < max(latest)  # so returning the last weights would fail below
    fitted = fit_noisy(torch.Generator().manual_seed(1), max_epochs=8, early_stopping_patience=100)
    val, val_labels = NOISY_VAL
    assert classifier_accuracy(fitted, codes=val, labels=val_labels) == pytest.approx(max(latest))


def test_early_stopping_after_patience_epochs_without_improvement():
    """Training stops once `early_stopping_patience` epochs in a row have not beaten the best
    validation accuracy. The number of epochs run is read off the generator: each epoch draws
    exactly one permutation. Catches early stopping that never fires (more epochs, and a later,
    better epoch's weights), an off-by-one in the patience, and counting from the last epoch
    instead of the best one."""
    patience, max_epochs = 4, 30
    latest = written_out_sgd(max_epochs)
    best, expected_epochs = -1.0, None
    for epoch, accuracy in enumerate(latest, start=1):
        if accuracy > best:
            best, since_best = accuracy, 0
        else:
            since_best += 1
            if since_best == patience:
                expected_epochs = epoch
                break
    assert expected_epochs is not None and expected_epochs < max_epochs
    assert max(latest[expected_epochs:]) > best  # running on would have found better weights

    generator = torch.Generator().manual_seed(1)
    fitted = fit_noisy(generator, max_epochs=max_epochs, early_stopping_patience=patience)
    replay = torch.Generator().manual_seed(1)
    for _ in range(expected_epochs):
        torch.randperm(len(NOISY_TRAIN[0]), generator=replay)
    assert torch.equal(generator.get_state(), replay.get_state())
    val, val_labels = NOISY_VAL
    assert classifier_accuracy(fitted, codes=val, labels=val_labels) == pytest.approx(best)


def test_rejects_mismatched_inputs_and_bad_config():
    codes, labels = blobs(10, 5)
    with pytest.raises(ValueError, match="labels"):
        train_latent_classifier(train_codes=codes, train_labels=labels[:5], val_codes=codes,
                                val_labels=labels, generator=torch.Generator())
    with pytest.raises(ValueError, match="lr_factor"):
        ClassifierConfig(lr_factor=1.5)
