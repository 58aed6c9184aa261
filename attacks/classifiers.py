"""Downstream classifiers: a linear layer on encoder means μ(x) (PROTOCOL.md §5, paper Section 5).

Trained as the authors did: SGD with learning rate 1, the rate reduced when validation accuracy
plateaus, early stopping on validation accuracy and the best weights kept. Inputs are precomputed
mean tensors, so training is minibatch SGD over in-memory tensors (no data loader). ColorMNIST's
digit and colour tasks are two calls with different labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class ClassifierConfig:
    """Training settings; learning rate 1 with a plateau schedule as in PROTOCOL.md §5."""

    learning_rate: float = 1.0
    batch_size: int = 256
    max_epochs: int = 100
    lr_patience: int = 3
    lr_factor: float = 0.5
    early_stopping_patience: int = 10

    def __post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.batch_size < 1 or self.max_epochs < 1:
            raise ValueError("batch_size and max_epochs must be >= 1")
        if not 0 < self.lr_factor < 1:
            raise ValueError(f"lr_factor must lie in (0, 1), got {self.lr_factor}")
        if self.lr_patience < 0 or self.early_stopping_patience < 1:
            raise ValueError("lr_patience must be >= 0 and early_stopping_patience >= 1")


def classifier_accuracy(classifier: nn.Module, *, codes: Tensor, labels: Tensor) -> float:
    """Fraction of rows whose arg-max class equals the label (clean test accuracy on μ(x)).

    Shape:
        codes: (N, D);  labels: (N,) integer
    """
    with torch.no_grad():
        return (classifier(codes).argmax(-1) == labels).float().mean().item()


def _check_codes(name: str, codes: Tensor, labels: Tensor) -> None:
    if codes.dim() != 2 or labels.shape != codes.shape[:1]:
        raise ValueError(f"{name}: expected codes (N, D) and labels (N,), got "
                         f"{tuple(codes.shape)} and {tuple(labels.shape)}")


def train_latent_classifier(*, train_codes: Tensor, train_labels: Tensor, val_codes: Tensor,
                            val_labels: Tensor, generator: torch.Generator,
                            num_classes: int | None = None,
                            config: ClassifierConfig = ClassifierConfig()) -> nn.Linear:
    """Fit a linear softmax classifier on latent codes; returns the best-validation weights.

    Softmax regression is convex, so the weights start at zero: nothing is lost and the only
    randomness, the minibatch order, comes from ``generator``. The returned layer is frozen
    (``requires_grad=False``): attacks differentiate through it with respect to inputs only.

    Shape:
        train_codes: (N, D), train_labels: (N,);  val_codes: (M, D), val_labels: (M,)
        → nn.Linear(D, num_classes)
    """
    _check_codes("train", train_codes, train_labels)
    _check_codes("validation", val_codes, val_labels)
    if num_classes is None:
        num_classes = int(max(train_labels.max().item(), val_labels.max().item())) + 1
    classifier = nn.Linear(train_codes.shape[1], num_classes, device=train_codes.device,
                           dtype=train_codes.dtype)
    nn.init.zeros_(classifier.weight)
    nn.init.zeros_(classifier.bias)
    optimizer = torch.optim.SGD(classifier.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=config.lr_factor, patience=config.lr_patience)

    best_accuracy, best_state, epochs_since_best = -1.0, None, 0
    for _ in range(config.max_epochs):
        order = torch.randperm(train_codes.shape[0], generator=generator,
                               device=generator.device).to(train_codes.device)
        for batch in order.split(config.batch_size):
            optimizer.zero_grad()
            F.cross_entropy(classifier(train_codes[batch]), train_labels[batch]).backward()
            optimizer.step()
        accuracy = classifier_accuracy(classifier, codes=val_codes, labels=val_labels)
        schedule.step(accuracy)
        if accuracy > best_accuracy:
            best_accuracy, epochs_since_best = accuracy, 0
            best_state = {name: p.detach().clone() for name, p in classifier.state_dict().items()}
        else:
            epochs_since_best += 1
            if epochs_since_best >= config.early_stopping_patience:
                break
    classifier.load_state_dict(best_state)
    return classifier.requires_grad_(False).eval()
