"""Model stages: the VAE itself (from the pretrained zoo, or trained by SVI in the run directory),
its test quality (Table 7), the FD-CNN feature network, and the latent classifiers (§5)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import torch

from attacks import classifier_accuracy, train_latent_classifier
from pyro_vae import (MODEL_KINDS, CheckpointError, entropy_floor, PretrainedNotFound, PyroVAE, TrainConfig,
                      batch_of, config_for, evaluate_vae, load_checkpoint, train_vae)
from pyro_vae.checkpoint import checkpoint_payload, model_from_payload
from pyro_vae.train import CLAMP_PROBE_POINTS, clamp_shares
from pyro_vae.zoo import pretrained, sha256_of

from ..context import RunContext
from ..frechet import FeatureCNN, feature_accuracy, prior_sample_fd, train_feature_cnn

THIS = __name__


def model_tag(kind: str, beta: float) -> str:
    return f"{kind}_beta{beta:g}"


def frozen(vae: PyroVAE) -> PyroVAE:
    """``vae`` for attacks and the defence: no parameter gradients, convolution weights stored
    channels-last (NHWC). oneDNN's convolutions then skip a layout conversion per layer: on this
    CPU the decoder's latent gradient (every MCMC step) runs 1.2-1.4x and the encoder's input
    gradient (every attack step) about 1.3x faster, the same values up to float rounding
    (``python -m benchmarks.sampler_speed --sections layout``). Only for frozen models:
    Pyro's parameter store keeps a contiguous copy of each parameter, so a channels-last model
    trained with SVI would not see its updates (``train_vae`` converts back)."""
    return vae.requires_grad_(False).to(memory_format=torch.channels_last)


@dataclass(frozen=True)
class LoadedModel:
    """A frozen VAE ready for attacks and the defence.

    ``identity`` names exactly these weights (the zoo file's sha256, or the fingerprint of the
    training stage) so that every downstream stage is recomputed when the model changes.
    ``training`` holds the training record; ``provenance`` the zoo entry (None when trained here).
    """

    vae: PyroVAE
    tag: str
    identity: str
    training: dict
    provenance: dict | None


def labels_of(targets: torch.Tensor) -> torch.Tensor:
    """Targets as (N, tasks): ColorMNIST already is (digit, colour); others get one column."""
    return targets if targets.dim() == 2 else targets.unsqueeze(1)


def load_model(context: RunContext, kind: str, beta: float) -> LoadedModel:
    """The ``--checkpoint`` model, or the zoo's model when the settings allow it and the zoo
    has one, else the run's own."""
    settings = context.settings
    tag = model_tag(kind, beta)
    if settings.model_source == "checkpoint":
        return load_checkpoint_or_zoo(settings.dataset, settings.checkpoint,
                                      decoder_output=settings.decoder_output,
                                      device=context.device)
    if settings.model_source == "zoo":
        try:
            vae, provenance = pretrained(settings.dataset, kind, beta,
                                         decoder_output=settings.decoder_output,
                                         map_location=context.device, with_provenance=True)
        except PretrainedNotFound as missing:
            print(f"  {tag}: {missing}; training it here with the profile's "
                  f"{context.profile.epochs} epochs instead")
        else:
            training = {"source": "zoo", "train_seconds": provenance["train_seconds"],
                        "epochs": provenance["epochs"],
                        "validation_loss": [provenance["final_validation_loss"]]}
            return LoadedModel(frozen(vae), tag, f"zoo:{provenance['sha256']}",
                               training, provenance)
    return _trained_here(context, kind, beta, tag)


def load_checkpoint_or_zoo(dataset: str, checkpoint, *, decoder_output: str,
                           device) -> LoadedModel:
    """For the one-model commands: the model saved at ``checkpoint``, or (None) the zoo's
    ``dataset`` VAE with ``decoder_output``; exits with a clear message when it is missing."""
    try:
        if checkpoint is not None:
            vae, training = load_checkpoint(checkpoint, map_location=device, with_metadata=True)
            identity, provenance = f"file:{sha256_of(checkpoint)}", None
        else:
            vae, provenance = pretrained(dataset, decoder_output=decoder_output,
                                         map_location=device, with_provenance=True)
            identity, training = f"zoo:{provenance['sha256']}", {"source": "zoo"}
    except (CheckpointError, PretrainedNotFound) as error:
        raise SystemExit(f"error: {error}") from None
    tag = model_tag(vae.config.kind, vae.config.beta)
    return LoadedModel(frozen(vae), tag, identity, training, provenance)


