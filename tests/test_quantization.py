"""Quantised ANN baselines (spiking_ddim.quantization): the precision's grammar, per-channel
weight levels, per-tensor input scales calibrated by sampling, and a quantised layer's
output by hand."""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_ddpm
from torch.nn import functional as F

from spiking_ddim import convert_pipeline, generate
from spiking_ddim.errors import SettingError
from spiking_ddim.pipelines import SamplingOptions
from spiking_ddim.quantization import Precision, quantize_pipeline

OPTIONS = SamplingOptions(steps=3)


def test_a_precision_is_written_w_bits_a_bits_and_bad_widths_are_named():
    assert Precision.parse("w8a16") == Precision(8, 16) and Precision(4, 8).label == "W4A8"
    assert Precision.parse("W8A32").activation_bits == 32  # float activations
    with pytest.raises(SettingError, match="a precision is written W<bits>A<bits>") as e:
        Precision.parse("int8")
    assert e.value.name == "precision"
    for bad, name in (((1, 8), "weight_bits"), ((8, 20), "activation_bits"), ((32, 8), "weight_bits")):
        with pytest.raises(SettingError) as e:
            Precision(*bad)
        assert e.value.name == name


def _layers(pipe):
    import brevitas.nn as qnn

    return [m for m in pipe.unet.modules() if isinstance(m, (qnn.QuantConv2d, qnn.QuantLinear))]


