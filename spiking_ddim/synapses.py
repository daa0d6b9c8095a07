"""Low-bit synapses: a converted model's conv / linear weights quantised symmetrically per
output channel (``weight_bits``, say 8; ``layer_bits`` names layers at another width, say
the output layer at 16, as quantised networks commonly keep their last layer wider).

Every weight of output channel c becomes ``s_c * q`` with q an integer in
[-(2^(b-1) - 1), 2^(b-1) - 1] and ``s_c = max |W_c| / (2^(b-1) - 1)`` (a channel of zeros keeps
scale 1). Each layer keeps its scales as the buffer ``weight_scale`` (shape
(out_channels,)), saved with the weights, so a saved model holds exactly its b-bit
integers times their scales and loads back bit for bit. Biases stay float (added once per
output). Every ``nn.Conv2d`` and ``nn.Linear`` of the model is quantised, dense layers too;
the model computes with the quantised weights everywhere (sampling, calibration, encoder
fits).
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from .errors import SettingError
from .layer_types import LAYER_TYPES

BITS = range(2, 17)  # the integer widths a weight may take


def check_weight_bits(bits) -> int:
    """``bits`` if a width :func:`quantize_weights` takes, else :class:`SettingError` (``weight_bits``)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in BITS:
        raise SettingError("weight_bits", f"weight_bits must be an integer from 2 to 16 (8: 8-bit synapses), got {bits!r}")
    return bits


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The named conv / linear layers of ``model`` that have a weight."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, LAYER_TYPES) and getattr(m, "weight", None) is not None]


def check_layer_bits(model: nn.Module, layer_bits: Mapping[str, int]) -> dict[str, int]:
    """``layer_bits`` (layer name -> bits) if every name is a conv / linear layer of ``model``
    and every width one :func:`quantize_weights` takes; :class:`SettingError` (``layer_bits``)."""
    names = {name for name, _ in _layers(model)}
    for name, bits in layer_bits.items():
        if name not in names:
            raise SettingError("layer_bits", f"{name!r} is not a conv / linear layer of the model (say conv_out)")
        try:
            check_weight_bits(bits)
        except SettingError as e:
            raise SettingError("layer_bits", f"{name}: {e}") from None
    return dict(layer_bits)


@torch.no_grad()
def quantize_weights(model: nn.Module, bits: int, layer_bits: Mapping[str, int] = {}) -> int:
    """Quantise every conv / linear weight of ``model`` in place to ``bits`` (the layers named
    in ``layer_bits`` to theirs) per output channel and keep each layer's scales as its
    ``weight_scale`` buffer; the layers quantised."""
    check_weight_bits(bits)
    check_layer_bits(model, layer_bits)
    layers = _layers(model)
    for name, layer in layers:
        top = 2 ** (layer_bits.get(name, bits) - 1) - 1
        w = layer.weight
        scale = w.detach().abs().flatten(1).amax(1).to(torch.float32) / top
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        shape = (-1,) + (1,) * (w.ndim - 1)
        levels = torch.clamp(torch.round(w.float() / scale.view(shape)), -top, top)
        w.copy_((levels * scale.view(shape)).to(w.dtype))
        layer.register_buffer("weight_scale", scale.to(w.device))
    return len(layers)


def add_scale_buffers(model: nn.Module) -> None:
    """Give every conv / linear layer an empty ``weight_scale`` buffer of its shape, for a
    saved low-bit model's state to load into."""
    for _, layer in _layers(model):
        layer.register_buffer("weight_scale", torch.ones(layer.weight.shape[0], device=layer.weight.device))


def weight_levels(layer: nn.Module) -> torch.Tensor:
    """The integer levels of a quantised layer's weights (``weight / scale``, rounded), float."""
    shape = (-1,) + (1,) * (layer.weight.ndim - 1)
    return torch.round(layer.weight.detach().float() / layer.weight_scale.view(shape))


def layer_weight_bits(layer: nn.Module) -> int:
    """The integer width of a quantised layer's weights (its largest level's bits plus a
    sign bit), or 32 for float32 weights (no ``weight_scale``)."""
    if getattr(layer, "weight_scale", None) is None:
        return 32
    return int(weight_levels(layer).abs().max()).bit_length() + 1


def check_on_grid(model: nn.Module, bits: int, layer_bits: Mapping[str, int] = {}) -> None:
    """``ValueError`` naming the first layer whose weights are not its scales times ``bits``-bit
    integers (``layer_bits``' widths for the layers it names)."""
    for name, layer in _layers(model):
        top = 2 ** (layer_bits.get(name, bits) - 1) - 1
        levels = weight_levels(layer)
        shape = (-1,) + (1,) * (layer.weight.ndim - 1)
        exact = torch.equal((levels * layer.weight_scale.view(shape)).to(layer.weight.dtype), layer.weight)
        if not exact or levels.abs().max() > top:
            raise ValueError(f"layer {name}: its weights are not {layer_bits.get(name, bits)}-bit integers times its "
                             f"scales")
