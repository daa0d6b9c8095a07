"""Quantised ANN baselines: the original UNet with its conv / linear layers fake-quantised.

The fair baseline of a spiking model is not only the 32-bit network but an integer one of
the same weights. :func:`quantize_pipeline` makes it with brevitas (AMD / Xilinx), chosen
because it fake-quantises on the CPU at any bit width (8-, 4- and 16-bit alike), scales
weights per output channel and activations per tensor from calibration statistics
(``calibration_mode``), and replaces layers in place (``layerwise_quantize``) without
tracing the diffusers UNet; torchao aims at GPU kernels with dynamic activation scales,
optimum-quanto has no 16-bit integer activations and scales 4-bit weights per group, and
nncf traces the model.

Scheme (:class:`Precision`, written ``W8A8``: weight bits, activation bits; ``A32``: float
activations; ``W8A8:conv_out=16``: a layer's weights at their own width): every ``nn.Conv2d`` and ``nn.Linear`` of the UNet takes weights quantised
symmetrically per output channel to ``weight_bits`` (levels -(2^(b-1) - 1) .. 2^(b-1) - 1,
scale from the channel's largest magnitude) and its input quantised symmetrically per
tensor to ``activation_bits``, its range the largest magnitude the layer's input takes over
every call while the quantised pipeline samples ``images`` images from the
``calibration-inputs`` seed stream (all timesteps pooled, as calibration records site
inputs; the seeds calibration draws, never scored). brevitas' own calibration averages
per-call statistics instead, which clips the calls whose range is wider than the average:
across a DDIM trajectory the ranges move with the timestep, and on 32 images W8A8 gave
27.95 dB that way against 41.34 dB with pooled maxima. Attention's score matmuls, normalisation,
Swish and residual additions stay in float, as they do in the spiking models. The
quantised UNet is a brevitas model (``QuantConv2d`` / ``QuantLinear``, subclasses of the
torch layers, so the cost meter counts their MACs); it is measured, not saved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from diffusers import DiffusionPipeline
from torch import nn

from fs_neurons.utils.seeds import stream

from .errors import SettingError
from .pipelines import Progress, SamplingOptions, counting_denoiser_calls, generate
from .synapses import BITS

FLOAT = 32  # activation "bits" of a float activation (not quantised)


@dataclass(frozen=True)
class Precision:
    """Bits of the weights and of the layer inputs (``FLOAT``: float activations), and
    (layer, weight bits) pairs of layers at their own width."""

    weight_bits: int
    activation_bits: int
    layer_bits: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        for name, value, allowed in (("weight_bits", self.weight_bits, BITS),
                                     ("activation_bits", self.activation_bits, [*BITS, FLOAT])):
            if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
                raise SettingError(name, f"{name} must be an integer from 2 to 16"
                                         f"{' (or 32: float)' if name == 'activation_bits' else ''}, got {value!r}")
        for layer, bits in self.layer_bits:
            if isinstance(bits, bool) or not isinstance(bits, int) or bits not in BITS:
                raise SettingError("layer_bits", f"{layer}: weight bits must be an integer from 2 to 16, got {bits!r}")

    @classmethod
    def parse(cls, text: str) -> "Precision":
        """``W8A8``, ``W4A8``, ``W8A16``, ``W8A32`` (float activations), each optionally followed
        by ``:LAYER=BITS`` per layer at its own weight width: :class:`SettingError` otherwise."""
        head, *layers = text.strip().split(":")
        found = re.fullmatch(r"W(\d+)A(\d+)", head.upper())
        pairs = [layer.partition("=") for layer in layers]
        if not found or not all(sep and name and bits.isdigit() for name, sep, bits in pairs):
            raise SettingError("precision", f"a precision is written W<bits>A<bits>[:LAYER=BITS...] (say W8A8 or "
                                            f"W8A8:conv_out=16), got {text!r}")
        return cls(int(found[1]), int(found[2]), tuple((name, int(bits)) for name, _, bits in pairs))

    @property
    def label(self) -> str:
        return f"W{self.weight_bits}A{self.activation_bits}" + "".join(f":{n}={b}" for n, b in self.layer_bits)


def _layer_map(weight_bits: int, activation_bits: int) -> dict:
    import brevitas.nn as qnn
    from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerChannelFloat

    kwargs = {"weight_quant": Int8WeightPerChannelFloat.let(bit_width=weight_bits),
              "input_quant": None if activation_bits == FLOAT else
              Int8ActPerTensorFloat.let(bit_width=activation_bits), "return_quant_tensor": False}
    return {nn.Conv2d: (qnn.QuantConv2d, kwargs), nn.Linear: (qnn.QuantLinear, kwargs)}


def _quantize_layers(unet: nn.Module, precision: Precision) -> nn.Module:
    """``unet`` with brevitas layers: the layers ``precision.layer_bits`` names at their widths, the rest at its own."""
    from brevitas.graph.quantize import layerwise_quantize

    names = {name for name, m in unet.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    exceptions = dict(precision.layer_bits)
    unknown = sorted(set(exceptions) - names)
    if unknown:
        raise SettingError("layer_bits", f"{unknown[0]!r} is not a conv / linear layer of the UNet (say conv_out)")
    unet = layerwise_quantize(unet, compute_layer_map=_layer_map(precision.weight_bits, precision.activation_bits),
                              name_blacklist=list(exceptions))
    for bits in sorted(set(exceptions.values())):  # the layers still float are the exceptions: one pass per width
        others = [name for name, b in exceptions.items() if b != bits]
        unet = layerwise_quantize(unet, compute_layer_map=_layer_map(bits, precision.activation_bits),
                                  name_blacklist=others)
    return unet


def quantize_pipeline(pipe: DiffusionPipeline, precision: Precision, options: SamplingOptions, images: int = 16,
                      seed: int = 0, batch_size: int = 8, progress: Progress = None) -> DiffusionPipeline:
    """Replace ``pipe``'s UNet in place by its quantised copy at ``precision`` (see the module
    docstring), its activation scales calibrated on ``images`` images of ``options``' runs
    (``calibration-inputs`` stream of ``seed``); ``progress("calibrate scales", done, total)``
    counts the denoiser calls. Returns ``pipe``. ``ValueError`` for a converted (spiking) UNet."""
    import torch
    from brevitas.graph.calibrate import calibration_mode

    if hasattr(pipe.unet, "fs_config"):
        raise ValueError("quantize_pipeline takes the original (ANN) pipeline; this UNet is converted to FS neurons")
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise SettingError("images", f"the calibration images must be >= 1, got {images!r}")
    unet = _quantize_layers(pipe.unet, precision).eval()
    pipe.register_modules(unet=unet)
    if precision.activation_bits != FLOAT:
        layers = [m for m in unet.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        top = {layer: torch.zeros(()) for layer in layers}

        def widest(layer, args):
            top[layer] = torch.maximum(top[layer], args[0].detach().abs().max().float().cpu())

        handles = [layer.register_forward_pre_hook(widest) for layer in layers]
        first = stream("calibration-inputs", seed)
        try:
            with torch.no_grad(), calibration_mode(unet), counting_denoiser_calls(pipe, images, batch_size, options,
                                                                                  progress, "calibrate scales"):
                for start in range(0, images, batch_size):
                    generate(pipe, range(start, min(images, start + batch_size)), options, seed=first)
        finally:
            for handle in handles:
                handle.remove()
        with torch.no_grad():
            for layer in layers:  # brevitas keeps the range (its scale times 2^(bits - 1)) as this parameter
                layer.input_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl.value.fill_(float(top[layer]))
    unet.quantization = {"precision": precision.label, "images": images, "seed": seed}
    return pipe
