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
activations): every ``nn.Conv2d`` and ``nn.Linear`` of the UNet takes weights quantised
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
    """Bits of the weights and of the layer inputs (``FLOAT``: float activations)."""

    weight_bits: int
    activation_bits: int

    def __post_init__(self) -> None:
        for name, value, allowed in (("weight_bits", self.weight_bits, BITS),
                                     ("activation_bits", self.activation_bits, [*BITS, FLOAT])):
            if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
                raise SettingError(name, f"{name} must be an integer from 2 to 16"
                                         f"{' (or 32: float)' if name == 'activation_bits' else ''}, got {value!r}")

    @classmethod
    def parse(cls, text: str) -> "Precision":
        """``W8A8``, ``W4A8``, ``W8A16``, ``W8A32`` (float activations): :class:`SettingError` otherwise."""
        found = re.fullmatch(r"W(\d+)A(\d+)", text.strip().upper())
        if not found:
            raise SettingError("precision", f"a precision is written W<bits>A<bits> (say W8A8), got {text!r}")
        return cls(int(found[1]), int(found[2]))

    @property
    def label(self) -> str:
        return f"W{self.weight_bits}A{self.activation_bits}"


def _layer_map(precision: Precision) -> dict:
    import brevitas.nn as qnn
    from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerChannelFloat

    kwargs = {"weight_quant": Int8WeightPerChannelFloat.let(bit_width=precision.weight_bits),
              "input_quant": None if precision.activation_bits == FLOAT else
              Int8ActPerTensorFloat.let(bit_width=precision.activation_bits), "return_quant_tensor": False}
    return {nn.Conv2d: (qnn.QuantConv2d, kwargs), nn.Linear: (qnn.QuantLinear, kwargs)}


def quantize_pipeline(pipe: DiffusionPipeline, precision: Precision, options: SamplingOptions, images: int = 16,
                      seed: int = 0, batch_size: int = 8, progress: Progress = None) -> DiffusionPipeline:
    """Replace ``pipe``'s UNet in place by its quantised copy at ``precision`` (see the module
    docstring), its activation scales calibrated on ``images`` images of ``options``' runs
    (``calibration-inputs`` stream of ``seed``); ``progress("calibrate scales", done, total)``
    counts the denoiser calls. Returns ``pipe``. ``ValueError`` for a converted (spiking) UNet."""
    import torch
    from brevitas.graph.calibrate import calibration_mode
    from brevitas.graph.quantize import layerwise_quantize

    if hasattr(pipe.unet, "fs_config"):
        raise ValueError("quantize_pipeline takes the original (ANN) pipeline; this UNet is converted to FS neurons")
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise SettingError("images", f"the calibration images must be >= 1, got {images!r}")
    unet = layerwise_quantize(pipe.unet, compute_layer_map=_layer_map(precision)).eval()
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
