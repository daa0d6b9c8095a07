"""Wall-clock timing: a UNet forward pass (the original, the FS model's exact lookup and its
spike simulation) and whole sampling runs of several pipelines taken in turn, on the CPU or
a GPU (synchronised), as medians in seconds; the stages of a conversion recipe; and the
memory a coding's state across denoising steps holds."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Mapping

import torch
from torch import nn

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




def sampling_seconds(runs: Mapping[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median wall seconds of each of ``runs`` (name -> a sampling run), taken in turn
    (round robin) ``repeats`` times after one warm-up round, so that whatever else the
    machine does slows every run alike and their ratios stay comparable."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for n in range(repeats + 1):
        for name, run in runs.items():
            synchronize(device)
            t0 = time.perf_counter()
            run()
            synchronize(device)
            if n:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


class StageClock:
    """A ``progress(stage, done, total)`` callback (as :func:`spiking_ddim.recipe.prepare`
    takes) that notes when each stage group (the stage name up to its first ``:``) first
    reports; :meth:`seconds` turns the notes into seconds per group."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.firsts: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.firsts.setdefault(stage.split(":")[0].strip(), time.perf_counter())

    def seconds(self) -> dict[str, float]:
        """Seconds from each group's first report to the next group's (the last: to now);
        ``total``: from construction to now. A group's first report comes after its first
        unit of work, so each group's share is approximate; the total is exact."""
        end = time.perf_counter()
        names, times = list(self.firsts), [*self.firsts.values(), end]
        return {**{name: times[i + 1] - times[i] for i, name in enumerate(names)}, "total": end - self.start}


def state_bytes(model: nn.Module) -> int:
    """Bytes of the tensors that :class:`fs_neurons.state.Stateful` modules of ``model`` hold
    between calls (not parameters or buffers): after a sampling run, the state a coding
    across denoising steps keeps for that run's batch."""
    from fs_neurons.state import Stateful

    def tensors(value):
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (tuple, list)):
            for v in value:
                yield from tensors(v)

    return sum(t.numel() * t.element_size() for m in model.modules() if isinstance(m, Stateful)
               for value in vars(m).values() for t in tensors(value))
