"""Sampling an original model and its FS conversion from identical noise, batch by batch,
split across processes so that every image is computed exactly as a single process would."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from .convert import fs_activations
from .diffusion import ddim_sample


def plan_batches(num_images: int, batch_size: int, process_index: int = 0, num_processes: int = 1) -> list[range]:
    """Image indices of this process's batches: global batch b holds images
    [b*batch_size, (b+1)*batch_size) and goes to process b mod num_processes."""
    if num_images < 1 or batch_size < 1:
        raise ValueError(f"need num_images >= 1 and batch_size >= 1, got {num_images}, {batch_size}")
    starts = range(0, num_images, batch_size)
    return [range(s, min(s + batch_size, num_images)) for b, s in enumerate(starts) if b % num_processes == process_index]


@dataclass
class SpikeTotals:
    """Spikes emitted and neuron activations (elements through FS neurons) of a model."""

    spikes: float = 0.0
    activations: int = 0

    def __add__(self, other: "SpikeTotals") -> "SpikeTotals":
        return SpikeTotals(self.spikes + other.spikes, self.activations + other.activations)

    @property
    def per_activation(self) -> float:
        """Mean spikes per neuron per call."""
        return self.spikes / self.activations if self.activations else 0.0


def record_spikes(model: nn.Module, on: bool) -> None:
    """Turn spike counting of every FS neuron of ``model`` on (resetting counts) or off."""
    for _, act in fs_activations(model):
        for neuron in act.neurons:
            neuron.record_spikes = on
            neuron.reset_stats()


def spike_totals(model: nn.Module) -> SpikeTotals:
    total = SpikeTotals()
    for _, act in fs_activations(model):
        for neuron in act.neurons:
            total += SpikeTotals(neuron.stats.spikes, neuron.stats.elements)
    return total


def sample_pairs(
    original: nn.Module,
    converted: nn.Module,
    scheduler,
    batches: list[range],
    seed: int,
    steps: int,
    eta: float,
    on_batch: Optional[Callable[[range, torch.Tensor, torch.Tensor], None]] = None,
) -> SpikeTotals:
    """Sample each batch from ``original`` and ``converted`` with the same per-image seeds
    (``seed + index``); ``on_batch(indices, original_images, fs_images)`` gets the results.
    Returns the FS model's spike totals over all batches."""
    record_spikes(converted, True)
    try:
        for idx in batches:
            seeds = [seed + i for i in idx]
            a = ddim_sample(original, scheduler, seeds, steps, eta)
            b = ddim_sample(converted, scheduler, seeds, steps, eta)
            if on_batch is not None:
                on_batch(idx, a, b)
        return spike_totals(converted)
    finally:
        record_spikes(converted, False)
