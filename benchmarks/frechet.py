"""A Fréchet distance substitute for FID (PROTOCOL.md §8).

The authors used torchmetrics' FID on 64-d Inception features; Inception weights cannot be fetched
on these machines. We name our number **FD-CNN**: the Fréchet distance between Gaussians fitted to
the 64-d penultimate features of a small CNN classifier trained on the same dataset's labels
(digit for MNIST and ColorMNIST, class for Fashion-MNIST), test images against decoded prior
samples (the means of p(x|z), z ~ N(0, I)). Its scale is not comparable with the paper's FID.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pyro_vae import batch_of, minibatches

from .stages import latents

FEATURE_DIM = 64


class FeatureCNN(nn.Module):
    """Two strided conv layers and a 64-d feature layer; ``features(x)`` feeds the distance.

    Small on purpose: it only has to give features that separate the dataset's classes, and it
    trains in seconds on a CPU.
    """

    def __init__(self, num_channels: int, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(num_channels, 32, 3, stride=2, padding=1), nn.ReLU(),  # 28 → 14
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),  # 14 → 7
            nn.Flatten(), nn.Linear(64 * 7 * 7, FEATURE_DIM), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_feature_cnn(splits, *, epochs: int, device: torch.device, seed: int = 0,
                      max_points: int | None = None) -> FeatureCNN:
    """Adam, 1e-3, batch 128 on the first label column (digit / class)."""
    torch.manual_seed(seed)
    network = FeatureCNN(splits.num_channels).to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for x, targets in minibatches(splits.train, 128, generator=generator, limit=max_points):
            labels = targets[:, 0] if targets.dim() == 2 else targets
            optimizer.zero_grad()
            F.cross_entropy(network(x.to(device)), labels.to(device)).backward()
            optimizer.step()
    return network.eval().requires_grad_(False)


@torch.no_grad()
def feature_accuracy(network: FeatureCNN, subset, *, points: int, device) -> float:
    x, targets = batch_of(subset, torch.arange(min(points, len(subset))))
    labels = targets[:, 0] if targets.dim() == 2 else targets
    return (network(x.to(device)).argmax(1).cpu() == labels).float().mean().item()


def frechet_distance(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """‖μ_a − μ_b‖² + Tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2}) between Gaussian fits of two sets.

    Shape:
        features_a: (N, F), features_b: (M, F)
    """
    a, b = features_a.double().cpu().numpy(), features_b.double().cpu().numpy()
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr (Σ_a Σ_b)^{1/2} = Tr (Σ_a^{1/2} Σ_b Σ_a^{1/2})^{1/2}: the inner matrix is symmetric PSD,
    # so its eigenvalues give the trace exactly, also when a covariance is singular (features
    # that are always 0 after a ReLU), where a general matrix square root of Σ_a Σ_b is not stable.
    root_a = _psd_sqrt(cov_a)
    inner = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_of_root = np.sqrt(np.clip(inner, 0.0, None)).sum()
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b)
                 - 2.0 * trace_of_root)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (rounding's
    negative eigenvalues set to 0)."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


@torch.no_grad()
def prior_sample_fd(network: FeatureCNN, vae, subset, *, points: int, device,
                    seed: int = 0) -> float:
    """FD-CNN between ``points`` test images and as many decoded prior samples."""
    x, _ = batch_of(subset, torch.arange(min(points, len(subset))))
    z = latents.prior_latents(vae, x.to(device), seed)
    samples = torch.cat([latents.decode(vae, chunk) for chunk in z.split(1000)])
    real = torch.cat([network.features(chunk.to(device)) for chunk in x.split(1000)])
    fake = torch.cat([network.features(chunk) for chunk in samples.split(1000)])
    return frechet_distance(real, fake)
