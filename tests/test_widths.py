"""Accumulator and state widths (spiking_ddim.widths): ranges in LSBs by hand, the narrowest
width chosen, overflow counted and reported, widths recorded, saved, loaded and checked."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import tiny_ddpm
from torch import nn

from fs_neurons import FSNeuron
from spiking_ddim import generate, load_pipeline, save_pipeline
from spiking_ddim.energy import CostMeter
from spiking_ddim.energy.matched import Widths
from spiking_ddim.errors import SettingError
from spiking_ddim.fs_activation import FSActivation, SiteSignature
from spiking_ddim.pipelines import SamplingOptions
from spiking_ddim.recipe import ConversionSpec, prepare, record_widths
from spiking_ddim.record import FSConfig, RecordError
from spiking_ddim.synapses import quantize_weights
from spiking_ddim.widths import check_widths, choose_widths, narrowest

OPTIONS = SamplingOptions(steps=3)


def fine_site_model() -> nn.Sequential:
    """A site whose finest level is 0.01 (its outputs 0 .. 2.01) feeding an 8-bit linear layer."""
    neuron = FSNeuron.from_params([2.0, 0.01], [2.0, 0.01], [1.0, 0.005])
    layer = nn.Linear(6, 5)
    quantize_weights(layer, 8)
    return nn.Sequential(FSActivation("swish", [neuron], [SiteSignature(2, 6)]), layer).eval()


def test_ranges_are_counted_in_lsbs_and_values_beyond_a_recorded_width_are_overflows():
    model = fine_site_model()
    x = 200 * torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sent = model[0](x)
        out = model[1](sent)
        # by hand: |output - bias| over (weight scale of its channel x the site's finest level, 0.01)
        lsbs = (out - model[1].bias).abs() / (model[1].weight_scale * 0.01)
    state = torch.maximum(x.abs(), sent.abs()) / 0.01  # the membrane starts at the input; the output
    with CostMeter(model) as meter:  # a plain meter measures no ranges
        model(x)
    assert meter.report().layers[0].accumulator_range == 0 and meter.report().sites[0].state_range == 0
    with CostMeter(model, ranges=True) as meter:  # no widths recorded: ranges measured, nothing counted
        model(x)
    report = meter.report()
    assert report.layers[0].accumulator_range == pytest.approx(float(lsbs.max()), rel=1e-5)
    assert report.sites[0].state_range == pytest.approx(float(state.max()), rel=1e-5)
    assert report.layers[0].overflows == 0 and report.energy(4).widths is None
    for lsb in (lsbs, state):  # some, not all, beyond 16 bits
        assert float(lsb.max()) > 2 ** 15 > float(lsb.min())
    widths = {"accumulators": {"1": 16}, "states": {"0[0]": 16}}
    with CostMeter(model, widths=widths) as meter:
        model(x)
    report = meter.report()
    assert report.layers[0].overflows == int((lsbs > 2 ** 15 - 1).sum())
    assert report.sites[0].overflows == int((state > 2 ** 15 - 1).sum()) > 0
    energy = report.energy(4)
    assert energy.overflows == {"accumulators": report.layers[0].overflows, "states": report.sites[0].overflows}
    assert f"{report.layers[0].overflows} accumulator and {report.sites[0].overflows} state values beyond" \
        in energy.summary()
    assert choose_widths(report) == {"accumulators": {"1": 32}, "states": {"0[0]": 32}}


def test_the_narrowest_width_holds_the_range():
    assert narrowest(0) == 16 and narrowest(32767) == 16 and narrowest(32767.5) == 32 and narrowest(2.0 ** 40) == 32


def test_narrow_widths_are_recorded_checked_while_sampling_saved_and_loaded(tmp_path):
    pipe = tiny_ddpm()
    prepare(pipe, ConversionSpec(K=4, method="ours", weight_bits=8, narrow_widths=True, calibration_images=2), OPTIONS)
    record = pipe.unet.fs_config
    spike_fed = {name for name, m in pipe.unet.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert record.widths["accumulators"] and set(record.widths["accumulators"]) <= spike_fed
    assert len(record.widths["states"]) == record.num_sites
    assert record.events("widths")[0]["image_seeds"] == [[10000, 10002]] and "accumulators" in record.summary()
    save_pipeline(pipe, tmp_path / "p")
    loaded = load_pipeline(tmp_path / "p", scheduler="pipeline")
    assert loaded.unet.fs_config.widths == record.widths
    with pytest.raises(ValueError, match="width measurement"):  # the measured images are held out of scoring
        from spiking_ddim.held_out import check_pipeline_held_out
        check_pipeline_held_out(loaded, 10000, 1)
    from spiking_ddim import measure_cost
    with measure_cost(loaded) as meter:  # the recorded widths are checked
        generate(loaded, range(2), OPTIONS)
    report = meter.report()
    assert report.widths == record.widths
    priced, plain = report.energy(2).matched["lemaire"], report.energy(2, widths=Widths()).matched["lemaire"]
    assert priced["snn_breakdown"]["state"] < plain["snn_breakdown"]["state"]  # 16-bit state is cheaper to move
    data = json.loads((tmp_path / "p" / "unet" / "spiking_config.json").read_text())
    data["widths"]["states"][next(iter(data["widths"]["states"]))] = 12
    with pytest.raises(RecordError, match=r"widths.states\[.*\] must be one of \(16, 32\) bits, got 12"):
        FSConfig.from_json(data)


def test_narrow_widths_need_integer_synapses():
    with pytest.raises(SettingError, match="narrow widths need weight_bits"):
        ConversionSpec(narrow_widths=True)
    pipe = tiny_ddpm()
    prepare(pipe, ConversionSpec(K=4, method="ours"), OPTIONS)
    with pytest.raises(ValueError, match="convert with weight_bits"):
        record_widths(pipe, OPTIONS, images=1)
    with pytest.raises(ValueError, match="widths must be null or an object"):
        check_widths({"accumulators": {}})


def test_narrow_widths_without_weight_bits_is_a_one_line_error(cli, tmp_path):
    code, _, err = cli("convert", "--narrow-widths", "--out", tmp_path / "x")
    assert code != 0 and "--narrow-widths: accumulator widths are counted in the weights' integer steps" in err
    assert "Traceback" not in err
