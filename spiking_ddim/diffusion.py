"""Diffusion pieces around diffusers: schedulers, the denoising loss, the gain of a DDIM
step, the predicted clean image. Sampling runs through the pipelines (:mod:`.pipelines`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from .run_state import step_coding

TRAIN_SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "epsilon"}


def train_scheduler(**overrides) -> DDPMScheduler:
    """The noise schedule a new model trains on: :data:`TRAIN_SCHEDULER` with ``overrides``."""
    return DDPMScheduler(**{**TRAIN_SCHEDULER, **overrides})


def sampling_scheduler(**overrides) -> DDIMScheduler:
    """The DDIM scheduler saved with a new model: :data:`TRAIN_SCHEDULER` with ``overrides``."""
    return DDIMScheduler(**{**TRAIN_SCHEDULER, **overrides})


def noise_schedule_of(scheduler) -> DDPMScheduler:
    """The training noise schedule (betas, prediction type) of a pipeline's ``scheduler``."""
    return DDPMScheduler.from_config(scheduler.config)


def load_scheduler(model_dir: Optional[Path]) -> tuple[DDIMScheduler, str]:
    """The DDIM scheduler of a pipeline directory (``scheduler/``), of a model directory
    (``scheduler_config.json`` beside it), or the training default; and where it came from,
    in words."""
    if model_dir is not None:
        for candidate in (model_dir / "scheduler", model_dir.parent / "scheduler", model_dir):
            if (candidate / "scheduler_config.json").is_file():
                return DDIMScheduler.from_pretrained(str(candidate)), str(candidate / "scheduler_config.json")
    return sampling_scheduler(), (f"DEFAULT: no scheduler_config.json beside {model_dir}, so the training "
                                              f"default {TRAIN_SCHEDULER} (check it matches how the UNet was trained)")


def group_count(block_out_channels: Sequence[int], norm_groups: Optional[int] = None) -> int:
    """GroupNorm groups of a UNet with these widths: ``norm_groups``, or 8 (the narrowest
    width if smaller); ``ValueError`` unless they divide every width."""
    groups = min(8, min(block_out_channels)) if norm_groups is None else norm_groups
    if groups < 1 or any(width % groups for width in block_out_channels):
        raise ValueError(f"norm groups must be >= 1 and divide every width, got {groups} for widths "
                         f"{list(block_out_channels)}")
    return groups


def build_unet(image_size: int, channels: int, block_out_channels: Sequence[int], layers_per_block: int,
               attention_level: int, norm_groups: Optional[int] = None) -> UNet2DModel:
    """A fresh diffusers UNet2DModel for ``channels``-channel images of ``image_size``
    pixels: one level per width, self-attention at ``attention_level`` (-1: none) and in
    the middle block, GroupNorm with ``norm_groups`` groups (default: 8, or the narrowest
    width if smaller)."""
    groups = group_count(block_out_channels, norm_groups)
    levels = len(block_out_channels)
    down = ["AttnDownBlock2D" if i == attention_level else "DownBlock2D" for i in range(levels)]
    up = ["AttnUpBlock2D" if levels - 1 - i == attention_level else "UpBlock2D" for i in range(levels)]
    return UNet2DModel(sample_size=image_size, in_channels=channels, out_channels=channels,
                       layers_per_block=layers_per_block, block_out_channels=tuple(block_out_channels),
                       down_block_types=tuple(down), up_block_types=tuple(up),
                       norm_num_groups=groups)


def noisy_batch(images: torch.Tensor, scheduler, batch_size: int, g: torch.Generator, device: torch.device):
    """A random batch of clean images, their noise, timesteps and noisy versions."""
    idx = torch.randint(0, images.shape[0], (batch_size,), generator=g)
    x0 = images[idx]
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=g)
    xt = scheduler.add_noise(x0, noise, t)
    return x0.to(device), noise.to(device), t.to(device), xt.to(device)


def prediction_type(scheduler) -> str:
    """``scheduler``'s prediction type (epsilon, v_prediction or sample); a ``ValueError`` for another."""
    kind = scheduler.config.prediction_type
    if kind not in ("epsilon", "v_prediction", "sample"):
        raise ValueError(f"unknown prediction type {kind!r} (epsilon, v_prediction or sample)")
    return kind


def denoising_target(scheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What a model of ``scheduler``'s prediction type should output for ``x0`` noised with
    ``noise`` at timesteps ``t`` (shapes (N, C, H, W), (N,)): the noise (epsilon), the
    velocity sqrt(a) noise - sqrt(1 - a) x0 (v_prediction) or the clean image (sample)."""
    kind = prediction_type(scheduler)
    if kind == "epsilon":
        return noise
    return scheduler.get_velocity(x0, noise, t) if kind == "v_prediction" else x0


def denoising_loss(model: torch.nn.Module, images: torch.Tensor, scheduler, batch_size: int, g: torch.Generator) -> torch.Tensor:
    """DDPM denoising MSE on a random batch, against the target of the scheduler's prediction type."""
    device = next(model.parameters()).device
    x0, noise, t, xt = noisy_batch(images, scheduler, batch_size, g, device)
    return F.mse_loss(model(xt, t).sample.float(), denoising_target(scheduler, x0, noise, t).float())


def ddim_noise_gain(scheduler: DDIMScheduler, timesteps: torch.Tensor) -> torch.Tensor:
    """d x_prev / d (model output) of a deterministic DDIM step at each timestep (shape of
    ``timesteps``): how much an error in the predicted noise (or velocity) moves that step's
    output. The step is affine in the output away from sample clipping, so a small finite
    difference through ``scheduler.step`` gives it exactly; uses the scheduler's current
    ``set_timesteps``."""
    h, x = 1e-3, torch.zeros(1, 1, 1, 1)
    gain = {int(t): float((scheduler.step(torch.full_like(x, h), t, x).prev_sample
                           - scheduler.step(torch.zeros_like(x), t, x).prev_sample) / h) for t in timesteps.unique()}
    return torch.tensor([gain[int(t)] for t in timesteps])


def predicted_x0(unet: torch.nn.Module, scheduler, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The model's estimate of the clean image from a noisy one, by the scheduler's prediction
    type; a delta-coded model codes the call in full (it is not a step of one run)."""
    alphas = scheduler.alphas_cumprod.to(xt.device)[t].float().view(-1, 1, 1, 1)
    with step_coding(unet):
        out = unet(xt, t).sample.float()
    kind = prediction_type(scheduler)
    if kind == "epsilon":
        return (xt.float() - (1 - alphas).sqrt() * out) / alphas.sqrt()
    return alphas.sqrt() * xt.float() - (1 - alphas).sqrt() * out if kind == "v_prediction" else out
