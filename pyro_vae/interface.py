"""What the rest of the library sees of a model: the :class:`PyroVAE` interface, and the registry
of the classes that implement it (checkpoints, the zoo and the benchmarks build models from it).

Every model is a Pyro model/guide pair on one ``nn.Module`` with one or several latent sample
sites, listed top group first in ``latent_sites`` (a flat VAE has one). The defence conditions
``model`` on x and samples all sites jointly; the attacks read the guide's (loc, scale) of the
``attacked_sites`` (the top k_A groups, PROTOCOL.md §6); evaluation replays the model on the
guide's traces. None of them needs the concrete class.

Adding a model is one file (the module and its frozen config dataclass) plus one entry in
:data:`MODEL_CLASSES`. A checkpoint records the class name (``type(model).__name__``); files
written before there was a choice have none and are ConvVAEs (:data:`DEFAULT_MODEL_CLASS`).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from .hvae import HierarchicalVAE
from .vae import ConvVAE

Gaussians = dict[str, tuple[torch.Tensor, torch.Tensor]]


class ModelConfig(Protocol):
    """A frozen dataclass that rebuilds the model: ``cls(config_class(**config.to_dict()))``."""

    kind: str  # the zoo's and the benchmarks' name of the model family, e.g. "vae", "hvae"
    beta: float
    num_channels: int

    @property
    def kl_scale(self) -> float: ...  # weight of the KL terms in the training ELBO

    @property
    def tc_weight(self) -> float: ...  # extra total-correlation weight (β-TCVAE only), else 0

    def to_dict(self) -> dict: ...


@runtime_checkable
class PyroVAE(Protocol):
    """The model interface (DESIGN.md lesson 9).

    Shape:
        x: (B, C, 28, 28) in [0, 1];  the value of site s: (B, *latent_shapes[s]);
        ``encode``: x → loc, scale (B, D_A), D_A = Σ over ``attacked_sites`` of the sites' sizes
    """

    config: ModelConfig
    latent_sites: tuple[str, ...]  # every latent sample site, top group first (sampling order)
    attacked_sites: tuple[str, ...]  # the top k_A groups the encoder attacks read

    @property
    def latent_shapes(self) -> dict[str, tuple[int, ...]]: ...  # event shape per site

    def model(self, x: torch.Tensor, *, kl_scale: float = 1.0): ...

    def guide(self, x: torch.Tensor, *, kl_scale: float = 1.0): ...

    def encode_sites(self, x: torch.Tensor) -> Gaussians:
        """(loc, scale) of q per site, each (B, *latent_shapes[site]), deterministic in x."""

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``encode_sites`` of the attacked sites, flattened and concatenated: (B, D_A) each."""

    def decode_sites(self, z: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean of p(x|z) from every site's value: (B, C, 28, 28)."""

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x̃ = decoded posterior means, (B, C, 28, 28)."""


# Class name (as recorded in checkpoints) → class; each class names its config in ``config_class``.
MODEL_CLASSES: dict[str, type[nn.Module]] = {cls.__name__: cls
                                              for cls in (ConvVAE, HierarchicalVAE)}
DEFAULT_MODEL_CLASS = "ConvVAE"  # what a checkpoint without a class name holds
# Model kind (the zoo's and the command lines' name) → class.
MODEL_KINDS: dict[str, type[nn.Module]] = {kind: cls for cls in MODEL_CLASSES.values()
                                           for kind in cls.kinds}


def model_class(name: str) -> type[nn.Module]:
    """The registered class called ``name``; ``KeyError`` naming the known ones otherwise."""
    if name not in MODEL_CLASSES:
        raise KeyError(f"unknown model class {name!r}; known: {', '.join(MODEL_CLASSES)}")
    return MODEL_CLASSES[name]


def build_model(class_name: str, config: dict) -> nn.Module:
    """A fresh model of the registered class from its config's ``to_dict()``."""
    cls = model_class(class_name)
    return cls(cls.config_class(**config))


def config_for(kind: str, *, beta: float = 1.0, num_channels: int = 1,
               decoder_output: str = "sigmoid"):
    """The default-architecture config of a model ``kind`` (e.g. ``"beta_vae"``, ``"hvae"``).

    ``decoder_output`` other than ``"sigmoid"`` exists for the ConvVAE only (the authors'
    identity decoder); asking it of another family is a ``ValueError``.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    config_class = MODEL_KINDS[kind].config_class
    options = {"kind": kind, "beta": beta, "num_channels": num_channels}
    if "decoder_output" in {field.name for field in fields(config_class)}:
        options["decoder_output"] = decoder_output
    elif decoder_output != "sigmoid":
        raise ValueError(f"decoder_output={decoder_output!r} is a ConvVAE option; "
                         f"the {kind!r} model has a sigmoid output only")
    return config_class(**options)
