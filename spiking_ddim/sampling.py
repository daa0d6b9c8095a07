"""Sampling an original pipeline and its FS conversion from identical noise, batch by batch,
split across processes so that every image is computed exactly as a single process would;
and giving every process the main process's converted model after a fit made there
(:func:`broadcast_conversion`)."""

from __future__ import annotations

from typing import Callable

import torch
from diffusers import DiffusionPipeline

from .pipelines import SamplingOptions, converted_components, generate


def plan_batches(num_images: int, batch_size: int, process_index: int = 0, num_processes: int = 1) -> list[range]:
    """Image indices of this process's batches: global batch b holds images
    [b*batch_size, (b+1)*batch_size) and goes to process b mod num_processes."""
    if num_images < 1 or batch_size < 1:
        raise ValueError(f"need num_images >= 1 and batch_size >= 1, got {num_images}, {batch_size}")
    starts = range(0, num_images, batch_size)
    return [range(s, min(s + batch_size, num_images)) for b, s in enumerate(starts) if b % num_processes == process_index]


def generate_many(pipe: DiffusionPipeline, num_images: int, options: SamplingOptions, batch_size: int,
                  seed: int = 0) -> torch.Tensor:
    """Images 0..num_images-1 of ``pipe`` (image i from seed ``seed + i``), generated
    ``batch_size`` at a time in one process: (num_images, C, H, W) in [-1, 1]."""
    return torch.cat([generate(pipe, idx, options, seed) for idx in plan_batches(num_images, batch_size)])


def sample_pairs(
    original: DiffusionPipeline,
    converted: DiffusionPipeline,
    batches: list[range],
    options: SamplingOptions,
    seed: int,
    on_batch: Callable[[range, torch.Tensor, torch.Tensor], None],
) -> None:
    """Sample each batch through ``original`` and ``converted`` with the same per-image
    generators (``seed + index``) and prompts; ``on_batch(indices, original_images,
    fs_images)`` gets the results, (N, C, H, W) in [-1, 1]."""
    for idx in batches:
        on_batch(idx, generate(original, idx, options, seed), generate(converted, idx, options, seed))


def broadcast_conversion(pipe: DiffusionPipeline, accelerator) -> None:
    """Every process's converted components of ``pipe`` take the main process's weights (FS
    parameters included) and records: after a fit that ran on the main process only
    (calibration), all processes sample the same model. Every process must call it."""
    from accelerate.utils import broadcast_object_list

    components = converted_components(pipe)
    state = [None]
    if accelerator.is_main_process:
        state = [({n: {k: v.cpu() for k, v in m.state_dict().items()} for n, m in components.items()},
                  {n: m.fs_config for n, m in components.items()})]
    weights, records = broadcast_object_list(state)[0]
    for n, m in components.items():
        m.load_state_dict(weights[n])
        m.fs_config = records[n]
