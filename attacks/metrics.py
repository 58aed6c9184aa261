"""Robustness metrics of paper Section 5 / Tables 2–4 (PROTOCOL.md §8), batched over examples.

MS-SSIM comes in two variants that share every per-level computation (the authors' window,
pooling and ReLU settings for 28×28 images) and differ only in how the levels are combined:
``"standard"`` (Wang, Simoncelli & Bovik 2003) and ``"paper"``, the formula the authors' code
actually computes and the paper's numbers use. It is rebuilt from pytorch-msssim's SSIM pieces
because its stock ``ms_ssim`` needs images larger than (win − 1)·16 pixels at 5 scales.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim
from torch import Tensor

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Per-level exponents of Wang, Simoncelli & Bovik (2003), finest level first."""
MS_SSIM_VARIANTS = ("standard", "paper")


def ms_ssim(x: Tensor, y: Tensor, *, variant: str = "standard", data_range: float = 1.0,
            window_size: int = 14, window_sigma: float = 1.5,
            weights: tuple[float, ...] = MS_SSIM_WEIGHTS) -> Tensor:
    """Multi-scale SSIM of every image pair, with the window shrunk to the image at each level.

    The per-level rule (the authors' setting, PROTOCOL.md §8), for L = len(weights) = 5 levels:
    level j = 1..L works on the images average-pooled j − 1 times by 2×2 with floor
    (28 → 14 → 7 → 3 → 1). Its window is a Gaussian with σ = ``window_sigma`` = 1.5 and size
    min(``window_size``, H_j, W_j) = 14, 14, 7, 3, 1 on 28×28 (even sizes allowed, centred at
    index size // 2 as in the authors' code), applied separably without padding. SSIM uses
    K = (0.01, 0.03) and ``data_range`` = 1. At each level the SSIM and contrast–structure (cs)
    maps are averaged over space and channels, and a negative average is set to 0 (ReLU, the
    authors' ``normalize='relu'``; coarse levels of dissimilar images can go negative).
    At the 1×1 level the window is a single pixel, so cs = 1 and ssim is the luminance term alone.
    The levels combine with the weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) as

    - ``variant="standard"``: Π_{j<L} cs_j^{w_j} · ssim_L^{w_L} (Wang et al. 2003);
    - ``variant="paper"``: Π_{j<L} (cs_j^{w_j} · ssim_L^{w_L}) = Π_{j<L} cs_j^{w_j} ·
      ssim_L^{(L−1)·w_L}, what the authors' code computes (``torch.prod(pow1[:-1] * pow2[-1])``
      in their copy of pytorch_msssim) and what the paper's tables report. The coarsest level
      (the images' mean intensities) enters four times, so the paper variant is never above the
      standard one and falls further below it the more the mean intensities differ.

    Shape:
        x, y: (B, C, H, W) with min(H, W) >= 2^(L−1) → (B,)
    """
    if variant not in MS_SSIM_VARIANTS:
        raise ValueError(f"unknown MS-SSIM variant {variant!r}; choose one of {MS_SSIM_VARIANTS}")
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"expected two (B, C, H, W) tensors of equal shape, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    levels = len(weights)
    if min(x.shape[-2:]) < 2 ** (levels - 1):
        raise ValueError(f"{levels}-level MS-SSIM needs images of at least {2 ** (levels - 1)} "
                         f"pixels a side, got {tuple(x.shape[-2:])}")
    factors = []
    for level in range(levels):
        size = min(window_size, *x.shape[-2:])
        window = _fspecial_gauss_1d(size, window_sigma).repeat(x.shape[1], 1, 1, 1)
        ssim_per_channel, cs_per_channel = _ssim(x, y, data_range=data_range, win=window,
                                                 size_average=False)
        # Channels have equal sizes, so the mean of per-channel means is the whole-map mean.
        last = level == levels - 1
        factors.append(torch.relu((ssim_per_channel if last else cs_per_channel).mean(1)))
        if not last:
            x, y = F.avg_pool2d(x, kernel_size=2), F.avg_pool2d(y, kernel_size=2)
    exponents = list(weights)
    if variant == "paper":
        exponents[-1] *= levels - 1
    exponents = torch.tensor(exponents, dtype=x.dtype, device=x.device).unsqueeze(1)
    return torch.prod(torch.stack(factors) ** exponents, dim=0)


def adversarial_accuracy(predictions: Tensor, *, reference_classes: Tensor) -> Tensor:
    """Per reference, the fraction of its attacks whose predicted class equals its class.

    ``reference_classes`` is the classifier's prediction on the clean reference (the attack's
    goal is to change it); with R = 1 clean inputs and true labels this is clean accuracy, the
    radius-0 column of Tables 2–4.

    Shape:
        predictions: (N, R) integer;  reference_classes: (N,) → (N,)
    """
    if predictions.dim() != 2 or reference_classes.shape != predictions.shape[:1]:
        raise ValueError(f"expected predictions (N, R) and reference_classes (N,), got "
                         f"{tuple(predictions.shape)} and {tuple(reference_classes.shape)}")
    return (predictions == reference_classes.unsqueeze(1)).float().mean(1)


def mean_and_standard_error(values: Tensor) -> tuple[float, float]:
    """Average over restarts, then mean and standard error over references (Tables 2–4).

    Shape:
        values: (N, R) or (N,) → (mean, standard error) floats; the error is NaN for N = 1
    """
    per_reference = values.float().mean(1) if values.dim() == 2 else values.float()
    count = per_reference.shape[0]
    spread = per_reference.std().item() if count > 1 else math.nan
    return per_reference.mean().item(), spread / math.sqrt(count)
