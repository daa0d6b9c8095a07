"""Diffusion pieces around diffusers: schedulers, the denoising loss, DDIM sampling.

Sampling draws each image's initial noise and DDIM variance noise from that image's own
generator (seeded by its index), so an image is the same whatever batch or process it
falls in, and an original and an FS model can be run from identical noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler

TRAIN_SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "epsilon"}


def train_scheduler(**overrides) -> DDPMScheduler:
    return DDPMScheduler(**{**TRAIN_SCHEDULER, **overrides})


def load_scheduler(model_dir: Optional[Path]) -> DDIMScheduler:
    """The DDIM scheduler of a pipeline directory (``scheduler/``), of a model directory
    (``scheduler_config.json`` beside it), or the training default."""
    if model_dir is not None:
        for candidate in (model_dir / "scheduler", model_dir.parent / "scheduler", model_dir):
            if (candidate / "scheduler_config.json").is_file():
                return DDIMScheduler.from_pretrained(str(candidate))
    return DDIMScheduler(**TRAIN_SCHEDULER)


def noisy_batch(images: torch.Tensor, scheduler, batch_size: int, g: torch.Generator, device: torch.device):
    """A random batch of clean images, their noise, timesteps and noisy versions."""
    idx = torch.randint(0, images.shape[0], (batch_size,), generator=g)
    x0 = images[idx]
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=g)
    xt = scheduler.add_noise(x0, noise, t)
    return x0.to(device), noise.to(device), t.to(device), xt.to(device)


def denoising_loss(model: torch.nn.Module, images: torch.Tensor, scheduler, batch_size: int, g: torch.Generator) -> torch.Tensor:
    """DDPM epsilon-prediction MSE on a random batch."""
    device = next(model.parameters()).device
    _, noise, t, xt = noisy_batch(images, scheduler, batch_size, g, device)
    return F.mse_loss(model(xt, t).sample.float(), noise.float())


@torch.no_grad()
def ddim_sample(
    unet: torch.nn.Module,
    scheduler: DDIMScheduler,
    seeds: Sequence[int],
    steps: int = 50,
    eta: float = 0.0,
    on_step: Optional[Callable[[int], None]] = None,
) -> torch.Tensor:
    """DDIM samples, one per seed, shape (len(seeds), C, H, W), values in about [-1, 1]."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    cfg = unet.config
    size = cfg.sample_size if isinstance(cfg.sample_size, (list, tuple)) else (cfg.sample_size, cfg.sample_size)
    device = next(unet.parameters()).device
    dtype = next(unet.parameters()).dtype
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    x = torch.stack([torch.randn(cfg.in_channels, *size, generator=g) for g in gens]).to(device, dtype)
    scheduler.set_timesteps(steps)
    for i, t in enumerate(scheduler.timesteps):
        eps = unet(x, t.to(device)).sample
        noise = torch.stack([torch.randn(x.shape[1:], generator=g) for g in gens]).to(device, dtype) if eta > 0 else None
        x = scheduler.step(eps, t, x, eta=eta, variance_noise=noise).prev_sample
        if on_step is not None:
            on_step(i)
    return x.float().cpu()


def predicted_x0(unet: torch.nn.Module, scheduler, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The model's estimate of the clean image from a noisy one (epsilon prediction)."""
    alphas = scheduler.alphas_cumprod.to(xt.device)[t].float().view(-1, 1, 1, 1)
    eps = unet(xt, t).sample.float()
    return (xt.float() - (1 - alphas).sqrt() * eps) / alphas.sqrt()
