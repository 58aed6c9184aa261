"""Datasets: MNIST and Fashion-MNIST through torchvision, ColorMNIST built from MNIST, and CelebA
at 64×64 through torchvision (the paper's NVAE experiments, Kuzina et al. 2022, §4.3).

Data root, first that is set: the ``root`` argument, the ``PYRO_VAE_DATA`` environment variable,
``~/.cache/pyro_vae/data``. Each dataset lives in its own folder under the root
(``<root>/mnist``, ``<root>/fashion-mnist``) holding the four standard IDX files, gzipped or not,
which is the layout of the project's shared data directory. Missing files are downloaded from
torchvision's mirrors where a network exists; otherwise ``DatasetNotFoundError`` says which folder,
which files and which variable to set. CelebA is never downloaded (1.4 GB from Google Drive):
it must already be in ``<root>/celeba`` in torchvision's layout (see :class:`CelebA`).

Every dataset here is a torchvision ``VisionDataset`` whose items are ``(image, target)`` with
images as float tensors (C, 28, 28) — (3, 64, 64) for CelebA — in [0, 1] (the ``ToTensor``
scaling, not binarised), and it also offers a vectorised ``batch(indices)`` for training loops
that should not pay a Python call per image.

``DATASET_NAMES`` are the datasets the benchmark pipeline runs on (28×28, class labels);
``load_dataset`` also takes the names in ``EXTRA_DATASET_NAMES`` (CelebA: 64×64 images with 40
binary attributes, which the 28×28 models, the stratified references and the feature network of
the benchmarks cannot take).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Subset
from torchvision import datasets as tv_datasets
from torchvision import transforms
from torchvision.datasets.utils import check_integrity, download_url

DATA_ROOT_ENV = "PYRO_VAE_DATA"
DEFAULT_DATA_ROOT = Path.home() / ".cache" / "pyro_vae" / "data"
DATASET_NAMES = ("mnist", "fashionmnist", "colormnist")
EXTRA_DATASET_NAMES = ("celeba",)  # load_dataset only; not the benchmark pipeline's (docstring)

# PROTOCOL.md §2: colour ids 0..6 are the corners of the RGB cube except black.
COLOURS = torch.tensor(
    [[0, 0, 1], [0, 1, 0], [0, 1, 1], [1, 0, 0], [1, 0, 1], [1, 1, 0], [1, 1, 1]],
    dtype=torch.float32,
)
NUM_COLOURS = len(COLOURS)

_SOURCES = {  # dataset folder name -> torchvision class that knows its files, checksums, mirrors
    "mnist": tv_datasets.MNIST,
    "fashion-mnist": tv_datasets.FashionMNIST,
}
_IDX_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


# CelebA: the files torchvision's integrity check reads (its file_list without the image archive,
# which may be deleted once extracted) and the folder of the extracted aligned JPEGs.
CELEBA_FILES = tuple(name for _, _, name in tv_datasets.CelebA.file_list
                     if Path(name).suffix not in (".zip", ".7z"))
CELEBA_IMAGE_FOLDER = "img_align_celeba"
CELEBA_IMAGE_SIZE = 64
CELEBA_CROP = 148  # the usual 64×64 recipe: a centred 148×148 face of the 178×218 image
CELEBA_SPLITS = {"train": "train", "validation": "valid", "test": "test"}  # ours → torchvision's


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not on disk (and could not, or may not, be downloaded)."""


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$PYRO_VAE_DATA``, else the cache directory."""
    if root is not None:
        return Path(root).expanduser()
    from_env = os.environ.get(DATA_ROOT_ENV)
    return Path(from_env).expanduser() if from_env else DEFAULT_DATA_ROOT


def _find_idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _download(folder: Path, source: type[tv_datasets.MNIST]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for filename, md5 in source.resources:
        for mirror in source.mirrors:
            try:
                download_url(f"{mirror}{filename}", root=str(folder), filename=filename, md5=md5)
                break
            except Exception:  # noqa: BLE001 - any failure means: try the next mirror
                continue
        else:
            raise OSError(f"could not download {filename} from {source.mirrors}")


def _idx_paths(folder: Path, train: bool, download: bool) -> tuple[Path, Path]:
    """Locate (images, labels) IDX files, downloading them if allowed and needed."""
    stems = _IDX_FILES[train]
    found = [_find_idx_file(folder, stem) for stem in stems]
    if None in found and download:
        try:
            _download(folder, _SOURCES[folder.name])
        except OSError:
            pass  # offline: fall through to the error that says what to do
        found = [_find_idx_file(folder, stem) for stem in stems]
    if None in found:
        expected = ", ".join(f"{stem}.gz" for pair in _IDX_FILES.values() for stem in pair)
        raise DatasetNotFoundError(
            f"dataset files not found in {folder} and could not be downloaded (no network?). "
            f"Expected the IDX files {expected} in that directory. Put them there, or point "
            f"the data root at a directory that has a '{folder.name}/' folder with them, either "
            f"with the 'root' argument (--data-root on the command line) or the environment "
            f"variable {DATA_ROOT_ENV}."
        )
    return found[0], found[1]


def _read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (gzipped or not) into a uint8 tensor of its stored shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    num_dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(num_dims))
    if raw[2] != 0x08:  # 0x08: unsigned byte, the only type MNIST-like files use
        raise ValueError(f"{path}: unsupported IDX element type {raw[2]:#x}")
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * num_dims)
    return torch.from_numpy(data.copy()).reshape(shape)


class _IdxDataset:
    """Mixin that replaces torchvision's raw-folder lookup with our flat IDX folder.

    torchvision's MNIST insists on ``<root>/<ClassName>/raw/<uncompressed files>``; the shared data
    are gzipped files in ``<root>/mnist``. We keep torchvision's class (its metadata, mirrors and
    checksums) and only change where the bytes come from.
    """

    folder_name: str

    def __init__(self, root: str | os.PathLike | None = None, *, train: bool = True,
                 download: bool = True) -> None:
        folder = resolve_data_root(root) / self.folder_name
        images_path, labels_path = _idx_paths(folder, train, download)
        self.root = str(folder)
        self.train = train
        self.transform = self.target_transform = self.transforms = None
        self.data = _read_idx(images_path)
        self.targets = _read_idx(labels_path).long()

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 1, 28, 28) float in [0, 1] and labels (B,)."""
        return self.data[indices].unsqueeze(1).float().div_(255.0), self.targets[indices]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.batch(torch.tensor([index]))
        return image[0], int(label[0])

    def __len__(self) -> int:
        return len(self.data)


