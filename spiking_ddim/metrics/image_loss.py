"""Image losses.

(a) :func:`compare` - an FS model's samples against the original model's samples from
    identical noise: per-image MSE, MAE and PSNR, their means, and the spread of the
    per-image PSNR (:func:`psnr_spread`).
(b) :func:`x0_mae` - the paper's image loss: mean absolute error between held-out clean
    images and the model's predicted clean image at random diffusion times.

Images are float tensors (N, C, H, W) in [-1, 1]; errors are measured on the [0, 1] scale.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

# Per-image PSNR below this (dB) counts an image as diverged in :func:`psnr_spread`.
LOW_PSNR_DB = 30.0


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"image batches differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.ndim != 4 or a.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, C, H, W) batch, got shape {tuple(a.shape)}")
    for name, t in (("first", a), ("second", b)):
        if not torch.isfinite(t).all():
            raise ValueError(f"the {name} image batch contains NaN or infinite values")


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB for images on [0, 1]; infinite for identical images."""
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def psnr_spread(psnr: Sequence[float], low: float = LOW_PSNR_DB) -> dict:
    """The distribution of per-image PSNRs (dB; ``inf`` for identical images), beside the PSNR
    of the mean MSE, which a few diverged images dominate: ``psnr_median`` (the lower median)
    and ``psnr_p5`` (the 5th percentile, the lower nearest rank), each the PSNR of an actual
    image, and ``share_below_{low}db``, the fraction of images under ``low`` dB."""
    values = sorted(float(v) for v in psnr)
    if not values or any(math.isnan(v) for v in values):
        raise ValueError(f"per-image PSNRs must be a non-empty list of numbers, got {len(values)} values")

    def lower_quantile(q: float) -> float:
        return values[math.floor(q * (len(values) - 1))]

    return {"psnr_median": lower_quantile(0.5), "psnr_p5": lower_quantile(0.05),
            f"share_below_{low:g}db": sum(v < low for v in values) / len(values)}


def describe_psnr(metrics: dict) -> str:
    """One line: the PSNR of the mean MSE and the per-image spread of a :func:`compare` or
    metrics.json dict (its ``psnr`` or ``mean_psnr``, and the keys of :func:`psnr_spread`)."""
    mean = metrics["mean_psnr"] if "mean_psnr" in metrics else metrics["psnr"]
    below = metrics[f"share_below_{LOW_PSNR_DB:g}db"]
    return (f"PSNR {mean:.2f} dB (of the mean MSE); per image: median {metrics['psnr_median']:.2f}, "
            f"5th percentile {metrics['psnr_p5']:.2f} dB, {100 * below:.1f}% below {LOW_PSNR_DB:g} dB")


def spread_cells(row: dict) -> str:
    """Two markdown table cells of a results row's per-image PSNR spread: "median / p5 |
    share below 30 dB" (dB, %); "- | -" for a row without one (the original, or a row
    written before the spread was recorded)."""
    if row.get("psnr_median") is None:
        return "- | -"
    return (f"{row['psnr_median']:.2f} / {row['psnr_p5']:.2f} | "
            f"{100 * row[f'share_below_{LOW_PSNR_DB:g}db']:.1f}%")


def compare(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Per-image and mean MSE, MAE and PSNR of ``b`` against ``a`` (both in [-1, 1]), and the
    spread of the per-image PSNRs (:func:`psnr_spread`)."""
    _check_pair(a, b)
    x = (a.double().clamp(-1, 1) + 1) / 2
    y = (b.double().clamp(-1, 1) + 1) / 2
    mse = ((x - y) ** 2).flatten(1).mean(1)
    mae = (x - y).abs().flatten(1).mean(1)
    psnr = [psnr_from_mse(float(m)) for m in mse]
    return {
        "mse": mse.tolist(), "mae": mae.tolist(), "psnr": psnr,
        "mean_mse": float(mse.mean()), "mean_mae": float(mae.mean()),
        "mean_psnr": psnr_from_mse(float(mse.mean())),  # PSNR of the mean MSE (robust to identical pairs)
        **psnr_spread(psnr),
    }


@torch.no_grad()
def x0_mae(unet: torch.nn.Module, scheduler, images: torch.Tensor, seed: int = 0, batch_size: int = 64,
           repeats: int = 1) -> float:
    """Mean |x0 - x0_hat| on [0, 1] over ``images`` at uniformly random timesteps."""
    from ..diffusion import predicted_x0

    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, C, H, W) batch, got shape {tuple(images.shape)}")
    device = next(unet.parameters()).device
    g = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for _ in range(repeats):
        for start in range(0, images.shape[0], batch_size):
            x0 = images[start:start + batch_size]
            noise = torch.randn(x0.shape, generator=g)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=g)
            xt = scheduler.add_noise(x0, noise, t)
            hat = predicted_x0(unet, scheduler, xt.to(device), t.to(device)).cpu().clamp(-1, 1)
            total += float(((hat - x0) / 2).abs().sum())
            count += x0.numel()
    return total / count
