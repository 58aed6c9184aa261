import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pyro_vae import (COLOURS, DATA_ROOT_ENV, CelebA, ColorMNIST, DatasetNotFoundError, MNIST,
                      batch_of, load_dataset)
from pyro_vae.data import CELEBA_FILES, resolve_data_root

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"  # as conftest.py


def test_mnist_items_are_float_images_in_unit_range(synthetic_root):
    mnist = MNIST(synthetic_root, train=True, download=False)
    image, label = mnist[3]
    assert len(mnist) == 30 and image.shape == (1, 28, 28) and label == 3
    assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    assert torch.equal(image[0], mnist.data[3].float() / 255)


def test_colormnist_copies_grey_into_active_channels(synthetic_root):
    grey = MNIST(synthetic_root, train=False, download=False)
    colour_mnist = ColorMNIST(synthetic_root, train=False, all_colours=True, download=False)
    assert len(colour_mnist) == 7 * len(grey)
    images, targets = colour_mnist.batch(torch.arange(len(colour_mnist)))
    for index in (0, 8, 20, 83):
        source, colour = index // 7, index % 7
        assert targets[index].tolist() == [int(grey.targets[source]), colour]
        for channel in range(3):
            expected = grey[source][0][0] * COLOURS[colour, channel]
            assert torch.equal(images[index, channel], expected)
    # colour 6 is white: all three channels active; colour 0 is blue only
    assert COLOURS[6].tolist() == [1, 1, 1] and COLOURS[0].tolist() == [0, 0, 1]
    assert torch.equal(colour_mnist.targets, targets)


def test_colormnist_one_colour_mode_is_seeded(synthetic_root):
    first = ColorMNIST(synthetic_root, train=True, all_colours=False, seed=3, download=False)
    again = ColorMNIST(synthetic_root, train=True, all_colours=False, seed=3, download=False)
    assert len(first) == 30
    assert torch.equal(first.targets, again.targets)
    assert first.targets[:, 1].unique().numel() > 1


def test_split_keeps_colours_of_one_drawing_together(synthetic_root):
    splits = load_dataset("colormnist", synthetic_root, num_validation=5, download=False)
    train_images = set(splits.train.dataset.image_index[splits.train.indices].tolist())
    val_images = set(splits.validation.dataset.image_index[splits.validation.indices].tolist())
    assert len(val_images) == 5 and not train_images & val_images
    assert len(splits.train) + len(splits.validation) == 7 * 30


