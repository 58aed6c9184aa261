"""How several latent sample sites share one flat vector, so every batched sampler runs unchanged.

A hierarchical model has a latent site per group (z_K, ..., z_1, top first). The defence updates
all groups jointly (PROTOCOL.md §7): each site's value, of shape (N, *event_shape), is flattened
to (N, size) and the sites are concatenated in their given order into one z of dimension
D = Σ sizes. A flat model is the special case of one site with event shape (D,).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor


def site_names(latent_site: str | Sequence[str]) -> tuple[str, ...]:
    """One site name or a sequence of them as a tuple; ``ValueError`` unless they are distinct
    non-empty strings."""
    names = (latent_site,) if isinstance(latent_site, str) else tuple(latent_site)
    if not names or not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"latent_site must be a site name or a non-empty sequence of names, "
                         f"got {latent_site!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"latent sites must be distinct, got {names}")
    return names


@dataclass(frozen=True)
class LatentLayout:
    """The sites (in order) and their event shapes; where each one lies in the flat z.

    Shape:
        flat z: (..., D) with D = ``dim``;  site s: (..., *shapes[i])
    """

    sites: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(shape) for shape in self.shapes)

    @property
    def dim(self) -> int:
        return sum(self.sizes)

    @property
    def slices(self) -> dict[str, slice]:
        """Site → its columns of the flat z."""
        ends = [sum(self.sizes[:i + 1]) for i in range(len(self.sizes))]
        return {site: slice(end - size, end)
                for site, size, end in zip(self.sites, self.sizes, ends)}

    def split(self, z: Tensor) -> dict[str, Tensor]:
        """Flat z (..., D) → {site: (..., *shape)}: views, so gradients flow back to z."""
        if z.shape[-1] != self.dim:
            raise ValueError(f"expected a last dimension of {self.dim}, got {tuple(z.shape)}")
        parts = z.split(self.sizes, dim=-1)
        return {site: part.reshape(*z.shape[:-1], *shape)
                for site, part, shape in zip(self.sites, parts, self.shapes)}