def test_weights_take_per_channel_levels_and_a_layer_computes_on_its_quantised_input_by_hand():
    pipe = tiny_ddpm()
    convs = sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in pipe.unet.modules())
    quantize_pipeline(pipe, Precision(4, 8), OPTIONS, images=2)
    layers = _layers(pipe)
    assert len(layers) == convs and pipe.unet.quantization["precision"] == "W4A8"
    conv = next(m for m in layers if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    q = conv.quant_weight()
    levels = q.value / q.scale
    assert q.scale.shape == (conv.out_channels, 1, 1, 1)  # one scale per output channel
    assert torch.allclose(levels, levels.round(), atol=1e-4) and levels.abs().max() <= 7 + 1e-4
    per_channel_top = levels.abs().flatten(1).max(1).values
    assert torch.allclose(per_channel_top, torch.full_like(per_channel_top, 7.0), atol=1e-4)  # each channel's largest -> 7
    # the layer's output is the convolution of its 8-bit-quantised input with its 4-bit weights
    x = torch.randn(2, conv.in_channels, 6, 6, generator=torch.Generator().manual_seed(0))
    scale = conv.input_quant.scale()
    assert scale is not None and float(scale) > 0  # calibrated by sampling
    xq = torch.clamp(torch.round(x / scale), -128, 127) * scale  # 8-bit, signed, full range
    by_hand = F.conv2d(xq, q.value, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    with torch.no_grad():
        assert torch.allclose(conv(x), by_hand, atol=1e-5)


def test_wider_weights_stay_closer_to_the_original_and_a_spiking_unet_is_refused():
    plain = tiny_ddpm()
    reference = generate(plain, range(2), OPTIONS)
    error = {}
    for bits in (3, 8):
        pipe = quantize_pipeline(tiny_ddpm(), Precision(bits, 32), OPTIONS)
        error[bits] = float((generate(pipe, range(2), OPTIONS) - reference).abs().mean())
    assert 0 < error[8] < error[3]
    fs = tiny_ddpm()
    convert_pipeline(fs, K=4, method="ours")
    with pytest.raises(ValueError, match="takes the original"):
        quantize_pipeline(fs, Precision(8, 8), OPTIONS)


def test_each_input_range_is_the_widest_input_over_every_calibration_call():
    from fs_neurons.utils.seeds import stream

    plain = tiny_ddpm()
    layers = {n: m for n, m in plain.unet.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    widest = dict.fromkeys(layers, 0.0)
    hooks = [m.register_forward_pre_hook(lambda _m, a, n=n: widest.__setitem__(n, max(widest[n], float(a[0].abs().max()))))
             for n, m in layers.items()]
    generate(plain, range(2), OPTIONS, seed=stream("calibration-inputs", 0))  # the calibration's images, every step
    for h in hooks:
        h.remove()
    pipe = quantize_pipeline(tiny_ddpm(), Precision(16, 8), OPTIONS, images=2)
    quantised = dict(pipe.unet.named_modules())
    for name, top in widest.items():
        threshold = float(quantised[name].input_quant.scale()) * 128  # 8-bit: the range is 128 steps
        assert threshold == pytest.approx(top, rel=1e-3), name


def test_a_layer_named_in_the_precision_keeps_its_own_weight_width():
    assert Precision.parse("W8A8:conv_out=16") == Precision(8, 8, (("conv_out", 16),))
    assert Precision(8, 8, (("conv_out", 16),)).label == "W8A8:conv_out=16"
    pipe = tiny_ddpm()
    quantize_pipeline(pipe, Precision.parse("W4A8:conv_out=8"), OPTIONS, images=1)
    top = {name: float((m.quant_weight().value / m.quant_weight().scale).abs().max())
           for name, m in pipe.unet.named_modules() if m in _layers(pipe)}
    assert top.pop("conv_out") == pytest.approx(127) and all(v == pytest.approx(7) for v in top.values())
    with pytest.raises(SettingError, match="'conv_outt' is not a conv / linear layer"):
        quantize_pipeline(tiny_ddpm(), Precision.parse("W8A8:conv_outt=16"), OPTIONS, images=1)


def test_the_plane_says_which_points_dominate_the_w8a8_ann_and_which_an_ann_dominates():
    from spiking_ddim.benchmarks.plane import dominance

    def ann(precision, psnr, uj):
        return {"precision": precision, "psnr": psnr, **{f"joules_per_image_{k}": uj * 1e-6 for k in ("ops",)}}

    data = {"ann": [ann("fp32", None, 100), ann("W8A8", 37.0, 10), ann("W8A16", 43.0, 15)],
            "points": [{"label": "cheap and good", "psnr": 40.0, "joules_per_image_ops": 8e-6},
                       {"label": "dear", "psnr": 41.0, "joules_per_image_ops": 20e-6},  # W8A16 is better and cheaper
                       {"label": "poor", "psnr": 30.0, "joules_per_image_ops": 5e-6}]}  # nothing is cheaper
    text = dominance(data, "ops")
    assert text.startswith("'cheap and good' dominates the W8A8 ANN")
    assert "; 'dear' is dominated by an ANN of the family" in text


@pytest.mark.parametrize("model", ["embedded:digits", "embedded:photos"])
def test_the_plane_prints_commands_that_sample_the_model_it_measured(model):
    import re
    import shlex

    from spiking_ddim.benchmarks.plane import KEYS, markdown
    from spiking_ddim.cli import build_parser
    from spiking_ddim.embedded import embedded_model

    prices = {f"joules_per_image_{k}": 1e-5 for k in KEYS}
    data = {"model": embedded_model(model).name, "num_images": 4, "steps": 2, "seed": 0, "original_kid": 1.0,
            "ann": [{"precision": "fp32", "psnr": None, "kid_mean": 1.0, **prices}],
            "points": [{"label": "delta K=8", "flags": "--K 8 --coding delta", "psnr": 40.0, "kid_mean": 1.0,
                        "spikes_per_neuron": 1.0, **prices, **{f"break_even_{k}": 2.0 for k in KEYS}}]}
    commands = re.findall(r"`spiking-ddim (sample[^`]*)`", markdown(data))
    assert len(commands) == 1
    args = build_parser().parse_args(shlex.split(commands[0]))
    assert embedded_model(args.model or "embedded:digits") == embedded_model(model) and args.K == 8
