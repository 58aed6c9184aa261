"""The convolutional encoder and decoder of PROTOCOL.md §3 (identical for all three datasets).

Spatial sizes: encoder 28→14→7→4→2→1 (a flat latent), decoder 1→5→7→7→14→28.
"""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """x ↦ (loc, scale) of the diagonal Gaussian q(z|x).

    Shape:
        x: (B, C, 28, 28) → loc, scale: (B, latent_dim)
    """

    def __init__(self, num_channels: int, latent_dim: int) -> None:
        super().__init__()
        widths = (num_channels, 32, 64, 96, 128)
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self.loc_head = nn.Conv2d(128, latent_dim, 3, stride=2, padding=1)
        self.log_var_head = nn.Conv2d(128, latent_dim, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.trunk(x)
        loc = self.loc_head(features).flatten(1)
        scale = torch.exp(0.5 * self.log_var_head(features).flatten(1))
        return loc, scale


class Decoder(nn.Module):
    """z ↦ mean of p(x|z), squashed by a sigmoid into (0, 1) for 1 and 3 channels alike.

    ``squash=False`` ends in the identity instead: the authors' ColorMNIST decoder
    (PROTOCOL.md §10), kept as a model option to measure what it changes.

    Shape:
        z: (B, latent_dim) → mean: (B, C, 28, 28)
    """

    def __init__(self, num_channels: int, latent_dim: int, *, squash: bool = True) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 128, 3, stride=1, padding=0, dilation=2), nn.ReLU(),
            nn.ConvTranspose2d(128, 96, 3, stride=1, padding=0), nn.ReLU(),
            nn.ConvTranspose2d(96, 64, 3, stride=1, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, num_channels, 4, stride=2, padding=1),
            nn.Sigmoid() if squash else nn.Identity(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])
