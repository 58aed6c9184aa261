"""The convolutional VAE as a Pyro model/guide pair on one ``nn.Module`` (PROTOCOL.md §3).

Generative model:  z ~ N(0, I),  x | z ~ Bernoulli(decoder(z))  evaluated on the continuous [0, 1]
intensities (the authors' likelihood; their NLL numbers use it), mean clamped to [1e-5, 1 − 1e-5].
Inference model:   q(z|x) = N(loc(x), diag(scale(x)²)).

The KL weight β of the β-VAE enters through Pyro: ``model`` and ``guide`` wrap the latent site in
``poutine.scale(scale=kl_scale)``, so ``Trace_ELBO`` on ``(model, guide)`` called with
``kl_scale=β`` is E_q[log p(x|z)] − β·KL(q(z|x) ‖ p(z)). The defaults (``kl_scale=1``) give the
unscaled generative model, which is what the MCMC defence conditions on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.util import is_validation_enabled
from torch import nn

from .networks import Decoder, Encoder

LATENT_SITE = "z"
OBSERVED_SITE = "x"
DATA_PLATE = "data"
MODEL_KINDS = ("vae", "beta_vae", "beta_tcvae")
DECODER_OUTPUTS = ("sigmoid", "identity")
BERNOULLI_CLAMP = 1e-5


@dataclass(frozen=True)
class VAEConfig:
    """What a checkpoint needs to rebuild the model.

    ``beta`` is the KL weight for ``beta_vae`` and the total-correlation weight for ``beta_tcvae``
    (whose loss is −ELBO + (β − 1)·TC); it must be 1 for ``vae``.

    ``decoder_output`` is the decoder's last layer: ``"sigmoid"`` (PROTOCOL.md §3, ours) or
    ``"identity"``, the authors' ColorMNIST decoder (PROTOCOL.md §10): the raw output is clamped
    to [1e-5, 1 − 1e-5] only inside the likelihood, so wherever it lies outside that range
    log p(x|z) is flat in z.
    """

    kind: str = "vae"
    beta: float = 1.0
    num_channels: int = 1
    latent_dim: int = 64
    image_size: int = 28
    decoder_output: str = "sigmoid"

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; choose one of {MODEL_KINDS}")
        if not self.beta > 0:
            raise ValueError(f"beta must be positive, got {self.beta}")
        if self.kind == "vae" and self.beta != 1.0:
            raise ValueError("a plain 'vae' has beta = 1; use kind='beta_vae' for other values")
        if self.num_channels not in (1, 3):
            raise ValueError(f"num_channels must be 1 or 3, got {self.num_channels}")
        if self.decoder_output not in DECODER_OUTPUTS:
            raise ValueError(f"unknown decoder_output {self.decoder_output!r}; choose one of "
                             f"{DECODER_OUTPUTS}")
        if self.image_size != 28:
            raise ValueError("the architecture of PROTOCOL.md §3 is for 28×28 images")

    @property
    def kl_scale(self) -> float:
        """The weight of the KL term in the training ELBO."""
        return self.beta if self.kind == "beta_vae" else 1.0

    @property
    def tc_weight(self) -> float:
        """The extra weight (β − 1) of the total correlation in the β-TCVAE loss."""
        return self.beta - 1.0 if self.kind == "beta_tcvae" else 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def check_images(x: torch.Tensor, config: VAEConfig) -> None:
    """Raise ``ValueError`` unless x is (B, C, 28, 28) with values in [0, 1].

    The value check synchronises with the device, so it only runs while Pyro validation is on
    (``pyro.validation_enabled(False)`` switches it off for hot loops, like Pyro's own checks).
    """
    expected = (config.num_channels, config.image_size, config.image_size)
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != expected:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected images of shape (batch, {', '.join(map(str, expected))}), "
                         f"got {shape}")
    if is_validation_enabled() and x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError("pixel values must lie in [0, 1] (ToTensor scaling); got "
                         f"min {x.min().item():.3g}, max {x.max().item():.3g}")


class ConvVAE(nn.Module):
    """Encoder and decoder of PROTOCOL.md §3 with Pyro ``model`` and ``guide`` methods.

    It implements ``pyro_vae.interface.PyroVAE`` with its one latent site "z", which is also
    the site the encoder attacks read.

    Shape:
        x: (B, C, 28, 28) in [0, 1];  z: (B, latent_dim)
    """

    config_class = VAEConfig
    kinds = MODEL_KINDS
    latent_sites: tuple[str, ...] = (LATENT_SITE,)
    attacked_sites: tuple[str, ...] = (LATENT_SITE,)

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config.num_channels, config.latent_dim)
        self.decoder = Decoder(config.num_channels, config.latent_dim,
                               squash=config.decoder_output == "sigmoid")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale) of q(z|x), each (B, latent_dim)."""
        check_images(x, self.config)
        return self.encoder(x)

    @property
    def latent_shapes(self) -> dict[str, tuple[int, ...]]:
        """Event shape of the latent site: {"z": (latent_dim,)}."""
        return {LATENT_SITE: (self.config.latent_dim,)}

    def encode_sites(self, x: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{"z": :meth:`encode` (x)}, the multi-site form of the interface."""
        return {LATENT_SITE: self.encode(x)}

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean of p(x|z), (B, C, 28, 28) in [0, 1].

        With the sigmoid decoder this is the network's output; with the authors' identity output
        it is the clamped output the likelihood uses, so reconstructions stay images.
        """
        mean = self.decoder(z)
        if self.config.decoder_output == "identity":
            mean = mean.clamp(BERNOULLI_CLAMP, 1 - BERNOULLI_CLAMP)
        return mean

    def decode_sites(self, z: dict[str, torch.Tensor]) -> torch.Tensor:
        """:meth:`decode` of ``z["z"]``, the multi-site form of the interface."""
        return self.decode(z[LATENT_SITE])

    def model(self, x: torch.Tensor, *, kl_scale: float = 1.0) -> torch.Tensor:
        """p(z) p(x|z) with x observed; returns z."""
        check_images(x, self.config)
        pyro.module("vae", self)
        with pyro.plate(DATA_PLATE, x.shape[0]):
            prior = dist.Normal(x.new_zeros(()), x.new_ones(())).expand(
                [self.config.latent_dim]).to_event(1)
            with poutine.scale(scale=kl_scale):
                z = pyro.sample(LATENT_SITE, prior)
            probs = self.decoder(z).clamp(BERNOULLI_CLAMP, 1 - BERNOULLI_CLAMP)  # as the authors
            # Continuous intensities are not in the Bernoulli support; the log-likelihood
            # x log p + (1 − x) log(1 − p) is still what the paper uses, so skip that check.
            likelihood = dist.Bernoulli(probs=probs, validate_args=False).to_event(3)
            pyro.sample(OBSERVED_SITE, likelihood, obs=x)
        return z

    def guide(self, x: torch.Tensor, *, kl_scale: float = 1.0) -> torch.Tensor:
        """q(z|x); returns z."""
        pyro.module("vae", self)
        loc, scale = self.encode(x)
        with pyro.plate(DATA_PLATE, x.shape[0]):
            with poutine.scale(scale=kl_scale):
                return pyro.sample(LATENT_SITE, dist.Normal(loc, scale).to_event(1))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded encoder mean, (B, C, 28, 28): the x̃ of the paper's figures."""
        return self.decode(self.encode(x)[0])
