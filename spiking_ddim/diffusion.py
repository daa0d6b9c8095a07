"""Diffusion pieces around diffusers: schedulers, the denoising loss, DDIM sampling.

Sampling draws each image's initial noise and DDIM variance noise from that image's own
generator (seeded by its index), so an image is the same whatever batch or process it
falls in, and an original and an FS model can be run from identical noise.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler

TRAIN_SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "epsilon"}


class DDIMStep(NamedTuple):
    """One DDIM step: timestep, the input x_t, the model's noise prediction, the result."""

    t: int
    x: torch.Tensor
    eps: torch.Tensor
    x_prev: torch.Tensor


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
def ddim_steps(
    unet: torch.nn.Module,
    scheduler: DDIMScheduler,
    seeds: Sequence[int],
    steps: int = 50,
    eta: float = 0.0,
) -> Iterator[DDIMStep]:
    """Run DDIM from each seed's noise, yielding every step's (t, x_t, predicted noise, x_prev);
    tensors have shape (len(seeds), C, H, W) on the model's device."""
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
    for t in scheduler.timesteps:
        eps = unet(x, t.to(device)).sample
        noise = torch.stack([torch.randn(x.shape[1:], generator=g) for g in gens]).to(device, dtype) if eta > 0 else None
        prev = scheduler.step(eps, t, x, eta=eta, variance_noise=noise).prev_sample
        yield DDIMStep(int(t), x, eps, prev)
        x = prev


def ddim_sample(
    unet: torch.nn.Module,
    scheduler: DDIMScheduler,
    seeds: Sequence[int],
    steps: int = 50,
    eta: float = 0.0,
) -> torch.Tensor:
    """DDIM samples, one per seed, shape (len(seeds), C, H, W), values in about [-1, 1]."""
    (last,) = deque(ddim_steps(unet, scheduler, seeds, steps, eta), maxlen=1)
    return last.x_prev.float().cpu()


def ddim_trajectories(
    unet: torch.nn.Module, scheduler: DDIMScheduler, seeds: Sequence[int], steps: int, batch_size: int = 128,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every step of DDIM runs from ``seeds``, flattened: inputs x_t (N * steps, C, H, W),
    timesteps (N * steps,) and the model's noise predictions (N * steps, C, H, W), on CPU."""
    xs, ts, eps = [], [], []
    for start in range(0, len(seeds), batch_size):
        for step in ddim_steps(unet, scheduler, seeds[start:start + batch_size], steps):
            xs.append(step.x.float().cpu())
            eps.append(step.eps.float().cpu())
            ts.append(torch.full((step.x.shape[0],), step.t, dtype=torch.long))
    return torch.cat(xs), torch.cat(ts), torch.cat(eps)


def ddim_noise_gain(scheduler: DDIMScheduler, timesteps: torch.Tensor) -> torch.Tensor:
    """d x_prev / d eps of a deterministic DDIM step at each timestep (shape of ``timesteps``):
    how much an error in the predicted noise moves that step's output. The step is affine in
    eps away from sample clipping, so a small finite difference through ``scheduler.step``
    gives it exactly; uses the scheduler's current ``set_timesteps``."""
    h, x = 1e-3, torch.zeros(1, 1, 1, 1)
    gain = {int(t): float((scheduler.step(torch.full_like(x, h), t, x).prev_sample
                           - scheduler.step(torch.zeros_like(x), t, x).prev_sample) / h) for t in timesteps.unique()}
    return torch.tensor([gain[int(t)] for t in timesteps])


def predicted_x0(unet: torch.nn.Module, scheduler, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The model's estimate of the clean image from a noisy one (epsilon prediction)."""
    alphas = scheduler.alphas_cumprod.to(xt.device)[t].float().view(-1, 1, 1, 1)
    eps = unet(xt, t).sample.float()
    return (xt.float() - (1 - alphas).sqrt() * eps) / alphas.sqrt()
