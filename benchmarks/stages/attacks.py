"""Attack stages: the stratified references (Table 8) and the PGD attacks on them (§6): the
unsupervised SKL attack through the guide and the classifier attack per task."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from attacks import (ClassifierCrossEntropy, EncoderDivergence, PGDConfig, pgd_attack,
                     stratified_references)
from pyro_vae import batch_of

from ..context import RunContext
from . import latents
from .models import LoadedModel, labels_of

THIS = __name__


def reference_stage(context: RunContext, total: int | None = None) -> str:
    """The stage file of ``total`` stratified references (default: the profile's count)."""
    total = context.profile.references if total is None else total
    return "references.pt" if total == context.profile.references else f"references_{total}.pt"


def references(context: RunContext, total: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``total`` (default: the profile's) stratified test references: indices (N,), images
    (N, C, H, W), labels (N, tasks)."""
    test = context.splits.test
    test_labels = labels_of(test.dataset.targets[test.indices])
    total = context.profile.references if total is None else total

    def choose():
        generator = torch.Generator().manual_seed(context.settings.seed)
        return {"indices": stratified_references(test_labels, total=total, generator=generator)}

    indices = context.run_dir.stage(reference_stage(context, total), choose,
                                    code=("attacks.references", THIS))["indices"]
    x, targets = batch_of(test, indices)
    return indices, x.to(context.device), labels_of(targets).to(context.device)


def table_objectives(model: LoadedModel, classifiers: dict) -> dict:
    """The tables' attacks: the unsupervised SKL attack through the guide (``skl``) and the
    classifier attack per task (``classifier_<task>``)."""
    encode = latents.guide_encoder(model.vae)
    objectives = {"skl": EncoderDivergence(encode)}
    objectives |= {f"classifier_{task}": ClassifierCrossEntropy(encode, layer)
                   for task, layer in classifiers.items()}
    return objectives


def run_attacks(context: RunContext, model: LoadedModel, x_ref: torch.Tensor,
                objectives: dict, *, stage: str | None = None, radii=None,
                after: tuple[str, ...] = (), pgd_options: dict[str, dict] | None = None
                ) -> dict[str, dict[str, torch.Tensor]]:
    """Every objective at every radius (default: the profile's), cached as the stage
    ``attacks/<stage or model tag>.pt``; ``after`` names the stages the objectives depend on
    (e.g. the classifiers); ``pgd_options`` replaces, for the objectives it names, fields of
    the profile's PGD settings (e.g. ``{"latent_target": {"learning_rate": 0.1}}``).

    Returns name → {"adversarial": (K radii, N refs, R restarts, C, H, W), "objective": (K, N, R),
    the objective each attack reached (for ``skl`` the symmetric KL it achieved)}.
    """
    radii = tuple(context.profile.radii if radii is None else radii)
    pgd_options = pgd_options or {}
    unknown = set(pgd_options) - set(objectives)
    if unknown:
        raise ValueError(f"PGD options for unknown objectives {sorted(unknown)}")

    def attack():
        results = {}
        for name, objective in tqdm(objectives.items(), desc=f"attack {model.tag}",
                                    disable=not context.settings.progress):
            config = PGDConfig(**{"num_steps": context.profile.attack_steps,
                                  "restarts": context.profile.restarts,
                                  **pgd_options.get(name, {})})
            result = pgd_attack(objective, x_ref, radii=radii, config=config,
                                generator=context.generator())
            results[name] = {"adversarial": result.adversarial.cpu(),
                             "objective": result.objective.cpu()}
        return results

    name = f"attacks/{stage or model.tag}.pt"
    saved = context.timed("attacks", lambda: context.run_dir.stage(
        name, attack, code=("attacks", THIS), after=(reference_stage(context), *after),
        identity=f"{model.identity} radii={radii} objectives={sorted(objectives)} "
                 f"pgd_options={sorted((k, sorted(v.items())) for k, v in pgd_options.items())}"))
    return {name: {k: v.to(context.device) for k, v in entry.items()}
            for name, entry in saved.items()}
