"""Adversarial attacks on VAE encoders and the metrics that measure them (PROTOCOL.md §5, §6, §8).

Split as in Foolbox: threat model (:mod:`.threat`), objectives (:mod:`.divergences`,
:mod:`.objectives`) and the single PGD loop (:mod:`.pgd`). The package sees the model only
through callables: ``encode(x) -> (loc, scale)`` (e.g. :func:`encoder_from_guide`), and where
needed ``decode(z)`` and a latent classifier ``logits(z)``; it never imports the VAE.
"""

from .adaptive import (DefenceChain, DefendedLatentDistance, LogLikelihood, PosteriorShift,
                       ScoreFunctionDistance)
from .classifiers import ClassifierConfig, classifier_accuracy, train_latent_classifier
from .divergences import (Divergence, Gaussian, forward_kl, gaussian_kl, reverse_kl,
                          squared_mean_distance, symmetric_kl)
from .encoders import Classifier, Decoder, Encoder, encoder_from_guide
from .metrics import MS_SSIM_VARIANTS, MS_SSIM_WEIGHTS, adversarial_accuracy, mean_and_standard_error, ms_ssim
from .objectives import (BoundObjective, ClassifierCrossEntropy, EncoderDivergence,
                         LatentTarget, MaximumDamage, Objective, OutputTarget)
from .pgd import AttackResult, PGDConfig, draw_start_noise, pgd_attack
from .references import stratified_references
from .threat import check_images, check_radius, project

__all__ = [
    "AttackResult", "BoundObjective", "Classifier", "ClassifierConfig", "ClassifierCrossEntropy",
    "Decoder", "DefenceChain", "DefendedLatentDistance", "Divergence", "Encoder",
    "EncoderDivergence", "Gaussian", "LatentTarget", "LogLikelihood", "MS_SSIM_VARIANTS",
    "MS_SSIM_WEIGHTS", "MaximumDamage", "Objective", "OutputTarget", "PGDConfig", "PosteriorShift",
    "ScoreFunctionDistance", "adversarial_accuracy", "check_images", "check_radius",
    "classifier_accuracy", "draw_start_noise", "encoder_from_guide", "forward_kl", "gaussian_kl",
    "mean_and_standard_error", "ms_ssim", "pgd_attack", "project", "reverse_kl",
    "squared_mean_distance", "stratified_references", "symmetric_kl", "train_latent_classifier",
]
