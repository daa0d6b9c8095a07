"""Integer widths of accumulators and neuron state: measured, chosen, recorded, checked.

In an SNN with integer (b-bit) synapses, a spike-fed layer's accumulator adds, per spike,
its weight's integer level times the spike's level ``d[t]``. Its unit (LSB) is one
accumulate of the smallest step of each: the channel's weight scale ``s_c`` times the
site's finest level ``u`` (its neurons' smallest nonzero ``|d|``). Its range is the largest
``|output - bias|`` the layer computes over sampling (for a delta-fed layer the kept,
accumulated output). A site's state (a membrane potential starting at the input, a delta
site's kept value) counts in units of ``u``; its range is the largest ``|input|`` or
``|output|`` (for a delta site the sum of both: its membrane starts at the change).

:func:`choose_widths` picks per layer and site the narrowest of :data:`WIDTHS` whose signed
range ``2^(b-1) - 1`` LSBs holds the measured range (32 where even that does not, and
those values are overflows). The choice is recorded (``FSConfig.widths``); while sampling,
:class:`~spiking_ddim.energy.CostMeter` counts every value beyond its recorded width
(``overflows`` per layer and site), and the matched-precision estimates price accumulator
and state accesses at these widths. The simulation itself computes in float32: rounding to
the LSB is not simulated, only ranges are checked.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import torch
from torch import nn

WIDTHS = (16, 32)  # integer widths an accumulator or a state may take


def top(bits: int) -> int:
    """The largest magnitude a signed ``bits``-bit integer holds, in LSBs."""
    return 2 ** (bits - 1) - 1


def narrowest(range_lsbs: float) -> int:
    """The narrowest width of :data:`WIDTHS` holding ``range_lsbs`` (the widest if none does)."""
    return next((b for b in WIDTHS if range_lsbs <= top(b)), WIDTHS[-1])


def finest_level(neuron: nn.Module) -> float:
    """The smallest nonzero ``|d|`` of an FS neuron (inf when it sends nothing)."""
    d = neuron.d.detach().abs()
    d = d[d > 0]
    return float(d.min()) if d.numel() else math.inf


def accumulator_lsbs(layer: nn.Module, out: torch.Tensor, lsb: float) -> torch.Tensor:
    """``|out - bias|`` of a conv (channels on dim 1) or linear (last dim) layer with integer
    weights, in units of its channel's weight scale times ``lsb``; ``out``'s shape."""
    dim = 1 if not isinstance(layer, nn.Linear) else out.ndim - 1
    shape = [1] * out.ndim
    shape[dim] = -1
    acc = out.detach() if layer.bias is None else out.detach() - layer.bias.detach().view(shape)
    return acc.abs() / (layer.weight_scale.view(shape) * lsb)


def choose_widths(report: Any) -> dict[str, dict[str, int]]:
    """``{"accumulators": {layer: bits}, "states": {site: bits}}`` from a
    :class:`~spiking_ddim.energy.CostReport` of a run: every spike-fed layer with integer
    weights and every site with a finite unit, at the narrowest width holding its range."""
    return {"accumulators": {lay.name: narrowest(lay.accumulator_range) for lay in report.layers
                             if lay.spike_calls and lay.weight_bits < 32},
            "states": {s.name: narrowest(s.state_range) for s in report.sites if math.isfinite(s.lsb)}}


def check_widths(widths: Optional[Mapping]) -> Optional[dict[str, dict[str, int]]]:
    """``widths`` as recorded (None, or accumulators and states, each name -> a width of
    :data:`WIDTHS`); ``ValueError`` naming what is wrong."""
    if widths is None:
        return None
    if not isinstance(widths, Mapping) or set(widths) != {"accumulators", "states"}:
        raise ValueError(f"widths must be null or an object with 'accumulators' and 'states', got {widths!r}")
    for part, table in widths.items():
        if not isinstance(table, Mapping):
            raise ValueError(f"widths.{part} must be an object of name -> bits, got {table!r}")
        for name, bits in table.items():
            if bits not in WIDTHS or isinstance(bits, bool):
                raise ValueError(f"widths.{part}[{name!r}] must be one of {WIDTHS} bits, got {bits!r}")
    return {part: dict(table) for part, table in widths.items()}
