"""Low-bit synapses (spiking_ddim.synapses): per-channel levels, the scales kept and saved,
a saved model loading bit for bit, and a layer's accumulates by hand."""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_ddpm
from torch import nn

from spiking_ddim import convert_pipeline, generate, load_pipeline, measure_cost, save_pipeline
from spiking_ddim.errors import SettingError
from spiking_ddim.pipelines import SamplingOptions
from spiking_ddim.synapses import quantize_weights, weight_levels

OPTIONS = SamplingOptions(steps=3)


def test_weights_become_integers_times_per_channel_scales():
    layer = nn.Conv2d(3, 5, 3)
    with torch.no_grad():
        layer.weight[2] = 0.0  # a channel of zeros keeps scale 1 and stays zero
    before = layer.weight.detach().clone()
    assert quantize_weights(layer, 8) == 1
    levels = weight_levels(layer)
    assert layer.weight_scale.shape == (5,)
    assert torch.equal(levels * layer.weight_scale.view(-1, 1, 1, 1), layer.weight.detach())
    assert levels.abs().max() == 127 and torch.equal(levels.abs().flatten(1).amax(1)[[0, 1, 3, 4]], torch.full((4,), 127.0))
    assert layer.weight_scale[2] == 1 and not layer.weight[2].any()
    error = (layer.weight.detach() - before).abs()
    assert (error <= layer.weight_scale.view(-1, 1, 1, 1) / 2 + 1e-7).all()  # rounding, at most half a step
    for bad in (1, 17, 8.0, True):
        with pytest.raises(SettingError, match="weight_bits must be an integer from 2 to 16"):
            quantize_weights(nn.Linear(2, 2), bad)


def test_a_low_bit_conversion_records_its_width_and_saves_and_loads_bit_for_bit(tmp_path):
    pipe = tiny_ddpm()
    convert_pipeline(pipe, K=4, method="ours", weight_bits=8)
    record = pipe.unet.fs_config
    assert record.weight_bits == 8 and "8-bit synapses" in record.summary() and record.label.endswith("8-bit synapses")
    layers = [m for m in pipe.unet.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers and all(weight_levels(m).abs().max() <= 127 for m in layers)
    images = generate(pipe, range(2), OPTIONS)
    save_pipeline(pipe, tmp_path / "w8")
    loaded = load_pipeline(tmp_path / "w8", scheduler="pipeline")
    for (name, a), (_, b) in zip(pipe.unet.state_dict().items(), loaded.unet.state_dict().items()):
        assert torch.equal(a, b), name
    assert loaded.unet.fs_config.weight_bits == 8
    assert torch.equal(generate(loaded, range(2), OPTIONS), images)
    plain = tiny_ddpm()
    convert_pipeline(plain, K=4, method="ours")
    assert plain.unet.fs_config.weight_bits is None and not any(hasattr(m, "weight_scale") for m in plain.unet.modules())


def test_an_8_bit_layer_fed_by_spikes_counts_one_accumulate_per_spike_and_output_by_hand():
    from fs_neurons import FSNeuron
    from spiking_ddim.fs_activation import FSActivation, SiteSignature

    act = FSActivation("swish", [FSNeuron.from_bank("swish", K=4, method="ours")], [SiteSignature(2, 6)])
    layer = nn.Linear(6, 5)
    quantize_weights(layer, 8)
    model = nn.Sequential(act, layer).eval()
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    counts = []
    act.neurons[0].register_spike_hook(lambda _n, _out, count: counts.append(count))
    with measure_cost(model) as meter:
        model(x)
    report = meter.report()
    assert report.layers[-1].snn_acs == float(counts[0].sum()) * 5  # one AC per spike per output, 8-bit or not


def test_weight_bits_is_refused_with_a_clear_error(cli, tmp_path):
    code, _, err = cli("convert", "--weight-bits", "1", "--out", tmp_path / "x")
    assert code != 0 and "--weight-bits: weight_bits must be an integer from 2 to 16" in err and "Traceback" not in err


def test_sample_with_8_bit_synapses_records_them_in_metrics_json(cli, tmp_path):
    import json

    code, _, err = cli("sample", "--K", "4", "--weight-bits", "8", "--num-images", "2", "--batch-size", "2",
                       "--steps", "2", "--real", "none", "--out", tmp_path / "s")
    assert code == 0, err
    metrics = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert metrics["weight_bits"] == 8 and metrics["history"][0]["weight_bits"] == 8
    assert metrics["history"][0]["quantized_layers"] > 0


def test_weight_bits_on_an_already_converted_model_is_a_one_line_error(cli, tmp_path):
    pipe = tiny_ddpm()
    convert_pipeline(pipe, K=4, method="ours")
    save_pipeline(pipe, tmp_path / "fs")
    code, _, err = cli("sample", "--model", tmp_path / "fs", "--weight-bits", "8", "--num-images", "1", "--steps", "2",
                       "--real", "none", "--reference", "self", "--out", tmp_path / "s")
    assert code != 0 and "already converted; --weight-bits apply to plain pipelines" in err and "Traceback" not in err


def test_a_layer_kept_wider_is_quantised_to_its_own_width_recorded_saved_and_loaded(tmp_path):
    from spiking_ddim.synapses import layer_weight_bits

    pipe = tiny_ddpm()
    convert_pipeline(pipe, K=4, method="ours", weight_bits=8, layer_bits={"conv_out": 16})
    record = pipe.unet.fs_config
    assert layer_weight_bits(pipe.unet.conv_out) == 16 and layer_weight_bits(pipe.unet.conv_in) == 8
    assert record.layer_bits == {"conv_out": 16} and "conv_out 16-bit" in record.summary()
    save_pipeline(pipe, tmp_path / "p")
    loaded = load_pipeline(tmp_path / "p", scheduler="pipeline")
    assert loaded.unet.fs_config.layer_bits == {"conv_out": 16}
    assert torch.equal(loaded.unet.conv_out.weight, pipe.unet.conv_out.weight)
    with pytest.raises(SettingError, match="'conv_outt' is not a conv / linear layer"):
        convert_pipeline(tiny_ddpm(), K=4, method="ours", weight_bits=8, layer_bits={"conv_outt": 16})
    with pytest.raises(SettingError, match="give weight_bits too"):
        convert_pipeline(tiny_ddpm(), K=4, method="ours", layer_bits={"conv_out": 16})
