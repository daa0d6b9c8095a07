"""Wall-clock timing of a UNet forward pass: the original, the FS model's exact lookup and
its spike simulation, on the CPU or a GPU (synchronised), as medians in seconds."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from fs_neurons.functional import backend


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls after two warm-up calls."""
    times = []
    for n in range(repeats + 2):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        if n >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


@torch.no_grad()
def unet_forward_seconds(pipe, fs_pipe, batch: int, repeats: int, device: torch.device,
                         simulate_repeats: int | None = None) -> dict:
    """Median seconds of one UNet forward pass (``batch`` noise images at t=500): the ANN
    (``ann_seconds``), the FS model's exact lookup (``lookup_seconds``) and its spike
    simulation (``simulate_seconds``, over ``simulate_repeats``, default ``repeats``); the
    FS neurons' backends are restored afterwards."""
    cfg = pipe.unet.config
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg.in_channels, cfg.sample_size, cfg.sample_size, generator=g).to(device)
    t = torch.full((batch,), 500, device=device)
    out = {"ann_seconds": median_seconds(lambda: pipe.unet(x, t), repeats, device),
           "lookup_seconds": median_seconds(lambda: fs_pipe.unet(x, t), repeats, device)}
    with backend(fs_pipe.unet, "simulate"):
        out["simulate_seconds"] = median_seconds(lambda: fs_pipe.unet(x, t), simulate_repeats or repeats, device)
    return out


