"""The set-up shared by the one-model benchmarks (``gradient_budget``, ``mass_matrix``): the zoo's
(or a checkpoint's) model, the stratified references and their SKL attack at one radius."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .artifacts import ConfigurationMismatch, RunDirectory
from .context import RunContext, Settings
from .profiles import Profile
from .run import resolve_device
from .stages import attacks as attack_stages
from .stages import models


@dataclass
class SklSetting:
    """What a one-model benchmark works on. Shape: x_ref, x_adv (N, C, H, W), x_adv the first
    restart of each reference's SKL attack at the profile's one radius."""

    run_dir: RunDirectory
    context: RunContext
    model: models.LoadedModel
    x_ref: torch.Tensor
    x_adv: torch.Tensor


def skl_setting(arguments, profile: Profile, default_out: Path) -> SklSetting:
    """Pin the run folder's configuration (a clear error for a folder of another run), load the
    model, pick the references and attack them (every step a cached stage)."""
    device = resolve_device(arguments.device)
    run_dir = RunDirectory(arguments.out or default_out)
    settings = Settings(dataset=arguments.dataset, profile=profile, sampler="hmc", device=device,
                        seed=arguments.seed, data_root=arguments.data_root,
                        progress=not arguments.no_progress, decoder_output=arguments.decoder_output)
    try:
        run_dir.pin_configuration({"dataset": arguments.dataset, "seed": arguments.seed,
                                   "model": str(arguments.checkpoint or arguments.decoder_output),
                                   "profile": profile.to_dict()})
        context = RunContext(settings, run_dir)
    except ConfigurationMismatch as error:
        raise SystemExit(f"error: {error}") from None
    model = models.load_checkpoint_or_zoo(arguments.dataset, arguments.checkpoint,
                                          decoder_output=arguments.decoder_output, device=device)
    _, x_ref, _ = attack_stages.references(context)
    attacks = attack_stages.run_attacks(context, model, x_ref,
                                        attack_stages.table_objectives(model, {}))
    x_adv = attacks["skl"]["adversarial"][0][:, 0]
    return SklSetting(run_dir, context, model, x_ref, x_adv)