def test_missing_files_error_names_directory_files_and_variable(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        MNIST(tmp_path, train=True, download=False)
    message = str(info.value)
    assert str(tmp_path / "mnist") in message
    assert "train-images-idx3-ubyte.gz" in message and DATA_ROOT_ENV in message


def test_unknown_dataset_lists_choices():
    with pytest.raises(ValueError, match="mnist, fashionmnist, colormnist"):
        load_dataset("cifar10")


def test_data_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root() == tmp_path / "env"
    monkeypatch.delenv(DATA_ROOT_ENV)
    # the documented cache directory, spelled out: a default that ended in any other ".../data"
    # (the working directory's, the package's) passed the old `.name == "data"` check
    assert resolve_data_root() == Path.home() / ".cache" / "pyro_vae" / "data"
    assert resolve_data_root("~/idx") == Path.home() / "idx"  # "~" is expanded


def test_real_mnist_has_protocol_sizes(mnist_root):
    splits = load_dataset("mnist", mnist_root, download=False)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (55000, 5000, 10000)


def test_splits_of_the_28_pixel_datasets_say_so(synthetic_root):
    splits = load_dataset("mnist", synthetic_root, num_validation=5, download=False)
    assert splits.image_size == 28 and splits.num_channels == 1 and splits.class_names == ("class",)


# CelebA. The fake below has torchvision's layout and file formats; its partition interleaves the
# splits (two files at least each: torchvision's CelebA cannot index a split of one), and image i
# is red outside the 148×148 centre crop and blue (20 + 35 i) inside it, so each 64×64 item tells
# which file it came from and that the crop was centred.
CELEBA_PARTITION = (0, 2, 0, 1, 0, 2, 1)  # 0 train, 1 valid, 2 test
CELEBA_ATTRIBUTES = [f"Attribute_{k}" for k in range(40)]


@pytest.fixture
def fake_celeba(tmp_path: Path) -> Path:
    folder = tmp_path / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(CELEBA_PARTITION))]
    signs = np.random.default_rng(0).choice([-1, 1], size=(len(names), 40))
    for i, name in enumerate(names):
        pixels = np.zeros((218, 178, 3), dtype=np.uint8)  # aligned CelebA: 178 wide, 218 high
        pixels[...] = (255, 0, 0)
        pixels[35:183, 15:163] = (0, 0, 20 + 35 * i)  # the centred 148×148 square
        Image.fromarray(pixels).save(folder / "img_align_celeba" / name, quality=95)

    def table(rows, header=None):  # CelebA's text format: count, header, space-aligned rows
        lines = [] if header is None else [str(len(rows)), header]
        return "\n".join(lines + ["  ".join(map(str, row)) for row in rows]) + "\n"

    files = {
        "list_eval_partition.txt": table(zip(names, CELEBA_PARTITION)),
        "identity_CelebA.txt": table((name, 100 + i) for i, name in enumerate(names)),
        # the real header ends with a space
        "list_attr_celeba.txt": table([(name, *row) for name, row in zip(names, signs)],
                                      " ".join(CELEBA_ATTRIBUTES) + " "),
        "list_bbox_celeba.txt": table([(name, 95, 71, 226, 313) for name in names],
                                      "image_id x_1 y_1 width height"),
        "list_landmarks_align_celeba.txt": table(
            [(name, 69, 109, 106, 113, 77, 142, 73, 152, 108, 154) for name in names],
            "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y "
            "rightmouth_x rightmouth_y"),
    }
    assert set(files) == set(CELEBA_FILES)
    for name, text in files.items():
        (folder / name).write_text(text)
    torch.save(torch.as_tensor((signs + 1) // 2), tmp_path / "attributes.pt")
    return tmp_path


@pytest.fixture
def without_md5(monkeypatch):
    """The fake's text files cannot have the md5 sums torchvision knows for the real ones, so
    only that check is switched off (our own check that every file exists still runs)."""
    monkeypatch.setattr(CelebA, "_check_integrity", lambda self: True)


def file_index(image: torch.Tensor) -> int:
    """Which fake image a (3, 64, 64) item is, from its blue level (JPEG moves it a little)."""
    assert image[0].mean() < 0.05  # no red: the border was cropped away
    return round((image[2].mean().item() * 255 - 20) / 35)


def test_fake_celeba_items_are_64_pixel_crops_with_attributes(fake_celeba, without_md5):
    attributes = torch.load(fake_celeba / "attributes.pt")
    celeba = CelebA(fake_celeba, split="all")
    assert len(celeba) == len(CELEBA_PARTITION)
    for index in range(len(celeba)):
        image, target = celeba[index]
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 1
        assert file_index(image) == index
        assert target.shape == (40,) and target.dtype == torch.long
        assert torch.equal(target, attributes[index])


def test_fake_celeba_splits_follow_the_partition_file(fake_celeba, without_md5):
    attributes = torch.load(fake_celeba / "attributes.pt")
    splits = load_dataset("celeba", fake_celeba)
    assert (splits.num_channels, splits.image_size) == (3, 64)
    assert splits.class_names == tuple(CELEBA_ATTRIBUTES)
    for subset, code in ((splits.train, 0), (splits.validation, 1), (splits.test, 2)):
        files = [i for i, part in enumerate(CELEBA_PARTITION) if part == code]
        images, targets = batch_of(subset, torch.arange(len(subset)))
        assert images.shape == (len(files), 3, 64, 64) and targets.shape == (len(files), 40)
        assert [file_index(image) for image in images] == files
        assert torch.equal(targets, attributes[files])
        assert torch.equal(subset.dataset.targets, attributes[files])
    images, targets = splits.train.dataset.batch(torch.tensor([2, 0]))
    assert torch.equal(images[1], splits.train[0][0]) and torch.equal(targets[0], attributes[4])
    assert splits.train.dataset.batch(torch.tensor([], dtype=torch.long))[0].shape == (0, 3, 64, 64)


def test_celeba_missing_files_error_names_folder_every_file_and_variable(tmp_path):
    assert set(CELEBA_FILES) == {"list_attr_celeba.txt", "list_eval_partition.txt",
                                 "identity_CelebA.txt", "list_bbox_celeba.txt",
                                 "list_landmarks_align_celeba.txt"}
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("celeba", tmp_path)
    message = str(info.value)
    assert str(tmp_path / "celeba") in message and DATA_ROOT_ENV in message
    assert all(name in message for name in CELEBA_FILES) and "img_align_celeba/" in message
    (tmp_path / "celeba").mkdir()
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("000001.jpg 0\n")
    with pytest.raises(DatasetNotFoundError) as info:
        CelebA(tmp_path)
    message = str(info.value)
    assert "list_eval_partition.txt" not in message and "list_attr_celeba.txt" in message


def test_celeba_md5_failures_and_missing_images_are_named(fake_celeba, monkeypatch):
    with pytest.raises(DatasetNotFoundError, match="md5") as info:
        CelebA(fake_celeba)  # torchvision's integrity check on: the fake's sums are not CelebA's
    assert all(name in str(info.value) for name in CELEBA_FILES)
    monkeypatch.setattr(CelebA, "_check_integrity", lambda self: True)
    (fake_celeba / "celeba" / "img_align_celeba" / "000003.jpg").unlink()
    with pytest.raises(DatasetNotFoundError, match="1 of the 3 CelebA images .* 000003.jpg"):
        CelebA(fake_celeba, split="train")


@pytest.mark.slow
def test_real_celeba_has_the_official_splits():
    root = Path(os.environ.get(DATA_ROOT_ENV) or SHARED_DATA)
    try:
        splits = load_dataset("celeba", root)
    except DatasetNotFoundError:
        pytest.skip(f"CelebA not found: expected torchvision's CelebA folder {root / 'celeba'} "
                    f"(set {DATA_ROOT_ENV} to a root that has one)")
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (162770, 19867, 19962)
    images, targets = batch_of(splits.test, torch.arange(4))
    assert images.shape == (4, 3, 64, 64) and 0 <= images.min() and images.max() <= 1
    assert targets.shape == (4, 40) and len(splits.class_names) == 40
