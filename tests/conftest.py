"""Shared fixtures: the real-data root (../shared/data beside the checkout) and tiny synthetic IDX files."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def real_data_root() -> Path | None:
    """The directory holding mnist/ and fashion-mnist/ IDX files, or None when absent."""
    for candidate in (os.environ.get("PYRO_VAE_DATA"), SHARED_DATA):
        if candidate and (Path(candidate) / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    root = real_data_root()
    if root is None:
        pytest.skip(f"MNIST IDX files not found in $PYRO_VAE_DATA or {SHARED_DATA}")
    return root


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file (magic 0x0000_08_<ndim>, big-endian dims)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def synthetic_root(tmp_path: Path) -> Path:
    """A data root with a tiny fake MNIST: 30 train and 12 test images, labels 0..9 cycling."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix, count in (("train", 30), ("t10k", 12)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10)
    return tmp_path
