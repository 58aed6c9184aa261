"""Metric stages (Section 5, PROTOCOL.md §8): robustness tables, the diagnosis of a short-falling
defence, and example rows.

Reconstructions follow the paper: x̃ = decode(z) with z ~ q(z|x) for the reference and the
undefended attack, and z the chain's final state for the defence; every comparison draws its own
z from one seeded stream. MS-SSIM is the paper's variant wherever a number stands beside the
paper's, with the standard one beside it.
"""

from __future__ import annotations

import pyro
import torch

from attacks import (MS_SSIM_VARIANTS, adversarial_accuracy, mean_and_standard_error,
                     ms_ssim)
from inference import log_posterior_ratio
from pyro_vae import PyroVAE, log_joint

from ..context import RunContext
from . import latents
from .defence import sample
from .models import LoadedModel

THIS = __name__
PAPER_VARIANT = "paper"
# Random streams of the robustness metrics (RunContext.generator): the undefended comparisons
# read the same draws whether or not a defence is scored beside them.
PLAIN_STREAM, DEFENDED_STREAM, CEILING_STREAM = 0, 1, 2


def similarity_to_references(vae: PyroVAE, x_ref: torch.Tensor, images: torch.Tensor, *,
                             generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """MS-SSIM of every image against a reconstruction of its reference, in both variants.

    ``images`` hold ``copies`` images per reference, reference-major; each is compared with its
    own reconstruction of the reference: decoded z ~ q(z|x_r) from ``generator``, or the
    decoded encoder mean when ``generator`` is None.

    Shape:
        x_ref: (N, C, H, W); images: (N·copies, C, H, W) → variant → (N, copies)
    """
    copies = len(images) // len(x_ref)
    reference = latents.decode(vae, latents.guide_latents(
        vae, x_ref.repeat_interleave(copies, 0), generator))
    return {variant: ms_ssim(reference, images, variant=variant).view(len(x_ref), copies)
            for variant in MS_SSIM_VARIANTS}


def summary(plain: torch.Tensor, defended: torch.Tensor | None = None) -> dict:
    """Mean and standard error over references (Tables 2–4) and the per-reference means.

    Shape:
        plain, defended: (N, copies) or (N,)
    """
    def per_reference(values):
        return (values.float().mean(1) if values.dim() == 2 else values.float()).cpu().tolist()

    result = {"plain": mean_and_standard_error(plain),
              "per_reference": {"plain": per_reference(plain)}}
    if defended is not None:
        result["defended"] = mean_and_standard_error(defended)
        result["per_reference"]["defended"] = per_reference(defended)
    return result


def decode_chains(vae: PyroVAE, z: torch.Tensor) -> torch.Tensor:
    """Decode chain latents point-major, chain-minor. Shape: (chains, points, D) →
    (points · chains, C, H, W)."""
    return latents.decode(vae, z.transpose(0, 1).flatten(0, 1))


@torch.no_grad()
def attack_similarity(context: RunContext, vae: PyroVAE, x_ref: torch.Tensor,
                      x_adv: torch.Tensor, defended_z: torch.Tensor | None = None, *,
                      mode: str = "sample") -> dict[str, dict]:
    """MS-SSIM[x̃_r, x̃_a] in both variants, without and (given the chains' latents) with the
    defence: the paper's robustness metric for one group of attacked inputs.

    ``mode="sample"`` (the paper): x̃ decoded from z ~ q(z|x), each comparison drawing from its
    own seeded stream (the same draws whichever other groups are scored); ``"mean"``: decoded
    encoder means, and ``defended_z`` should then hold the chains' posterior means.

    Shape:
        x_ref: (N, C, H, W); x_adv: (N·R, C, H, W) reference-major; defended_z: (chains, N·R, D)
        → variant → summary over references (:func:`summary`)
    """
    def stream(number):
        return context.generator(number) if mode == "sample" else None

    plain_stream, defended_stream = stream(PLAIN_STREAM), stream(DEFENDED_STREAM)
    plain = similarity_to_references(
        vae, x_ref, latents.decode(vae, latents.guide_latents(vae, x_adv, plain_stream)),
        generator=plain_stream)
    guarded = None if defended_z is None else similarity_to_references(
        vae, x_ref, decode_chains(vae, defended_z.to(x_ref.device)), generator=defended_stream)
    return {variant: summary(plain[variant], None if guarded is None else guarded[variant])
            for variant in MS_SSIM_VARIANTS}


@torch.no_grad()
def robustness(context: RunContext, model: LoadedModel, x_ref: torch.Tensor, y_ref: torch.Tensor,
               classifiers: dict, attacks: dict, defended: dict | None) -> dict:
    """MS-SSIM (both variants, sampled and mean reconstructions), adversarial accuracy, reference
    MSE and the attack objective reached, without and with the defence.

    The ``*_mean_reconstruction`` entries (beyond the paper) decode the encoder mean instead, and
    for the defence the mean of each chain's kept draws. ``ms_ssim_clean`` is the ceiling of the
    sampled metric: two independent sampled reconstructions of each reference. With
    ``defended`` None (attacks only) every entry holds its plain value alone.
    """
    vae, profile = model.vae, context.profile
    refs, restarts, chains = len(x_ref), profile.restarts, profile.num_chains
    defended_latents = defended and {"sample": defended["final_z"], "mean": defended["mean_z"]}

    def reconstruct(x, generator):
        return latents.decode(vae, latents.guide_latents(vae, x, generator))

    def squared_error(images, copies):  # reference MSE on the 0–255 scale, (refs, copies)
        difference = 255 * (images - x_ref.repeat_interleave(copies, 0))
        return (difference**2).flatten(1).mean(1).view(refs, copies)

    metrics: dict = {"accuracy": {}}
    for mode, suffix in (("sample", ""), ("mean", "_mean_reconstruction")):
        per_variant: dict[str, dict] = {variant: {} for variant in MS_SSIM_VARIANTS}
        for k, radius in enumerate(profile.radii):
            x_adv = attacks["skl"]["adversarial"][k].flatten(0, 1)
            chain_z = defended and defended_latents[mode][f"skl@{radius:g}"]
            for variant, result in attack_similarity(context, vae, x_ref, x_adv, chain_z,
                                                     mode=mode).items():
                per_variant[variant][f"{radius:g}"] = result
        metrics[f"ms_ssim{suffix}"] = per_variant[PAPER_VARIANT]
        metrics[f"ms_ssim_standard{suffix}"] = per_variant["standard"]
        clean_stream = context.generator(PLAIN_STREAM) if mode == "sample" else None
        metrics[f"mse_references{suffix}"] = summary(
            squared_error(reconstruct(x_ref, clean_stream), 1),
            squared_error(decode_chains(vae, defended_latents[mode]["clean"].to(context.device)),
                          chains) if defended else None)
    ceiling_stream = context.generator(CEILING_STREAM)
    clean_copies = reconstruct(x_ref.repeat_interleave(restarts, 0), ceiling_stream)
    clean = similarity_to_references(vae, x_ref, clean_copies, generator=ceiling_stream)
    metrics["ms_ssim_clean"] = mean_and_standard_error(clean[PAPER_VARIANT])
    metrics["ms_ssim_standard_clean"] = mean_and_standard_error(clean["standard"])
    metrics["attack_objective"] = {name: {f"{radius:g}": summary(entry["objective"][k])
                                          for k, radius in enumerate(profile.radii)}
                                   for name, entry in attacks.items()}
    final = defended and {name: z.to(context.device) for name, z in defended["final_z"].items()}
    for column, (task, layer) in enumerate(classifiers.items()):
        clean_prediction = layer(vae.encode(x_ref)[0]).argmax(-1)
        truth = y_ref[:, column]
        per_radius = {"0": summary(
            adversarial_accuracy(clean_prediction.unsqueeze(1), reference_classes=truth),
            adversarial_accuracy(layer(latents.attacked_part(vae, final["clean"])).argmax(-1).T,
                                 reference_classes=truth)
            if defended else None)}
        name = f"classifier_{task}"
        for k, radius in enumerate(profile.radii):
            x_adv = attacks[name]["adversarial"][k].flatten(0, 1)
            plain = layer(vae.encode(x_adv)[0]).argmax(-1).view(refs, restarts)
            # final latents (chains, refs·R, D) → predictions (refs, R·chains)
            guarded = defended and adversarial_accuracy(
                layer(latents.attacked_part(vae, final[f"{name}@{radius:g}"])).argmax(-1).T
                .reshape(refs, restarts * chains),
                reference_classes=clean_prediction)
            per_radius[f"{radius:g}"] = summary(
                adversarial_accuracy(plain, reference_classes=clean_prediction),
                guarded if defended else None)
        metrics["accuracy"][task] = per_radius
    return metrics


@torch.no_grad()
def reference_code_advantage(vae: PyroVAE, x_ref: torch.Tensor, adversarial: torch.Tensor) -> dict:
    """Does the model itself still explain x_a best with the reference's code?

    Per attack, log p(x_a, μ(x_r)) − log p(x_a, μ(x_a)) (eq. 11 with x_a in place of x_r):
    positive means the true posterior of the attacked input prefers the reference's code, as the
    defence assumes (the attack fooled only the encoder); negative means the perturbation also
    moved what the likelihood prefers, so even exact samples of p(z | x_a) need not look like
    the reference. Both codes are encoder means, not posterior modes: a screening figure.

    Shape:
        x_ref: (N, C, H, W); adversarial: (N, R, C, H, W) → mean (SE over references), the
        fraction of attacks with a positive advantage, and the per-reference means
    """
    refs, restarts = adversarial.shape[:2]
    x_adv = adversarial.flatten(0, 1)
    code_ref = latents.guide_latents(vae, x_ref, None).repeat_interleave(restarts, 0)
    with pyro.validation_enabled(False):  # attacked inputs are in [0, 1] by construction
        advantage = log_posterior_ratio(vae.model, (x_adv,), code_ref,
                                        latents.guide_latents(vae, x_adv, None),
                                        latent_site=vae.latent_sites)
    advantage = advantage.view(refs, restarts)
    return {"mean": mean_and_standard_error(advantage),
            "fraction_positive": (advantage > 0).float().mean().item(),
            "per_reference": advantage.mean(1).cpu().tolist()}


def diagnosis(context: RunContext, model: LoadedModel, x_ref: torch.Tensor, attacks: dict,
              defended: dict) -> dict:
    """Why the defence falls short where it does, measured on this model, per radius:

    - the reference-code advantage of every SKL attack (see :func:`reference_code_advantage`);
    - oracle-start chains: the same sampler started at the reference's own code μ(x_r) on the
      first restart of every reference. If they drift to where the normal chains (started at
      z₀ ~ q(z|x_a)) end, in MS-SSIM and in log p(x_a, z), the posterior of the attacked input
      itself has moved and no sampler can do better; if they stay higher, the chains are the
      bottleneck (too few transitions, poor mixing).
    """
    vae = model.vae
    result = {}
    generator = context.generator()
    for k, radius in enumerate(context.profile.radii):
        adversarial = attacks["skl"]["adversarial"][k]
        x_adv = adversarial[:, 0]  # first restart: (N, C, H, W)
        oracle = sample(context, model, x_adv, init=latents.guide_latents(vae, x_ref, None),
                        progress_bar=False).final_z
        guide_start = defended["final_z"][f"skl@{radius:g}"].to(context.device)
        guide_start = guide_start.view(guide_start.shape[0], len(x_ref), -1,
                                       guide_start.shape[-1])[:, :, 0]  # first restart
        entry = {"reference_code_advantage": reference_code_advantage(vae, x_ref, adversarial)}
        with torch.no_grad():
            for name, final_z in (("guide_start", guide_start), ("oracle_start", oracle)):
                chains = final_z.shape[0]
                z = final_z.transpose(0, 1).flatten(0, 1)  # point-major: (N·chains, D)
                similarity = similarity_to_references(vae, x_ref, latents.decode(vae, z),
                                                      generator=generator)
                entry[name] = {
                    "ms_ssim": summary(similarity[PAPER_VARIANT]),
                    "log_joint": summary(log_joint(
                        vae, x_adv.repeat_interleave(chains, 0), latents.split(vae, z)
                    ).view(len(x_ref), chains))}
        result[f"{radius:g}"] = entry
    return result


@torch.no_grad()
def examples(model: LoadedModel, x_ref, attacks, defended, *, radius: float, restarts: int,
             count: int = 8) -> dict:
    """Figure 3 rows at ``radius`` (the first one): x_r, x̃_r, x_a, x̃_a, x̃_a after the defence."""
    vae = model.vae
    pick = torch.linspace(0, len(x_ref) - 1, min(count, len(x_ref))).long().to(x_ref.device)
    x_adv = attacks["skl"]["adversarial"][0][pick, 0]
    z = defended["final_z"][f"skl@{radius:g}"][0].to(x_ref.device)[pick * restarts]
    rows = {"x_r": x_ref[pick], "recon_x_r": vae.reconstruct(x_ref[pick]), "x_a": x_adv,
            "recon_x_a": vae.reconstruct(x_adv), "recon_x_a_defended": latents.decode(vae, z)}
    return {"radius": radius, "rows": {k: v.cpu() for k, v in rows.items()}}
