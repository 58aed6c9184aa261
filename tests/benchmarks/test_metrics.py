"""Robustness metrics of the benchmarks: shapes, per-reference arrays, independent streams."""

from types import SimpleNamespace

import torch

from benchmarks.stages.metrics import robustness
from benchmarks.stages.models import LoadedModel
from pyro_vae import ConvVAE, VAEConfig


def fake_context(radii=(0.1, 0.2), restarts=2, chains=2, seed=0):
    profile = SimpleNamespace(radii=radii, restarts=restarts, num_chains=chains)

    def generator(stream=0):
        return torch.Generator().manual_seed(seed + 1_000_003 * stream)

    return SimpleNamespace(profile=profile, device=torch.device("cpu"), generator=generator)


def test_undefended_numbers_do_not_depend_on_a_defence_beside_them():
    torch.manual_seed(0)
    vae = ConvVAE(VAEConfig()).eval().requires_grad_(False)
    model = LoadedModel(vae, "vae_beta1", "test", {}, None)
    refs, restarts, chains, radii = 3, 2, 2, (0.1, 0.2)
    x_ref = torch.rand(refs, 1, 28, 28)
    adversarial = (x_ref[None, :, None] + 0.05 * torch.randn(len(radii), refs, restarts, 1, 28,
                                                               28)).clamp(0, 1)
    attacks = {"skl": {"adversarial": adversarial,
                       "objective": torch.rand(len(radii), refs, restarts)}}
    names = ["clean", *(f"skl@{r:g}" for r in radii)]
    sizes = {"clean": refs, **{f"skl@{r:g}": refs * restarts for r in radii}}
    defended = {key: {name: torch.randn(chains, sizes[name], 64) for name in names}
                for key in ("final_z", "mean_z")}
    context = fake_context(radii, restarts, chains)
    alone = robustness(context, model, x_ref, torch.zeros(refs, 1), {}, attacks, None)
    beside = robustness(context, model, x_ref, torch.zeros(refs, 1), {}, attacks, defended)
    for key in ("ms_ssim", "ms_ssim_standard", "ms_ssim_mean_reconstruction"):
        for radius in ("0.1", "0.2"):
            assert beside[key][radius]["plain"] == alone[key][radius]["plain"], (key, radius)
            assert len(beside[key][radius]["per_reference"]["defended"]) == refs
    assert beside["ms_ssim_clean"] == alone["ms_ssim_clean"]
    paper, standard = beside["ms_ssim"]["0.2"]["plain"][0], beside["ms_ssim_standard"]["0.2"][
        "plain"][0]
    assert paper <= standard
    assert len(beside["attack_objective"]["skl"]["0.1"]["per_reference"]["plain"]) == refs
