"""A top-down hierarchical VAE for 28×28 or 64×64 images as a Pyro model/guide pair
(PROTOCOL.md §3).

The paper's hierarchical model is NVIDIA's NVAE, whose weights cannot be fetched here; this is a
small model of the same family (ladder VAE / NVAE structure), sized to train on a CPU. The paper
ran NVAE on MNIST and on CelebA 64×64 (Section 4.3), hence the two image sizes.

Latent groups, top first (C = 8 latent channels each by default), with R the image size:

    R = 28:   z3: (C, 4, 4)    z2: (C, 7, 7)      z1: (C, 14, 14)
    R = 64:   z3: (C, 8, 8)    z2: (C, 16, 16)    z1: (C, 32, 32)

The 28×28 model is the original one, layer for layer (its checkpoints load unchanged); 64×64
uses the same layers with every upsampling an exact doubling.

Generative model:
    p(z3) = N(0, I),  p(z2 | z3),  p(z1 | z2, z3),  x | z ~ Bernoulli(mean(z))
where every conditional prior is a diagonal Gaussian read off the state of one deterministic
top-down path: the path starts from z3, and after each group it upsamples its state to the next
group's resolution, reads that group's prior there, and folds the group's value back in
(a convolution of z_k added to the state, then a residual cell). The likelihood is the ConvVAE's
(vae.py): Bernoulli on the continuous [0, 1] intensities, mean clamped to [1e-5, 1 − 1e-5].

Inference model (top-down inference, as in ladder VAEs and NVAE):
    q(z3 | x) q(z2 | z3, x) q(z1 | z2, z3, x)
A bottom-up network computes features of x at the three group resolutions once; the guide then
runs the SAME top-down module as the model, on its own samples of the groups above, and each
posterior is read off the concatenation of the top-down state and the bottom-up features at that
resolution.
The posterior is parameterised relative to the conditional prior (NVAE's residual form):
loc = prior loc + Δ, scale = prior scale · s, so an uninformative Δ = 0, s = 1 costs no KL.

Both ``model`` and ``guide`` take ``kl_scale`` and wrap every latent site in
``poutine.scale(scale=kl_scale)``, exactly like ``ConvVAE``: ``TraceMeanField_ELBO`` then gives
E_q[log p(x|z)] − kl_scale · Σ_k E_q[KL(q(z_k | z_>k, x) ‖ p(z_k | z_>k))], each group's KL in
closed form given the guide's samples of the groups above. A KL warm-up is therefore only a
``kl_scale`` that changes between epochs. ``kl_scale`` must be positive (``poutine.scale``
refuses 0), so a warm-up starts from a small positive weight.

The parameters enter Pyro's parameter store only where the training loop registers them
(``train_vae`` wraps model and guide with ``pyro.module``, see its docstring): ``model`` and
``guide`` never call ``pyro.module`` themselves, so tracing this model (attacks) or conditioning it
(defence) can never pick up another model's weights from the global store.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from torch import nn

from .vae import BERNOULLI_CLAMP, DATA_PLATE, OBSERVED_SITE, check_images

TOP_SITE = "z3"
MIDDLE_SITE = "z2"
BOTTOM_SITE = "z1"
LATENT_SITES = (TOP_SITE, MIDDLE_SITE, BOTTOM_SITE)  # top group first, the order of sampling
# k_A, the groups the encoder attacks read (PROTOCOL.md §6; the paper attacked the top 10 of
# NVAE's groups, not all): z3 and z2 (4×4 and 7×7 at 28×28) carry the image's layout; z1 at
# 14×14 is close to pixel detail, and with 1568 of the 2088 latent dimensions its SKL would
# dominate the sum and turn the attack into one on local texture.
ATTACKED_GROUPS = 2
# Image size -> spatial size of each group, top first. The bottom-up path halves with stride-2
# convolutions (rounding up: 7 → 4), the top-down path undoes it, and the output doubles z1's.
GROUP_RESOLUTIONS = {28: (4, 7, 14), 64: (8, 16, 32)}
SUPPORTED_IMAGE_SIZES = tuple(GROUP_RESOLUTIONS)
MIN_SCALE = 1e-3  # floor of every standard deviation: keeps log-densities (and HMC) well scaled
_SOFTPLUS_OF_ONE = math.log(math.e - 1.0)  # softplus(_SOFTPLUS_OF_ONE) = 1

Sites = dict[str, torch.Tensor]
Gaussians = dict[str, tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class HVAEConfig:
    """What a checkpoint needs to rebuild a :class:`HierarchicalVAE`.

    ``latent_channels`` are the channels of z3, z2, z1 (top first); ``width`` is the channel count
    of every deterministic feature map. ``beta`` weights the KL of all groups (β-VAE style);
    ``kl_scale`` and ``tc_weight`` match ``VAEConfig`` so the training code reads them alike.
    """

    num_channels: int = 1
    image_size: int = 28
    kind: str = "hvae"
    beta: float = 1.0
    width: int = 32
    latent_channels: tuple[int, int, int] = (8, 8, 8)

    def __post_init__(self) -> None:
        # A config read back from JSON has a list here; the frozen config must stay hashable.
        object.__setattr__(self, "latent_channels", tuple(self.latent_channels))
        if self.kind != "hvae":
            raise ValueError(f"unknown model kind {self.kind!r} for HVAEConfig; use 'hvae'")
        if not self.beta > 0:
            raise ValueError(f"beta must be positive, got {self.beta}")
        if self.num_channels not in (1, 3):
            raise ValueError(f"num_channels must be 1 or 3, got {self.num_channels}")
        if self.image_size not in GROUP_RESOLUTIONS:
            raise ValueError("the hierarchical VAE supports image_size in "
                             f"{', '.join(map(str, SUPPORTED_IMAGE_SIZES))}, "
                             f"got image_size={self.image_size}")
        if self.width < 1:
            raise ValueError(f"width must be at least 1, got {self.width}")
        if (len(self.latent_channels) != len(LATENT_SITES)
                or not all(isinstance(c, int) and c >= 1 for c in self.latent_channels)):
            raise ValueError(f"latent_channels must be {len(LATENT_SITES)} positive integers "
                             f"(z3, z2, z1), got {self.latent_channels}")

    @property
    def kl_scale(self) -> float:
        """The weight of the KL terms in the training ELBO."""
        return self.beta

    @property
    def tc_weight(self) -> float:
        """No total-correlation penalty: the hierarchical VAE trains on the (β-)ELBO."""
        return 0.0

    @property
    def group_resolutions(self) -> tuple[int, int, int]:
        """Spatial size of z3, z2, z1: (4, 7, 14) at 28×28, (8, 16, 32) at 64×64."""
        return GROUP_RESOLUTIONS[self.image_size]

    @property
    def latent_shapes(self) -> dict[str, tuple[int, int, int]]:
        """Event shape (channels, size, size) of every latent site, top first."""
        return {site: (channels, size, size) for site, channels, size
                in zip(LATENT_SITES, self.latent_channels, self.group_resolutions)}

    def to_dict(self) -> dict:
        return asdict(self)


def _positive(raw: torch.Tensor) -> torch.Tensor:
    """A standard deviation factor: 1 at raw = 0, at least ``MIN_SCALE``."""
    return F.softplus(raw + _SOFTPLUS_OF_ONE) + MIN_SCALE


class ResidualCell(nn.Module):
    """h ↦ h + conv(silu(conv(silu(h)))), 3×3 convolutions that keep the shape.

    Shape:
        h: (B, width, H, W) → (B, width, H, W)
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(nn.SiLU(), nn.Conv2d(width, width, 3, padding=1),
                                    nn.SiLU(), nn.Conv2d(width, width, 3, padding=1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.branch(h)


class BottomUp(nn.Module):
    """The deterministic encoder path: features of x at every group's resolution.

    Shape:
        x: (B, C, R, R) → [(B, width, r, r) for r in the group resolutions] (top first), e.g.
        R = 28: 4, 7, 14;  R = 64: 8, 16, 32
    """

    def __init__(self, num_channels: int, width: int) -> None:
        super().__init__()
        # 3×3, stride 2, padding 1 (size ↦ ⌈size / 2⌉): 28 → 14 → 7 → 4, 64 → 32 → 16 → 8
        self.stages = nn.ModuleList([
            nn.Sequential(nn.Conv2d(c_in, width, 3, stride=2, padding=1), ResidualCell(width))
            for c_in in (num_channels, width, width)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = 2.0 * x - 1.0  # centre the intensities
        features = []
        for stage in self.stages:
            h = stage(h)
            features.append(h)
        return features[::-1]


class LatentGroup(nn.Module):
    """One latent group z_k of the shared top-down path.

    ``enter`` brings the state of the groups above to this group's resolution (the top group has
    no state above it: ``upsample=None``, prior N(0, I)); ``prior`` reads p(z_k | z_>k) there;
    ``posterior`` reads q(z_k | z_>k, x) from the same context and the bottom-up features;
    ``update`` folds z_k into the state passed down.

    Shape:
        state: (B, width, r_above, r_above);  context: (B, width, r, r);
        features: (B, width, r, r);  z, loc, scale: (B, latent_channels, r, r)
    """

    def __init__(self, width: int, latent_channels: int, *,
                 upsample: nn.Module | None) -> None:
        super().__init__()
        self.upsample = upsample
        self.latent_channels = latent_channels
        is_top = upsample is None
        self.prior_head = None if is_top else nn.Conv2d(width, 2 * latent_channels, 3, padding=1)
        context_width = width if is_top else 2 * width
        self.posterior_head = nn.Conv2d(context_width, 2 * latent_channels, 3, padding=1)
        self.absorb = nn.Conv2d(latent_channels, width, 3, padding=1)
        self.cell = ResidualCell(width)

    def enter(self, state: torch.Tensor | None) -> torch.Tensor | None:
        return None if self.upsample is None else self.upsample(state)

    def prior(self, context: torch.Tensor | None, *, batch_size: int, size: int,
              like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if context is None:
            loc = like.new_zeros((batch_size, self.latent_channels, size, size))
            return loc, torch.ones_like(loc)
        loc, raw_scale = self.prior_head(context).chunk(2, dim=1)
        return loc, _positive(raw_scale)

    def posterior(self, context: torch.Tensor | None, features: torch.Tensor,
                  prior_loc: torch.Tensor, prior_scale: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = features if context is None else torch.cat([context, features], dim=1)
        shift, raw_scale = self.posterior_head(inputs).chunk(2, dim=1)
        return prior_loc + shift, prior_scale * _positive(raw_scale)

    def update(self, context: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
        h = self.absorb(z)
        return self.cell(h if context is None else context + h)


def _upsample(width: int, source: int, target: int, out_channels: int | None = None
              ) -> nn.Sequential:
    """silu, then a stride-2 transposed convolution from ``source`` to ``target`` pixels.

    Its output is 2·source − 4 + kernel, so kernel 4 doubles (7 → 14, 8 → 16) and kernel 3
    undoes a rounded-up halving (4 → 7).
    """
    kernel = target - 2 * source + 4
    if kernel not in (3, 4):
        raise ValueError(f"cannot upsample {source} → {target} by a factor of about 2")
    out_channels = width if out_channels is None else out_channels
    return nn.Sequential(nn.SiLU(),
                         nn.ConvTranspose2d(width, out_channels, kernel, stride=2, padding=1))


# choose(site, context, prior_loc, prior_scale) -> the group's value
Choose = Callable[[str, torch.Tensor | None, torch.Tensor, torch.Tensor], torch.Tensor]


class HierarchicalVAE(nn.Module):
    """Three-group top-down VAE (module docstring) with Pyro ``model`` and ``guide`` methods.

    The model and guide have one sample site per group, ``latent_sites`` (top first), each
    ``Normal(loc, scale).to_event(3)`` inside ``pyro.plate("data")``, and the observed site "x".

    Shape:
        x: (B, C, R, R) in [0, 1], R = ``config.image_size``;
        z: {"z3": (B, c3, r3, r3), "z2": (B, c2, r2, r2), "z1": (B, c1, r1, r1)} with
        (r3, r2, r1) = (4, 7, 14) at R = 28 and (8, 16, 32) at R = 64 (``latent_shapes``)
    """

    config_class = HVAEConfig
    kinds = ("hvae",)
    latent_sites: tuple[str, ...] = LATENT_SITES
    attacked_sites: tuple[str, ...] = LATENT_SITES[:ATTACKED_GROUPS]

    def __init__(self, config: HVAEConfig) -> None:
        super().__init__()
        self.config = config
        width = config.width
        top, middle, bottom = config.group_resolutions
        self.bottom_up = BottomUp(config.num_channels, width)
        upsamples = (  # the top group has nothing above it; 4 → 7 → 14 or 8 → 16 → 32
            None, _upsample(width, top, middle), _upsample(width, middle, bottom))
        self.groups = nn.ModuleList([
            LatentGroup(width, channels, upsample=upsample)
            for channels, upsample in zip(config.latent_channels, upsamples)])
        # z1's resolution → the image's (14 → 28, 32 → 64), logits of the Bernoulli mean
        self.output = _upsample(width, bottom, config.image_size, config.num_channels)

    @property
    def latent_shapes(self) -> dict[str, tuple[int, int, int]]:
        """Event shape of every latent site, top first."""
        return self.config.latent_shapes

    def _top_down(self, choose: Choose, *, batch_size: int, like: torch.Tensor) -> torch.Tensor:
        """Run the shared top-down path, top group first; return the final state at z1's
        resolution.

        For each group the path computes the conditional prior p(z_k | z_>k) and asks
        ``choose(site, context, prior_loc, prior_scale)`` for the group's value (a prior sample in
        the model, a posterior sample in the guide, a given value in ``decode``).

        Shape:
            → (batch_size, width, r1, r1), r1 = 14 at 28×28, 32 at 64×64
        """
        state = None
        for site, group, size in zip(LATENT_SITES, self.groups, self.config.group_resolutions):
            context = group.enter(state)
            prior_loc, prior_scale = group.prior(context, batch_size=batch_size, size=size,
                                                 like=like)
            state = group.update(context, choose(site, context, prior_loc, prior_scale))
        return state

    def _mean_from_state(self, state: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.output(state))

    def model(self, x: torch.Tensor, *, kl_scale: float = 1.0) -> Sites:
        """p(z3) p(z2|z3) p(z1|z2,z3) p(x|z) with x observed; returns the latent values."""
        check_images(x, self.config)
        values: Sites = {}

        def sample_prior(site, context, loc, scale):
            with poutine.scale(scale=kl_scale):
                values[site] = pyro.sample(site, dist.Normal(loc, scale).to_event(3))
            return values[site]

        with pyro.plate(DATA_PLATE, x.shape[0]):
            state = self._top_down(sample_prior, batch_size=x.shape[0], like=x)
            probs = self._mean_from_state(state).clamp(BERNOULLI_CLAMP, 1 - BERNOULLI_CLAMP)
            # The paper's likelihood on continuous intensities (see ConvVAE.model).
            likelihood = dist.Bernoulli(probs=probs, validate_args=False).to_event(3)
            pyro.sample(OBSERVED_SITE, likelihood, obs=x)
        return values

    def guide(self, x: torch.Tensor, *, kl_scale: float = 1.0) -> Sites:
        """q(z3|x) q(z2|z3,x) q(z1|z2,z3,x); returns the latent values."""
        check_images(x, self.config)
        features = dict(zip(LATENT_SITES, self.bottom_up(x)))
        groups = dict(zip(LATENT_SITES, self.groups))
        values: Sites = {}

        def sample_posterior(site, context, prior_loc, prior_scale):
            loc, scale = groups[site].posterior(context, features[site], prior_loc, prior_scale)
            with poutine.scale(scale=kl_scale):
                values[site] = pyro.sample(site, dist.Normal(loc, scale).to_event(3))
            return values[site]

        with pyro.plate(DATA_PLATE, x.shape[0]):
            self._top_down(sample_posterior, batch_size=x.shape[0], like=x)
        return values

    def _posterior_means(self, x: torch.Tensor) -> tuple[Gaussians, torch.Tensor]:
        """The guide's (loc, scale) per group with every group above at its posterior mean, and
        the top-down state those means lead to."""
        check_images(x, self.config)
        features = dict(zip(LATENT_SITES, self.bottom_up(x)))
        groups = dict(zip(LATENT_SITES, self.groups))
        params: Gaussians = {}

        def take_mean(site, context, prior_loc, prior_scale):
            params[site] = groups[site].posterior(context, features[site], prior_loc, prior_scale)
            return params[site][0]

        state = self._top_down(take_mean, batch_size=x.shape[0], like=x)
        return params, state

    def encode_sites(self, x: torch.Tensor) -> Gaussians:
        """(loc, scale) of every group's posterior q(z_k | z_>k, x), top first, along the path
        where each group above is set to its posterior mean.

        Only the top group's posterior is a function of x alone; the lower ones depend on the
        values of the groups above. Taking the means there (rather than samples) makes this a
        deterministic, differentiable function of x, like the ConvVAE's encoder, so the encoder
        attacks (SKL over the top k_A groups) need no expectation over the guide's randomness.
        It equals the guide's site distributions when the guide's groups take these means.

        Shape:
            x: (B, C, R, R) → {site: (loc, scale)}, each (B, *latent_shapes[site])
        """
        return self._posterior_means(x)[0]

    def encode(self, x: torch.Tensor, *, num_groups: int = ATTACKED_GROUPS
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The top ``num_groups`` groups of :meth:`encode_sites`, flattened and concatenated
        (default k_A = ``ATTACKED_GROUPS``, the ``attacked_sites``).

        This is the ``encode(x) -> (loc, scale)`` of the single-latent code paths (attacks,
        latent classifiers). The symmetric KL between diagonal Gaussians sums over dimensions, so
        the SKL of this concatenation is the SKL summed over the top ``num_groups`` groups.

        Shape:
            x: (B, C, R, R) → loc, scale: (B, D) with D the sum of the groups' sizes
        """
        if not 1 <= num_groups <= len(LATENT_SITES):
            raise ValueError(f"num_groups must be in 1..{len(LATENT_SITES)}, got {num_groups}")
        params = self.encode_sites(x)
        chosen = [params[site] for site in LATENT_SITES[:num_groups]]
        loc = torch.cat([loc.flatten(1) for loc, _ in chosen], dim=1)
        scale = torch.cat([scale.flatten(1) for _, scale in chosen], dim=1)
        return loc, scale

    def _check_latents(self, z: Sites) -> int:
        """Raise ``ValueError`` unless z has every group with its event shape; return B."""
        expected = self.latent_shapes
        if not isinstance(z, dict) or set(z) != set(expected):
            keys = sorted(z) if isinstance(z, dict) else type(z).__name__
            raise ValueError(f"expected a dict with the latent sites {list(expected)}, got {keys}")
        for site, shape in expected.items():
            if not isinstance(z[site], torch.Tensor) or z[site].dim() != 4 \
                    or tuple(z[site].shape[1:]) != shape:
                got = tuple(z[site].shape) if isinstance(z[site], torch.Tensor) else z[site]
                raise ValueError(f"latent {site!r} must have shape "
                                 f"(batch, {', '.join(map(str, shape))}), got {got}")
        batch_size = z[TOP_SITE].shape[0]
        if any(value.shape[0] != batch_size for value in z.values()):
            raise ValueError("all latent groups must have the same batch size, got "
                             f"{ {site: value.shape[0] for site, value in z.items()} }")
        return batch_size

    def decode(self, z: Sites) -> torch.Tensor:
        """Mean of p(x|z), (B, C, R, R) in [0, 1].

        Shape:
            z: {site: (B, *latent_shapes[site])} → (B, C, R, R)
        """
        batch_size = self._check_latents(z)
        state = self._top_down(lambda site, *_: z[site], batch_size=batch_size, like=z[TOP_SITE])
        return self._mean_from_state(state)

    def decode_sites(self, z: Sites) -> torch.Tensor:
        """:meth:`decode`: this model's latent value already is one tensor per site."""
        return self.decode(z)

    def prior(self, z: Sites) -> Gaussians:
        """(loc, scale) of every conditional prior p(z_k | z_>k) at the given values of the
        groups above (the top group's is N(0, I)).

        Shape:
            z: {site: (B, *latent_shapes[site])} → {site: (loc, scale)}, same shapes
        """
        batch_size = self._check_latents(z)
        params: Gaussians = {}

        def record(site, context, loc, scale):
            params[site] = (loc, scale)
            return z[site]

        self._top_down(record, batch_size=batch_size, like=z[TOP_SITE])
        return params

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded posterior means (every group at the mean of :meth:`encode_sites`),
        (B, C, R, R): the x̃ of the paper's figures."""
        return self._mean_from_state(self._posterior_means(x)[1])