class MNIST(_IdxDataset, tv_datasets.MNIST):
    """torchvision's MNIST read from ``<root>/mnist``; items are float tensors (1, 28, 28)."""

    folder_name = "mnist"


class FashionMNIST(_IdxDataset, tv_datasets.FashionMNIST):
    """torchvision's Fashion-MNIST read from ``<root>/fashion-mnist``."""

    folder_name = "fashion-mnist"


class ColorMNIST(tv_datasets.VisionDataset):
    """MNIST rendered in the 7 non-black corners of the RGB cube (PROTOCOL.md §2).

    The grey intensity is copied into the active channels; inactive channels are 0. Targets are
    ``(digit, colour)``. With ``all_colours=True`` every MNIST image appears in every colour
    (60k → 420k train, 10k → 70k test; index ``i`` is image ``i // 7`` in colour ``i % 7``);
    otherwise each image gets one colour drawn with ``seed``.

    Shape:
        item image: (3, 28, 28) float in [0, 1]; ``batch`` targets: (B, 2) = (digit, colour).
    """

    def __init__(self, root: str | os.PathLike | None = None, *, train: bool = True,
                 all_colours: bool = True, seed: int = 0, download: bool = True) -> None:
        mnist = MNIST(root, train=train, download=download)
        super().__init__(mnist.root)
        self.grey, self.digits = mnist.data, mnist.targets
        self.all_colours = all_colours
        if all_colours:
            self.image_index = torch.arange(len(self.grey)).repeat_interleave(NUM_COLOURS)
            self.colours = torch.arange(NUM_COLOURS).repeat(len(self.grey))
        else:
            generator = torch.Generator().manual_seed(seed)
            self.image_index = torch.arange(len(self.grey))
            self.colours = torch.randint(NUM_COLOURS, (len(self.grey),), generator=generator)

    @property
    def targets(self) -> torch.Tensor:
        """(N, 2) integer targets: digit, colour id."""
        return torch.stack([self.digits[self.image_index], self.colours], dim=1)

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, 28, 28) float in [0, 1] and targets (B, 2)."""
        grey = self.grey[self.image_index[indices]].float().div_(255.0)
        colour = COLOURS[self.colours[indices]]
        images = grey.unsqueeze(1) * colour[:, :, None, None]
        return images, torch.stack([self.digits[self.image_index[indices]], self.colours[indices]], 1)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, tuple[int, int]]:
        image, target = self.batch(torch.tensor([index]))
        return image[0], (int(target[0, 0]), int(target[0, 1]))

    def __len__(self) -> int:
        return len(self.image_index)


def _rgb(image):
    """A PIL image in RGB (a module-level function, not a lambda: DataLoader workers pickle it)."""
    return image.convert("RGB")


class CelebA(tv_datasets.CelebA):
    """torchvision's CelebA (aligned faces, 40 binary attributes) at 64×64, read from
    ``<root>/celeba``; never downloaded.

    The folder must hold torchvision's layout: the aligned JPEGs in ``img_align_celeba/`` and the
    text files ``CELEBA_FILES`` (derived from torchvision's ``file_list``), which torchvision
    checks against their md5 sums. ``split`` is torchvision's: "train", "valid", "test" (the
    official partition of ``list_eval_partition.txt``) or "all".

    Preprocessing, the usual 64×64 CelebA recipe: centre crop 148×148 of the 178×218 aligned
    image, resize to 64×64 (bilinear, antialiased), ``ToTensor`` (values in [0, 1]).
    Images are decoded from JPEG on every access, ``batch`` included: nothing is cached (the
    202,599 images would take 2.5 GB as uint8).

    Shape:
        item: image (3, 64, 64) float in [0, 1], attributes (40,) long in {0, 1};
        ``batch``: (B, 3, 64, 64), (B, 40)
    """

    def __init__(self, root: str | os.PathLike | None = None, *, split: str = "train") -> None:
        data_root = resolve_data_root(root)
        folder = data_root / self.base_folder
        _check_celeba_files(folder)
        preprocess = transforms.Compose([
            _rgb, transforms.CenterCrop(CELEBA_CROP), transforms.Resize(CELEBA_IMAGE_SIZE),
            transforms.ToTensor()])
        try:
            super().__init__(str(data_root), split=split, target_type="attr",
                             transform=preprocess, download=False)
        except RuntimeError as error:  # torchvision's "not found or corrupted": the files are
            # all there (checked above), so name those that fail its md5 sums
            corrupt = [name for _, md5, name in self.file_list
                       if name in CELEBA_FILES and not check_integrity(folder / name, md5)]
            if not corrupt:
                raise
            raise DatasetNotFoundError(
                f"CelebA files in {folder} fail torchvision's md5 check: {', '.join(corrupt)}. "
                "Replace them with the original files.") from error
        missing = [name for name in self.filename
                   if not os.path.isfile(folder / CELEBA_IMAGE_FOLDER / name)]
        if missing:
            raise DatasetNotFoundError(
                f"{len(missing)} of the {len(self.filename)} CelebA images of split {split!r} "
                f"are missing from {folder / CELEBA_IMAGE_FOLDER}, e.g. {', '.join(missing[:5])}")

    @property
    def targets(self) -> torch.Tensor:
        """(N, 40) attributes in {0, 1}, in the order of ``attr_names``."""
        return self.attr

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (B, 3, 64, 64) float in [0, 1] and attributes (B, 40), decoding B JPEGs."""
        indices = torch.as_tensor(indices).reshape(-1)
        if len(indices) == 0:
            return torch.empty(0, 3, CELEBA_IMAGE_SIZE, CELEBA_IMAGE_SIZE), self.attr[indices]
        return torch.stack([self[int(i)][0] for i in indices]), self.attr[indices]