def _trained_here(context: RunContext, kind: str, beta: float, tag: str) -> LoadedModel:
    config = config_for(kind, beta=beta, num_channels=context.splits.num_channels,
                        decoder_output=context.settings.decoder_output)
    name = f"models/{tag}.pt"

    def train():
        vae = MODEL_KINDS[kind](config)
        train_config = TrainConfig(epochs=context.profile.epochs, seed=context.settings.training_seed,
                                   max_train_points=context.profile.max_train_points)
        started = time.perf_counter()
        history = train_vae(vae, context.splits, train_config, device=context.device,
                            progress=context.settings.progress,
                            validation_points=context.profile.eval_points,
                            state_path=context.run_dir.path(f"models/{tag}.state.pt"))
        metadata = {"source": "trained in this run",
                    "train_seconds": time.perf_counter() - started, **history.record()}
        return checkpoint_payload(vae, metadata=metadata)

    payload = context.timed("training", lambda: context.run_dir.stage(
        name, train, code=("pyro_vae",), identity=str(config.to_dict())))
    # The finished checkpoint supersedes the per-epoch training state.
    context.run_dir.path(f"models/{tag}.state.pt").unlink(missing_ok=True)
    vae, metadata = model_from_payload(payload, source=name, map_location=context.device)
    identity = f"run:{context.run_dir.fingerprint(name)}"
    return LoadedModel(frozen(vae), tag, identity, metadata, None)


def feature_network(context: RunContext) -> tuple[FeatureCNN, float]:
    """The CNN behind FD-CNN (our FID substitute), and its test accuracy."""
    def fit():
        network = train_feature_cnn(context.splits, epochs=context.profile.feature_epochs,
                                    device=context.device, seed=context.settings.seed,
                                    max_points=context.profile.max_train_points)
        accuracy = feature_accuracy(network, context.splits.test, points=2000,
                                    device=context.device)
        return {"state_dict": network.state_dict(), "test_accuracy": accuracy}

    saved = context.timed("feature network", lambda: context.run_dir.stage(
        "feature_cnn.pt", fit, code=("benchmarks.frechet",)))
    network = FeatureCNN(context.splits.num_channels).to(context.device)
    network.load_state_dict(saved["state_dict"])
    return network.eval().requires_grad_(False), saved["test_accuracy"]


def recorded_quality(provenance: dict | None, *, num_importance_samples: int, num_points: int,
                     seed: int, all_colours: bool) -> dict | None:
    """The ELBO / NLL / MSE a zoo entry's provenance records, as ``evaluate_vae`` reports them,
    when they were measured as the run would measure them (else None): the same k on the same
    first ``num_points`` test images, with the same seed (which also draws ColorMNIST's colours)
    and, for ColorMNIST, the same colour scheme. The run then reuses them instead of
    recomputing the NLL."""
    if not provenance:
        return None
    match = re.fullmatch(r"first (\d+) of the test set", str(provenance.get("nll_points", "")))
    needed = ("test_nll", "test_nll_standard_error", "test_elbo", "test_mse")
    if (match is None or int(match[1]) != num_points
            or provenance.get("nll_importance_samples") != num_importance_samples
            or provenance.get("seed") != seed
            or provenance.get("all_colours") not in (None, all_colours)
            or any(provenance.get(key) is None for key in needed)):
        return None
    return {"elbo": provenance["test_elbo"], "nll": provenance["test_nll"],
            "nll_standard_error": provenance["test_nll_standard_error"],
            "mse": provenance["test_mse"], "num_points": num_points,
            "num_importance_samples": num_importance_samples,
            "source": f"the zoo entry's recorded figures ({provenance['file']}, k = "
                      f"{num_importance_samples}, first {num_points} test images, seed {seed}), "
                      "not recomputed"}


