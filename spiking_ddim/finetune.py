"""Fine-tuning a converted UNet towards its reference: what is trained, the distillation
loss on the reference's own sampling trajectories, the fine-tuning objective
(:class:`FinetuneLoss`: denoising, distillation or both), and the held-out image score.

The trajectories are the reference pipeline's UNet calls while it samples images from
seeds ``TRAJECTORY_SEED + i`` (far from the seeds sampling and the benchmarks use), each
call weighted by its DDIM step's noise gain squared (the loss is then the error of the
step's output, not of the predicted noise; mean weight 1). The held-out score is the MSE
of the FS pipeline's images against the reference's from the same noise, on [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline

from fs_neurons.utils.seeds import stream

from .diffusion import ddim_noise_gain, denoising_target, noisy_batch
from .pipelines import DenoiserCalls, Progress, SamplingOptions, generate, record_denoiser_calls
from .sites import fs_activations

TRAJECTORY_SEED = stream("trajectories")  # first seed of the reference's runs for trajectories and held-out images


def trainable(unet: torch.nn.Module, train_unet: bool, train_neurons: bool = True) -> list[torch.nn.Parameter]:
    """Set ``requires_grad``: FS parameters unless not ``train_neurons``, every other weight
    only with ``train_unet``; the parameters to optimise, in the model's order."""
    fs = {id(p) for _, act in fs_activations(unet) for p in act.parameters()}
    for p in unet.parameters():
        p.requires_grad_(train_neurons if id(p) in fs else train_unet)
    return [p for p in unet.parameters() if p.requires_grad]


def trajectory_calls(reference: DiffusionPipeline, options: SamplingOptions, indices: Sequence[int],
                     progress: Progress = None) -> tuple[DenoiserCalls, torch.Tensor]:
    """The reference UNet's calls while sampling images ``indices`` (the same on every
    process) and each call's loss weight (N,), mean 1; ``progress`` counts the calls."""
    calls = record_denoiser_calls(reference, indices, options, seed=TRAJECTORY_SEED, progress=progress)
    weight = ddim_noise_gain(reference.scheduler, calls.timestep) ** 2
    return calls, weight / weight.mean()


def call_errors(unet: torch.nn.Module, calls: DenoiserCalls, weights: torch.Tensor) -> torch.Tensor:
    """Weighted squared error of ``unet``'s prediction against the recorded output, per call (N,)."""
    return weights * (calls.run(unet).float() - calls.output).pow(2).flatten(1).mean(dim=1)


def image_error(pipe: DiffusionPipeline, indices: Sequence[int], options: SamplingOptions,
                reference: torch.Tensor) -> float:
    """MSE of ``pipe``'s images ``indices`` (from the trajectory seeds) against ``reference``,
    the reference pipeline's images from the same noise, (N, C, H, W) in [-1, 1]."""
    return float((generate(pipe, indices, options, TRAJECTORY_SEED) - reference).pow(2).mean())


@dataclass
class FinetuneLoss:
    """The fine-tuning objective of one batch, ``loss(model, generator, step)`` -> a scalar on
    ``device``: ``kind`` ``denoise`` (the model's output against its prediction type's target, on
    noisy ``images``: (N, C, H, W) in [-1, 1]), ``distill`` (its output against the
    reference's: on the reference's recorded ``calls`` weighted by ``weights`` when given,
    else on noisy ``images`` against ``teacher``) or ``both`` (their sum). ``batch_size``
    images or calls per step, drawn with the training loop's generator."""

    kind: str
    batch_size: int
    device: torch.device
    noise_scheduler: object = None
    images: Optional[torch.Tensor] = None
    calls: Optional[DenoiserCalls] = None
    weights: Optional[torch.Tensor] = None
    teacher: Optional[torch.nn.Module] = None

    def __call__(self, model: torch.nn.Module, g: torch.Generator, _step: int) -> torch.Tensor:
        loss = torch.zeros((), device=self.device)
        if self.images is not None:
            x0, noise, t, xt = noisy_batch(self.images, self.noise_scheduler, self.batch_size, g, self.device)
        if self.kind in ("denoise", "both"):
            target = denoising_target(self.noise_scheduler, x0, noise, t)
            loss = loss + F.mse_loss(model(xt, t).sample.float(), target.float())
        if self.kind in ("distill", "both"):
            if self.calls is not None:
                idx = torch.randint(0, len(self.calls), (self.batch_size,), generator=g)
                loss = loss + call_errors(model, self.calls.rows(idx).to(self.device),
                                          self.weights[idx].to(self.device)).mean()
            else:
                with torch.no_grad():
                    target = self.teacher(xt, t).sample.float()
                loss = loss + (model(xt, t).sample.float() - target).pow(2).mean()
        return loss
