"""VAEs as Pyro model/guide pairs: datasets, models, SVI training, checkpoints, evaluation."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .data import (COLOURS, DATA_ROOT_ENV, DATASET_NAMES, EXTRA_DATASET_NAMES, CelebA, ColorMNIST,
                   DatasetNotFoundError, FashionMNIST, MNIST, batch_of, load_dataset,
                   resolve_data_root)
from .evaluate import Evaluation, entropy_floor, evaluate_vae, log_joint
from .hvae import HierarchicalVAE, HVAEConfig
from .interface import MODEL_CLASSES, MODEL_KINDS, PyroVAE, config_for
from .losses import TotalCorrelationELBO, make_elbo, total_correlation_mws
from .train import TrainConfig, TrainHistory, minibatches, train_vae
from .vae import DATA_PLATE, LATENT_SITE, OBSERVED_SITE, ConvVAE, VAEConfig, check_images
from .zoo import PretrainedNotFound, pretrained, zoo_index

__all__ = [
    "COLOURS", "DATA_PLATE", "DATA_ROOT_ENV", "DATASET_NAMES", "EXTRA_DATASET_NAMES", "LATENT_SITE",
    "OBSERVED_SITE", "CelebA", "CheckpointError", "ColorMNIST", "ConvVAE", "DatasetNotFoundError",
    "Evaluation",
    "FashionMNIST", "HVAEConfig", "HierarchicalVAE", "MNIST", "MODEL_CLASSES", "MODEL_KINDS",
    "PyroVAE", "PretrainedNotFound", "TotalCorrelationELBO", "TrainConfig", "TrainHistory", "VAEConfig",
    "batch_of", "check_images", "config_for", "entropy_floor", "evaluate_vae", "load_checkpoint", "load_dataset", "log_joint",
    "make_elbo", "minibatches", "pretrained", "resolve_data_root", "save_checkpoint", "total_correlation_mws",
    "train_vae", "zoo_index",
]
