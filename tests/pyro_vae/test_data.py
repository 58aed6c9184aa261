import pytest
import torch

from pyro_vae import COLOURS, DATA_ROOT_ENV, ColorMNIST, DatasetNotFoundError, MNIST, load_dataset
from pyro_vae.data import resolve_data_root


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
    assert resolve_data_root().name == "data"


def test_real_mnist_has_protocol_sizes(mnist_root):
    splits = load_dataset("mnist", mnist_root, download=False)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (55000, 5000, 10000)
