"""Attack stages: the stratified references (Table 8) and the PGD attacks on them (§6): the
unsupervised SKL attack through the guide and the classifier attack per task."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from attacks import (ClassifierCrossEntropy, EncoderDivergence, PGDConfig, encoder_from_guide,
                     pgd_attack, stratified_references)
from pyro_vae import batch_of

from ..context import RunContext
from .models import LoadedModel, labels_of

THIS = __name__


def references(context: RunContext) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stratified test references: indices (N,), images (N, C, H, W), labels (N, tasks)."""
    test = context.splits.test
    test_labels = labels_of(test.dataset.targets[test.indices])

    def choose():
        generator = torch.Generator().manual_seed(context.settings.seed)
        return {"indices": stratified_references(test_labels, total=context.profile.references,
                                                 generator=generator)}

    indices = context.run_dir.stage("references.pt", choose,
                                    code=("attacks.references", THIS))["indices"]
    x, targets = batch_of(test, indices)
    return indices, x.to(context.device), labels_of(targets).to(context.device)


def run_attacks(context: RunContext, model: LoadedModel, x_ref: torch.Tensor,
                classifiers: dict) -> dict[str, dict[str, torch.Tensor]]:
    """Every attack at every radius of the profile.

    Returns name → {"adversarial": (K radii, N refs, R restarts, C, H, W), "objective": (K, N, R),
    the objective each attack reached (for ``skl`` the symmetric KL it achieved)}.
    """
    encode = encoder_from_guide(model.vae.guide)
    objectives = {"skl": EncoderDivergence(encode)}
    objectives |= {f"classifier_{task}": ClassifierCrossEntropy(encode, layer)
                   for task, layer in classifiers.items()}
    config = PGDConfig(num_steps=context.profile.attack_steps, restarts=context.profile.restarts)

    def attack():
        results = {}
        for name, objective in tqdm(objectives.items(), desc=f"attack {model.tag}",
                                    disable=not context.settings.progress):
            result = pgd_attack(objective, x_ref, radii=context.profile.radii, config=config,
                                generator=context.generator())
            results[name] = {"adversarial": result.adversarial.cpu(),
                             "objective": result.objective.cpu()}
        return results

    saved = context.timed("attacks", lambda: context.run_dir.stage(
        f"attacks/{model.tag}.pt", attack, code=("attacks", THIS),
        after=("references.pt", f"classifiers/{model.tag}.pt"), identity=model.identity))
    return {name: {k: v.to(context.device) for k, v in entry.items()}
            for name, entry in saved.items()}
