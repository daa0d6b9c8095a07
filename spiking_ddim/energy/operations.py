"""Operation counts of one call: dense MACs of a conv / linear layer, the accumulates a
spike-count map costs in it, and the MACs of attention matmuls (seen through a torch
function mode). Formulas only; the meter (:mod:`spiking_ddim.energy.meter`) adds them up."""

from __future__ import annotations

import functools
import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode


def layer_macs(layer: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    """Dense MACs of one call of a conv, transposed conv or linear layer (bias not counted)."""
    if isinstance(layer, nn.Linear):
        return out.numel() * layer.in_features
    taps = math.prod(layer.kernel_size)
    if layer.transposed:
        return x.numel() * (layer.out_channels // layer.groups) * taps
    return out.numel() * (layer.in_channels // layer.groups) * taps


def layer_acs(layer: nn.Module, spike_count: torch.Tensor) -> torch.Tensor:
    """Accumulates of a conv, transposed conv or linear layer whose input spikes
    ``spike_count`` times per element (the input's shape, or that shape without its first
    dim when summed over it): the layer with all weights 1 and no bias applied to the count
    map, summed. A float64 scalar on the count's device."""
    if isinstance(layer, nn.Linear):
        return spike_count.sum(dtype=torch.float64) * layer.out_features
    spatial = tuple(spike_count.shape[-len(layer.kernel_size):])
    per_position = spike_count.sum(dim=tuple(range(spike_count.ndim - len(spatial))), dtype=torch.float64)
    fan = _fanout(type(layer), spatial, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                  layer.padding_mode, layer.output_padding, str(spike_count.device))
    return (per_position * fan).sum() * (layer.out_channels // layer.groups)


@functools.lru_cache(maxsize=512)
def _fanout(kind: type, spatial: tuple, kernel_size, stride, padding, dilation, padding_mode, output_padding,
            device: str) -> torch.Tensor:
    """Per input position: the (output position, kernel tap) pairs of a one-channel conv
    of this geometry that read it, i.e. d(sum of outputs)/d(input) with unit weights."""
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "bias": False, "padding_mode": padding_mode}
    if issubclass(kind, nn.modules.conv._ConvTransposeNd):
        kwargs["output_padding"] = output_padding
    probe = kind(1, 1, kernel_size, **kwargs).to(torch.float64)
    with torch.inference_mode(False), torch.enable_grad():
        nn.init.ones_(probe.weight)
        x = torch.zeros(1, 1, *spatial, dtype=torch.float64, requires_grad=True)
        probe(x).sum().backward()
    return x.grad[0, 0].to(device)


def _matmul_macs(args: tuple, kwargs: dict, out: torch.Tensor) -> int:
    return out.numel() * args[0].shape[-1]


def _baddbmm_macs(args: tuple, kwargs: dict, out: torch.Tensor) -> int:
    return out.numel() * args[1].shape[-1]


def _sdpa_macs(args: tuple, kwargs: dict, out: torch.Tensor) -> int:
    q = args[0] if args else kwargs["query"]
    k = args[1] if len(args) > 1 else kwargs["key"]
    rows = out.numel() // out.shape[-1]  # batch x heads x query length
    return rows * k.shape[-2] * (q.shape[-1] + out.shape[-1])  # q k^T, then (scores) v


MATMUL_MACS: dict[Callable, Callable[[tuple, dict, torch.Tensor], int]] = {
    torch.matmul: _matmul_macs, torch.Tensor.matmul: _matmul_macs, torch.bmm: _matmul_macs,
    torch.Tensor.bmm: _matmul_macs, torch.baddbmm: _baddbmm_macs, torch.Tensor.baddbmm: _baddbmm_macs,
    F.scaled_dot_product_attention: _sdpa_macs,
}


class MatmulSpy(TorchFunctionMode):
    """Reports the MACs of every matmul-like call made while it is active."""

    def __init__(self, on_matmul: Callable[[int, int, torch.Tensor], None]):
        super().__init__()
        self.on_matmul = on_matmul

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = MATMUL_MACS.get(func)
        if count is not None:
            operands = sum(t.numel() for t in (*args, *kwargs.values())[:3] if isinstance(t, torch.Tensor))
            self.on_matmul(count(args, kwargs, out), operands, out)
        return out
