"""One latent vector per input, for any model of the :class:`pyro_vae.PyroVAE` interface.

The samplers move one flat z per input: every latent site of the model flattened and
concatenated, top group first (:class:`inference.LatentLayout`; a ConvVAE has the one site "z").
The metrics draw such vectors from the guide, decode them, read their attacked part (the top
k_A groups, what the latent classifiers and the encoder attacks see) and draw them from the
prior, all through the model's own model/guide, so no stage needs the concrete class.
"""

from __future__ import annotations

import pyro
import pyro.poutine as poutine
import torch

from attacks import encoder_from_guide
from inference import LatentLayout, initial_latents


def layout(vae) -> LatentLayout:
    """Where each latent site lies in the flat z."""
    return LatentLayout(tuple(vae.latent_sites),
                        tuple(tuple(vae.latent_shapes[site]) for site in vae.latent_sites))


def guide_latents(vae, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """z ~ q(z|x) drawn from ``generator`` (ancestrally, group by group), or the guide's means
    when ``generator`` is None. For a ConvVAE: loc + scale·ε, ε ~ N(0, I) from the generator.
    Shape: x (B, C, H, W) → (B, D)."""
    return initial_latents(vae.guide, (x,), init="sample" if generator is not None else "mean",
                           latent_site=vae.latent_sites, generator=generator)[0]


def decode(vae, z: torch.Tensor) -> torch.Tensor:
    """Mean of p(x|z) of flat latents. Shape: (B, D) → (B, C, H, W)."""
    return vae.decode_sites(layout(vae).split(z))


def attacked_part(vae, z: torch.Tensor) -> torch.Tensor:
    """The columns of the attacked sites (the top k_A groups: a prefix of the latent sites), as
    ``vae.encode`` and the latent classifiers see them. Shape: (..., D) → (..., D_A)."""
    sites = tuple(vae.latent_sites)
    attacked = tuple(vae.attacked_sites)
    if sites[:len(attacked)] != attacked:
        raise ValueError(f"the attacked sites {attacked} must be the top groups of {sites}")
    return z[..., :layout(vae).slices[attacked[-1]].stop]


def split(vae, z: torch.Tensor) -> dict[str, torch.Tensor]:
    """Flat latents as {site: value}, the form ``log_joint`` and ``decode_sites`` take."""
    return layout(vae).split(z)


@torch.no_grad()
def prior_latents(vae, x_like: torch.Tensor, seed: int) -> torch.Tensor:
    """One draw of every latent site from the model's prior p(z) = p(z_K) Π p(z_k | z_>k) per
    row of ``x_like`` (only its shape and device matter: the observed site is not sampled), from
    the model itself with the global RNG seeded and restored. Shape: (B, C, H, W) → (B, D)."""
    devices = [x_like.device] if x_like.is_cuda else []
    with torch.random.fork_rng(devices=devices), pyro.validation_enabled(False):
        torch.manual_seed(seed)
        trace = poutine.trace(poutine.block(vae.model, hide_types=["param"])).get_trace(x_like)
    values = [trace.nodes[site]["value"].flatten(1) for site in vae.latent_sites]
    return torch.cat(values, dim=1)


def guide_encoder(vae):
    """The attackers' encoder: (loc, scale) of the attacked sites read off the Pyro guide
    (:func:`attacks.encoder_from_guide`), flattened and concatenated. Shape: x → (B, D_A)."""
    return encoder_from_guide(vae.guide, latent_site=tuple(vae.attacked_sites))