def _check_celeba_files(folder: Path) -> None:
    """Raise ``DatasetNotFoundError`` naming every missing CelebA file (we never download it)."""
    missing = [name for name in CELEBA_FILES if not (folder / name).is_file()]
    if not (folder / CELEBA_IMAGE_FOLDER).is_dir():
        missing.append(f"{CELEBA_IMAGE_FOLDER}/ (the extracted aligned JPEGs)")
    if missing:
        raise DatasetNotFoundError(
            f"CelebA not found in {folder}: missing {', '.join(missing)}. CelebA is not "
            f"downloaded automatically (Google Drive, 1.4 GB); get it from "
            f"https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html and put these in that folder, or "
            f"point the data root at a directory that has a 'celeba/' folder with them, either "
            f"with the 'root' argument (--data-root on the command line) or the environment "
            f"variable {DATA_ROOT_ENV}.")


@dataclass(frozen=True)
class DataSplits:
    """Train / validation / test views of one dataset (PROTOCOL.md §2: 55k / 5k / 10k; CelebA:
    its official 162,770 / 19,867 / 19,962)."""

    name: str
    train: Subset
    validation: Subset
    test: Subset
    num_channels: int
    image_size: int = 28

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the target columns: one label, (digit, colour), or CelebA's 40 attributes."""
        if self.name == "celeba":
            # drop the empty name a trailing space in the attribute file's header can leave
            return tuple(name for name in self.test.dataset.attr_names if name)
        return ("digit", "colour") if self.name == "colormnist" else ("class",)


