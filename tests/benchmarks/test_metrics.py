"""Robustness metrics of the benchmarks: shapes, per-reference arrays, independent streams."""

from types import SimpleNamespace

import pyro
import pyro.distributions as dist
import pytest
import torch

from benchmarks.stages.metrics import attack_similarity, decode_chains, robustness, similarity_to_references
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


class PixelVAE:
    """A model whose latent is the image itself (z = flattened pixels, guide mean = x, decode =
    reshape): reconstructions are exact, so an MS-SSIM of 1 means 'compared with its own
    reference' and anything else a mismatched pair. Only what the metrics stages use."""

    latent_sites = attacked_sites = ("z",)
    latent_shapes = {"z": (28 * 28,)}

    @staticmethod
    def guide(x):
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", dist.Normal(x.flatten(1), 0.01).to_event(1))

    @staticmethod
    def decode_sites(z):
        return z["z"].view(-1, 1, 28, 28)


def distinct_images(count, seed=0):
    """Smooth random images (MS-SSIM between two of them is far below 1)."""
    coarse = torch.rand(count, 1, 7, 7, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(coarse, size=28, mode="bilinear")


def test_decode_chains_is_point_major_chain_minor():
    """Row p·C + c is chain c of point p. With C ≠ P a chain-major order (a missing transpose)
    puts other latents in those rows."""
    chains, points = 2, 3
    z = torch.randn(chains, points, 28 * 28, generator=torch.Generator().manual_seed(0))
    images = decode_chains(PixelVAE(), z)
    assert images.shape == (points * chains, 1, 28, 28)
    for p in range(points):
        for c in range(chains):
            assert torch.equal(images[p * chains + c, 0].flatten(), z[c, p]), (p, c)


def test_similarity_pairs_each_image_with_its_own_reference():
    """Images reference-major: copy 0 of reference n is n's own image, the other copies are the
    next reference's. Exactly the (n, 0) entries are 1, so tiling the references instead of
    repeating each (or reading the (N, copies) result transposed) moves or loses the ones."""
    refs, copies = 3, 2
    x_ref = distinct_images(refs)
    images = torch.stack([x_ref[n] if c == 0 else x_ref[(n + 1) % refs]
                          for n in range(refs) for c in range(copies)])
    scores = similarity_to_references(PixelVAE(), x_ref, images, generator=None)
    for variant, values in scores.items():
        assert values.shape == (refs, copies)
        assert torch.allclose(values[:, 0], torch.ones(refs), atol=1e-4), variant
        assert (values[:, 1:] < 0.9).all(), (variant, values)


def test_defended_chains_are_scored_against_their_own_references():
    """attack_similarity end to end on the pixel model: every chain of every attacked input
    (reference n, restart r) holds reference n's image, so with correct pairing (inputs
    reference-major, chains point-major) every defended score is 1; a transpose anywhere between
    the chains and the references pairs some chain with another reference (score < 0.9)."""
    refs, restarts, chains = 3, 2, 2
    x_ref = distinct_images(refs)
    x_adv = distinct_images(refs * restarts, seed=1)  # other images: the plain scores are low
    defended_z = x_ref.flatten(1).repeat_interleave(restarts, 0).expand(chains, -1, -1)
    scores = attack_similarity(fake_context(restarts=restarts, chains=chains), PixelVAE(), x_ref, x_adv,
                               defended_z, mode="mean")
    for variant, summary in scores.items():
        assert summary["per_reference"]["defended"] == pytest.approx([1.0] * refs, abs=1e-4), variant
        assert max(summary["per_reference"]["plain"]) < 0.9, variant
