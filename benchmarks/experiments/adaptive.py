"""The ``adaptive`` experiment: does the defence survive an attacker who knows it? (paper
Section 4.4, Appendix C.3, eq. 64–66, Figures 10–11; Athalye et al. 2018; Tramèr et al. 2020).

Every attack maximises, within the L∞ ball of each radius, a defence-aware objective through
:mod:`attacks.adaptive`: the squared distance ‖z̃_a − z̃_r‖² between the defended latents (eq.
64–66) with the gradient through the K-step unrolled chain (``unrolled``), through the identity in
place of the chain (``bpda``), or as the authors' detached chain let it through (``detached``);
each of the first two also averaged over ``eot_draws`` runs of the chain's randomness (EOT); the
posterior itself moved towards another reference's code (``posterior_shift``); the score-function
gradient of E_{p(z|x_a)}‖z − z̃_r‖² (``score_function``). Baselines: the paper's SKL attack with
the paper's PGD (``skl_paper``) and with the sign steps the adaptive attacks use (``skl``).

The attacked chain is the defence's own HMC (same L, jitter, starting mass matrix and the
defence's adapted step size, measured on the SKL-attacked inputs), truncated to K transitions; every attacked input is
then defended by the run's full sampler (T transitions, all chains). The defence's robustness is
the worst case: per reference the lowest defended MS-SSIM over all attacks, averaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from attacks import (DefendedLatentDistance, EncoderDivergence, PosteriorShift,
                     ScoreFunctionDistance, mean_and_standard_error)
from inference import UnrolledHMC
from inference.mass import uses_encoder

from .. import figures
from ..context import RunContext
from ..stages import attacks as attack_stages
from ..stages import latents, models
from .base import Experiment
from .common import attack_defend_score

BASELINES = ("skl_paper", "skl")
CHAIN_ATTACKS = ("detached", "bpda", "bpda_eot", "unrolled", "unrolled_eot", "posterior_shift",
                 "score_function")
LABELS = {"skl_paper": "SKL, paper's PGD", "skl": "SKL", "detached": "detached (authors')",
          "bpda": "BPDA", "bpda_eot": "BPDA + EOT", "unrolled": "unrolled chain",
          "unrolled_eot": "unrolled chain + EOT", "posterior_shift": "posterior shift",
          "score_function": "score function"}


@dataclass(frozen=True)
class Knobs:
    references: int  # stratified references (a subset: the unrolled chain is expensive)
    radii: tuple[float, ...]
    attack_steps: int  # PGD steps of every attack but skl_paper (which keeps the profile's)
    unrolled_transitions: int  # K: transitions of the chain the attacks differentiate
    eot_draws: int  # chains averaged per PGD step by the EOT attacks and the score function
    attacks: tuple[str, ...] = BASELINES + CHAIN_ATTACKS

    def __post_init__(self) -> None:
        unknown = set(self.attacks) - set(LABELS)
        if unknown:
            raise ValueError(f"unknown adaptive attacks {sorted(unknown)}; known: {list(LABELS)}")


def chain_objectives(vae, chain: UnrolledHMC, x_ref: torch.Tensor, knobs: Knobs) -> dict:
    """The defence-aware objectives of ``knobs.attacks`` on the differentiable chain."""
    encode = latents.guide_encoder(vae)
    builders = {
        "detached": lambda: DefendedLatentDistance(encode, chain, gradient="detached"),
        "bpda": lambda: DefendedLatentDistance(encode, chain, gradient="bpda"),
        "bpda_eot": lambda: DefendedLatentDistance(encode, chain, gradient="bpda",
                                                   draws=knobs.eot_draws),
        "unrolled": lambda: DefendedLatentDistance(encode, chain, gradient="unrolled"),
        "unrolled_eot": lambda: DefendedLatentDistance(encode, chain, gradient="unrolled",
                                                       draws=knobs.eot_draws),
        "posterior_shift": lambda: PosteriorShift(encode, chain.log_joint,
                                                  x_ref.roll(len(x_ref) // 2, dims=0)),
        "score_function": lambda: ScoreFunctionDistance(encode, chain, chain.log_joint,
                                                        draws=max(knobs.eot_draws, 2)),
    }
    return {name: builders[name]() for name in knobs.attacks if name in builders}


def run(context: RunContext, knobs: Knobs) -> dict:
    kind, beta = context.profile.models[0]
    model = models.load_model(context, kind, beta)
    _, x_ref, _ = attack_stages.references(context, knobs.references)
    tag, sign = model.tag, {"step": "sign", "learning_rate": 2.5 / knobs.attack_steps,
                            "num_steps": knobs.attack_steps}
    encode = latents.guide_encoder(model.vae)
    baselines = {name: EncoderDivergence(encode) for name in BASELINES if name in knobs.attacks}
    baseline = attack_defend_score(context, model, x_ref, baselines, radii=knobs.radii,
                                   stage=f"{tag}_adaptive_baseline",
                                   pgd_options={"skl": sign} if "skl" in baselines else None)
    step_size = baseline["defence"]["final_step_size_mean"]
    config = baseline["defence"]["sampler_config"]
    # the defence's starting mass matrix: the encoder's σ²(x) where its kind starts there
    # (its windowed re-estimates are not replayed, as its step-size adaptation is not)
    mass_matrix = "encoder" if uses_encoder(config["mass_matrix"]) else "identity"
    chain = UnrolledHMC(model.vae.model, step_size=step_size,
                        num_transitions=knobs.unrolled_transitions,
                        num_leapfrog_steps=config["num_leapfrog_steps"], jitter=config["jitter"],
                        mass_matrix=mass_matrix, guide=model.vae.guide)
    objectives = chain_objectives(model.vae, chain, x_ref, knobs)
    adaptive = attack_defend_score(
        context, model, x_ref, objectives, radii=knobs.radii, stage=f"{tag}_adaptive",
        pgd_options={name: sign for name in objectives},
        attack_after=(f"chains/{tag}_adaptive_baseline.pt",))
    groups = {**baseline["groups"], **adaptive["groups"]}
    return {"radii": list(knobs.radii), "attacks": [a for a in knobs.attacks if a in LABELS],
            "attacked_chain": {"step_size": step_size, "transitions": knobs.unrolled_transitions,
                               "leapfrog_steps": config["num_leapfrog_steps"],
                               "jitter": config["jitter"], "mass_matrix": mass_matrix},
            "groups": groups, "worst_case": worst_case(groups, knobs),
            "defence": adaptive["defence"]}


def worst_case(groups: dict, knobs: Knobs) -> dict:
    """Per radius: the attack with the lowest mean defended MS-SSIM, and the mean over references
    of each reference's lowest defended MS-SSIM over all attacks (standard error)."""
    result = {}
    for radius in knobs.radii:
        scores = {name: groups[f"{name}@{radius:g}"]["ms_ssim"] for name in knobs.attacks}
        per_reference = torch.tensor([score["per_reference"]["defended"]
                                      for score in scores.values()])  # (attacks, N)
        strongest = min(scores, key=lambda name: scores[name]["defended"][0])
        result[f"{radius:g}"] = {"strongest_attack": strongest,
                                 "strongest_mean": scores[strongest]["defended"],
                                 "per_reference_minimum": mean_and_standard_error(
                                     per_reference.min(0).values)}
    return result