def quality(context: RunContext, model: LoadedModel, network: FeatureCNN) -> dict:
    """ELBO, NLL (the profile's k and points), MSE and FD-CNN on the test split.

    A zoo model whose provenance records the ELBO / NLL / MSE for the profile's k and points
    reuses them (``source`` says so); the FD-CNN is always measured here.
    """
    test, profile = context.splits.test, context.profile
    points = len(test) if profile.eval_points is None else min(profile.eval_points, len(test))
    recorded = recorded_quality(model.provenance, num_importance_samples=profile.nll_samples,
                                num_points=points, seed=context.settings.seed,
                                all_colours=profile.all_colours)
    if recorded is not None:
        print(f"  {model.tag}: test ELBO / NLL / MSE reused from {recorded['source']}")

    def evaluate():
        evaluation = recorded or {
            **evaluate_vae(model.vae, test, device=context.device,
                           num_importance_samples=profile.nll_samples, max_points=points,
                           progress=context.settings.progress, seed=context.settings.seed
                           ).to_dict(),
            "source": "computed in this run"}
        fd = prior_sample_fd(network, model.vae, test, points=profile.fid_points,
                             device=context.device, seed=context.settings.seed)
        floor, floor_se = entropy_floor(test, max_points=points)  # on the NLL's own images
        # where the likelihood's clamp leaves pixels without gradient (the identity output's
        # failure), on the first of the same images, as training records it per epoch
        images, _ = batch_of(test, torch.arange(min(points, CLAMP_PROBE_POINTS)))
        clamped, stuck = clamp_shares(model.vae, images.to(context.device)) or (None, None)
        return {**evaluation, "fd_cnn": fd, "entropy_floor": floor,
                "entropy_floor_standard_error": floor_se, "clamped_share": clamped,
                "stuck_share": stuck, "clamp_points": len(images)}

    return context.timed("evaluation", lambda: context.run_dir.stage(
        f"quality/{model.tag}.json", evaluate,
        code=("pyro_vae.evaluate", "pyro_vae.train", "benchmarks.frechet"),
        after=("feature_cnn.pt",), identity=model.identity))


@torch.no_grad()
def encoder_means(vae: PyroVAE, subset, device, limit: int | None = None) -> tuple:
    """μ(x) and labels (N, tasks) of (the first ``limit`` points of) a split."""
    size = len(subset) if limit is None else min(limit, len(subset))
    means, labels = [], []
    for start in range(0, size, 2048):
        x, targets = batch_of(subset, torch.arange(start, min(start + 2048, size)))
        means.append(vae.encode(x.to(device))[0])
        labels.append(labels_of(targets).to(device))
    return torch.cat(means), torch.cat(labels)


def classifiers(context: RunContext, model: LoadedModel) -> tuple[dict[str, torch.nn.Linear], dict]:
    """Latent classifiers per task (PROTOCOL.md §5) and their clean test accuracy."""
    vae, device = model.vae, context.device

    def fit():
        splits = context.splits
        train_codes, train_labels = encoder_means(vae, splits.train, device,
                                                  context.profile.max_train_points)
        val_codes, val_labels = encoder_means(vae, splits.validation, device)
        test_codes, test_labels = encoder_means(vae, splits.test, device)
        fitted = {}
        for column, task in enumerate(context.settings.tasks):
            layer = train_latent_classifier(
                train_codes=train_codes, train_labels=train_labels[:, column],
                val_codes=val_codes, val_labels=val_labels[:, column],
                generator=context.generator())
            fitted[task] = {"weight": layer.weight.cpu(), "bias": layer.bias.cpu(),
                            "test_accuracy": classifier_accuracy(
                                layer, codes=test_codes, labels=test_labels[:, column])}
        return fitted

    saved = context.timed("classifiers", lambda: context.run_dir.stage(
        f"classifiers/{model.tag}.pt", fit, code=("attacks.classifiers", THIS),
        identity=model.identity))
    layers = {}
    for task, state in saved.items():
        layer = torch.nn.Linear(*reversed(state["weight"].shape)).to(device)
        layer.load_state_dict({"weight": state["weight"], "bias": state["bias"]})
        layers[task] = layer.requires_grad_(False).eval()
    return layers, {task: saved[task]["test_accuracy"] for task in saved}
