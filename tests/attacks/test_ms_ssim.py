import math

import pytest
import pytorch_msssim
import torch

from attacks import MS_SSIM_WEIGHTS, adversarial_accuracy, mean_and_standard_error, ms_ssim


def naive_ms_ssim(a, b, variant="standard"):
    """Direct single-pair MS-SSIM: explicit 2-D windows and a loop over window positions.

    ``variant="paper"`` multiplies the coarsest level's SSIM factor into each of the four
    contrast-structure factors, as the authors' code does."""
    c1, c2 = 0.01**2, 0.03**2
    factors = []
    for level, weight in enumerate(MS_SSIM_WEIGHTS):
        channels, height, width = a.shape
        size = min(14, height, width)
        profile = torch.tensor([math.exp(-(i - size // 2) ** 2 / (2 * 1.5**2))
                                for i in range(size)], dtype=torch.float64)
        window = torch.outer(profile, profile) / profile.sum() ** 2
        ssim_values, cs_values = [], []
        for channel in range(channels):
            for top in range(height - size + 1):
                for left in range(width - size + 1):
                    pa = a[channel, top:top + size, left:left + size]
                    pb = b[channel, top:top + size, left:left + size]
                    mu_a, mu_b = (window * pa).sum(), (window * pb).sum()
                    var_a = (window * pa * pa).sum() - mu_a**2
                    var_b = (window * pb * pb).sum() - mu_b**2
                    cov = (window * pa * pb).sum() - mu_a * mu_b
                    cs = (2 * cov + c2) / (var_a + var_b + c2)
                    cs_values.append(cs)
                    ssim_values.append(cs * (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1))
        last = level == len(MS_SSIM_WEIGHTS) - 1
        mean = torch.stack(ssim_values if last else cs_values).mean()
        factors.append(max(mean.item(), 0.0) ** weight)
        half_h, half_w = height // 2, width // 2
        a = a[:, :2 * half_h, :2 * half_w].reshape(channels, half_h, 2, half_w, 2).mean((2, 4))
        b = b[:, :2 * half_h, :2 * half_w].reshape(channels, half_h, 2, half_w, 2).mean((2, 4))
    if variant == "paper":
        return math.prod(cs * factors[-1] for cs in factors[:-1])
    return math.prod(factors)


def test_identical_images_score_one(image_factory):
    x = image_factory(5, channels=3)
    assert torch.allclose(ms_ssim(x, x), torch.ones(5), atol=1e-6)


def test_score_decreases_with_noise(image_factory):
    x = image_factory(6).double()
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    scores = [ms_ssim(x, (x + level * noise).clamp(0, 1)).mean().item()
              for level in (0.0, 0.05, 0.1, 0.2, 0.4)]
    assert scores[0] == pytest.approx(1.0)
    assert all(later < earlier for earlier, later in zip(scores, scores[1:]))


@pytest.mark.parametrize("variant", ["standard", "paper"])
@pytest.mark.parametrize("channels", [1, 3])
def test_matches_a_direct_computation(image_factory, channels, variant):
    x = image_factory(2, channels=channels).double()
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.cat([(x[:1] + 0.15 * noise[:1]).clamp(0, 1), 1 - x[1:]])  # noisy; inverted
    batched = ms_ssim(x, y, variant=variant)
    direct = torch.tensor([naive_ms_ssim(x[i], y[i], variant) for i in range(2)],
                          dtype=torch.float64)
    assert torch.allclose(batched, direct, atol=1e-10)
    assert 0 < batched[0] < 1


def test_agrees_with_stock_pytorch_msssim_where_it_applies():
    x = torch.rand(2, 1, 176, 176, generator=torch.Generator().manual_seed(2))
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    ours = ms_ssim(x, y, window_size=11)
    stock = pytorch_msssim.ms_ssim(x, y, data_range=1.0, win_size=11, size_average=False)
    assert torch.allclose(ours, stock, atol=1e-5)


def test_rejects_mismatched_or_too_small_images():
    with pytest.raises(ValueError, match="equal shape"):
        ms_ssim(torch.zeros(1, 1, 28, 28), torch.zeros(1, 1, 28, 27))
    with pytest.raises(ValueError, match="at least 16"):
        ms_ssim(torch.zeros(1, 1, 15, 28), torch.zeros(1, 1, 15, 28))


def test_adversarial_accuracy_per_reference():
    predictions = torch.tensor([[1, 1, 0, 1], [2, 0, 0, 0]])
    accuracy = adversarial_accuracy(predictions, reference_classes=torch.tensor([1, 2]))
    assert torch.allclose(accuracy, torch.tensor([0.75, 0.25]))
    with pytest.raises(ValueError, match="reference_classes"):
        adversarial_accuracy(predictions, reference_classes=torch.tensor([1, 2, 3]))


def test_mean_and_standard_error_over_references():
    mean, error = mean_and_standard_error(torch.tensor([[1.0, 3.0], [4.0, 4.0], [6.0, 8.0]]))
    assert mean == pytest.approx(13 / 3)
    assert error == pytest.approx(torch.tensor([2.0, 4.0, 7.0]).std().item() / math.sqrt(3))


def test_paper_variant_is_the_standard_one_times_three_more_coarsest_factors(image_factory):
    """The documented gap: paper = standard · ssim_5^{3·w_5}, never above the standard value,
    equal for identical images and lower when the mean intensities differ."""
    x = image_factory(4).double()
    y = (0.6 * x + 0.3).clamp(0, 1)  # same structure, shifted and compressed intensities
    standard, paper = ms_ssim(x, y), ms_ssim(x, y, variant="paper")
    mean_x, mean_y = x.mean((1, 2, 3)), y.mean((1, 2, 3))  # the 1×1 level after four poolings
    coarsest = torch.stack([  # luminance term of the 1×1 level, from the pooled pixel
        (2 * a * b + 0.01**2) / (a**2 + b**2 + 0.01**2) for a, b in zip(
            torch.nn.functional.avg_pool2d(x, 16).flatten(), torch.nn.functional.avg_pool2d(
                y, 16).flatten())])
    assert torch.allclose(paper, standard * coarsest ** (3 * MS_SSIM_WEIGHTS[-1]), atol=1e-12)
    assert (paper < standard).all() and not torch.allclose(mean_x, mean_y)
    assert torch.allclose(ms_ssim(x, x, variant="paper"), torch.ones(4, dtype=torch.float64))


def test_rejects_an_unknown_variant():
    with pytest.raises(ValueError, match="variant"):
        ms_ssim(torch.zeros(1, 1, 28, 28), torch.zeros(1, 1, 28, 28), variant="authors")