def _pair(value) -> str:
    return f"{value[0]:.3f} ({value[1]:.3f})"


def render(run: dict, section: dict) -> list[str]:
    chain = section["attacked_chain"]
    radii = section["radii"]
    lines = ["## Adaptive attacks on the defence (paper Section 4.4, Figures 10–11)", "",
             f"Every attack on {len(section['groups'][f'skl@{radii[0]:g}']['ms_ssim']['per_reference']['plain'])} "
             f"references; the chain-aware attacks differentiate the defence's HMC truncated to "
             f"K = {chain['transitions']} transitions (L = {chain['leapfrog_steps']}, η = "
             f"{chain['step_size']:.4f}, jitter {chain['jitter']}, "
             f"{chain['mass_matrix']} mass), with sign-gradient PGD; every "
             f"attacked input is then defended by the full `{run['sampler']}` defence. Cells: "
             "defended MS-SSIM[x̃_r, x̃_a] (paper variant), mean (standard error); "
             "MS-SSIM[x_r, x_a] of the inputs in the second table.", "",
             "| attack | " + " | ".join(f"radius {r:g}" for r in radii) + " |",
             "|---|" + "---|" * len(radii)]
    for name in section["attacks"]:
        cells = [_pair(section["groups"][f"{name}@{r:g}"]["ms_ssim"]["defended"]) for r in radii]
        lines.append(f"| {LABELS[name]} | {' | '.join(cells)} |")
    worst = section["worst_case"]
    lines.append("| **worst case per reference** | " + " | ".join(
        f"**{_pair(worst[f'{r:g}']['per_reference_minimum'])}**" for r in radii) + " |")
    lines.append("| strongest attack (mean) | " + " | ".join(
        LABELS[worst[f"{r:g}"]["strongest_attack"]] for r in radii) + " |")
    lines += ["", "Without the defence (the same attacked inputs, x̃ from q(z|x_a)), and the "
              "inputs' own similarity:", "",
              "| attack | " + " | ".join(f"{r:g}: no defence | {r:g}: inputs" for r in radii)
              + " |", "|---|" + "---|" * (2 * len(radii))]
    for name in section["attacks"]:
        cells = []
        for r in radii:
            group = section["groups"][f"{name}@{r:g}"]
            cells += [_pair(group["ms_ssim"]["plain"]), _pair(group["inputs"]["plain"])]
        lines.append(f"| {LABELS[name]} | {' | '.join(cells)} |")
    return lines + ["", "![adaptive attacks](adaptive.png)", ""]


def figure(run: dict, section: dict, folder: Path) -> None:
    series = {LABELS[name]: [(r, *section["groups"][f"{name}@{r:g}"]["ms_ssim"]["defended"])
                             for r in section["radii"]] for name in section["attacks"]}
    series["worst case per reference"] = [
        (r, *section["worst_case"][f"{r:g}"]["per_reference_minimum"]) for r in section["radii"]]
    figures.curves(series, folder / "adaptive.png", xlabel="attack radius (L∞)",
                   ylabel="defended MS-SSIM (paper variant)",
                   title="Adaptive attacks on the defence")


EXPERIMENT = Experiment(
    name="adaptive", summary="defence-aware attacks (BPDA, unrolled chain, EOT, posterior "
                             "shift, score function) and the worst case",
    run=run, render=render, figure=figure, samplers=("hmc",),  # the attacks unroll its chain
    model_kinds=("vae", "beta_vae", "beta_tcvae"),  # the chain starts from the encoder's one site
    knobs={"smoke": Knobs(references=3, radii=(0.2,), attack_steps=2, unrolled_transitions=2,
                          eot_draws=2),
           "quick": Knobs(references=10, radii=(0.1, 0.3, 1.0), attack_steps=10,
                          unrolled_transitions=5, eot_draws=8),
           "paper": Knobs(references=50, radii=(0.1, 0.2, 0.3, 0.5, 0.7, 1.0), attack_steps=50,
                          unrolled_transitions=20, eot_draws=16)})