def batch_of(subset: Subset | _IdxDataset | ColorMNIST | CelebA, indices: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectorised fetch from one of our datasets or a ``Subset`` of one."""
    if isinstance(subset, Subset):
        return subset.dataset.batch(torch.as_tensor(subset.indices)[indices])
    return subset.batch(indices)


def load_dataset(name: str, root: str | os.PathLike | None = None, *, num_validation: int = 5000,
                 all_colours: bool = True, seed: int = 0, download: bool = True) -> DataSplits:
    """Load ``name`` ∈ {mnist, fashionmnist, colormnist} with a seeded train/validation split, or
    ``"celeba"`` with its official partition.

    For ColorMNIST the split is by underlying MNIST image, so the same digit drawing never sits in
    both train and validation in different colours. CelebA ignores ``num_validation``, ``seed``,
    ``all_colours`` and ``download`` (it is never downloaded; see :class:`CelebA`).
    """
    names = DATASET_NAMES + EXTRA_DATASET_NAMES
    if name not in names:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(names)}")
    if name == "celeba":
        views = {ours: CelebA(root, split=theirs) for ours, theirs in CELEBA_SPLITS.items()}
        return DataSplits(name=name, num_channels=3, image_size=CELEBA_IMAGE_SIZE,
                          **{ours: Subset(view, torch.arange(len(view)))
                             for ours, view in views.items()})
    if name == "colormnist":
        train = ColorMNIST(root, train=True, all_colours=all_colours, seed=seed, download=download)
        test = ColorMNIST(root, train=False, all_colours=all_colours, seed=seed + 1,
                          download=download)
        num_images = len(train.grey)
    else:
        source = MNIST if name == "mnist" else FashionMNIST
        train = source(root, train=True, download=download)
        test = source(root, train=False, download=download)
        num_images = len(train)
    if not 0 < num_validation < num_images:
        raise ValueError(f"num_validation must be in (0, {num_images}), got {num_validation}")
    permutation = torch.randperm(num_images, generator=torch.Generator().manual_seed(seed))
    is_validation = torch.zeros(num_images, dtype=torch.bool)
    is_validation[permutation[:num_validation]] = True
    image_of_item = train.image_index if name == "colormnist" else torch.arange(num_images)
    item_is_validation = is_validation[image_of_item]
    return DataSplits(
        name=name,
        train=Subset(train, torch.nonzero(~item_is_validation).squeeze(1)),
        validation=Subset(train, torch.nonzero(item_is_validation).squeeze(1)),
        test=Subset(test, torch.arange(len(test))),
        num_channels=3 if name == "colormnist" else 1,
    )
