"""Monitors: what a converted model's FS sites see, recorded from outside the sites.

A monitor attaches forward hooks to every :class:`FSActivation` of a model when entered
and removes them when left (as spikingjelly's ``monitor`` classes), so a site never
changes behaviour to be observed.

    with original_activations(model), SiteInputMonitor(model) as inputs:
        ...                                   # run the model
    x = inputs.samples(act, i)                # call site i's inputs, 1-D float32 on the CPU

:class:`ChangeMonitor` records how much each site's value changes between consecutive
denoising steps (what delta coding sends). (Spikes and operations are counted by :class:`spiking_ddim.energy.CostMeter`, a monitor
on the FS neurons' spike hooks.)
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .fs_activation import FSActivation
from .sites import fs_activations

RECORD_LIMIT = 200_000  # input samples (or changes) kept per call site


def keep_sample(kept: list[torch.Tensor], values: torch.Tensor, per_call: int, limit: int,
                rng: torch.Generator) -> list[torch.Tensor]:
    """``kept`` (1-D float32 CPU tensors) with a random sample of at most ``per_call`` of one
    call's ``values`` (1-D) added, cut to a random ``limit`` of all kept once it holds more."""
    if values.numel() > per_call:
        values = values[torch.randint(0, values.numel(), (per_call,), generator=rng).to(values.device)]
    kept = [*kept, values.float().cpu()]
    if sum(t.numel() for t in kept) > limit:
        joined = torch.cat(kept)
        kept = [joined[torch.randperm(joined.numel(), generator=rng)[:limit]]]
    return kept


class SiteInputMonitor:
    """Keeps a random sample (reproducible: one generator per FSActivation, seeded ``seed``) of at
    most ``limit`` inputs of every call site of every FSActivation in ``model``."""

    def __init__(self, model: nn.Module, limit: int = RECORD_LIMIT, seed: int = 0):
        if limit < 8:
            raise ValueError(f"limit must be >= 8, got {limit}")
        self.model, self.limit, self.seed = model, limit, seed
        self._records: dict[int, list[list[torch.Tensor]]] = {}
        self._rng: dict[int, torch.Generator] = {}
        self._handles: list = []

    def __enter__(self) -> "SiteInputMonitor":
        if self._handles:
            raise RuntimeError("this monitor is already attached")
        for _, act in fs_activations(self.model):
            self._records[id(act)] = [[] for _ in range(act.num_sites)]
            self._rng[id(act)] = torch.Generator().manual_seed(self.seed)
            self._handles.append(act.register_forward_hook(self._record))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _record(self, act: FSActivation, args: tuple, _output) -> None:
        i, kept = act.site_index(), self._records[id(act)]
        kept[i] = keep_sample(kept[i], args[0].detach().reshape(-1), self.limit // 8, self.limit, self._rng[id(act)])

    def samples(self, act: FSActivation, i: int) -> torch.Tensor:
        """The recorded inputs of call site ``i`` of ``act``, 1-D float32 on the CPU."""
        kept: Optional[list] = self._records.get(id(act))
        if kept is None or not kept[i]:
            raise RuntimeError(f"call site {i} of {act.extra_repr()} recorded no inputs; run the model inside the monitor")
        return torch.cat(kept[i])


class ChangeMonitor:
    """Records, per call site, a sample of |change| of the exact activation between consecutive
    calls of one run, and the mean square of the activation itself (the model runs with its
    original activations inside :func:`spiking_ddim.sites.original_activations`).
    :meth:`new_run` between runs."""

    def __init__(self, model: nn.Module, limit: int = RECORD_LIMIT, seed: int = 0):
        self.model, self.limit = model, limit
        self._rng = torch.Generator().manual_seed(seed)
        self._last: dict[tuple[int, int], torch.Tensor] = {}
        self._kept: dict[tuple[int, int], list[torch.Tensor]] = {}
        self._squares: dict[tuple[int, int], tuple[float, int]] = {}  # sum of squares, elements
        self._handles: list = []

    def __enter__(self) -> "ChangeMonitor":
        for _, act in fs_activations(self.model):
            self._handles.append(act.register_forward_hook(self._record))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._last.clear()

    def new_run(self) -> None:
        self._last.clear()

    def _record(self, act: FSActivation, _args: tuple, output: torch.Tensor) -> None:
        key = (id(act), act.site_index())
        value = output.detach().float()
        before = self._last.get(key)
        self._last[key] = value
        total, count = self._squares.get(key, (0.0, 0))
        self._squares[key] = (total + float(value.double().pow(2).sum()), count + value.numel())
        if before is None or before.shape != value.shape:
            return
        change = (value - before).abs().reshape(-1)
        self._kept[key] = keep_sample(self._kept.get(key, []), change, max(self.limit // 32, 8), self.limit, self._rng)

    def samples(self, act: FSActivation, i: int) -> torch.Tensor:
        """Recorded |change| of call site ``i`` of ``act``: 1-D float32 on the CPU."""
        kept = self._kept.get((id(act), i))
        if not kept:
            raise RuntimeError(f"call site {i} of {act.extra_repr()} saw no consecutive calls; record a sampling run "
                               "of at least 2 steps")
        return torch.cat(kept)

    def mean_square(self, act: FSActivation, i: int) -> float:
        """Mean square of the activation at call site ``i`` of ``act`` over every recorded call."""
        total, count = self._squares.get((id(act), i), (0.0, 0))
        if not count:
            raise RuntimeError(f"call site {i} of {act.extra_repr()} was never called")
        return total / count
