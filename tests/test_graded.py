"""Graded-change coding: one b-bit event per changed element, by hand; its layer's MACs;
its fit; a graded pipeline sampled, saved and loaded."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler
from tiny_models import tiny_unet
from torch import nn

from fs_neurons import FSNeuron
from fs_neurons.graded import GradedDeltaNeuron
from spiking_ddim import generate, load_pipeline, measure_cost, save_pipeline
from spiking_ddim.calibration.graded import dead_zone
from spiking_ddim.codings import GradedCoding
from spiking_ddim.delta import GradedEncoder, encoders
from spiking_ddim.errors import SettingError
from spiking_ddim.fs_activation import FSActivation, SiteSignature
from spiking_ddim.pipelines import SamplingOptions
from spiking_ddim.recipe import ConversionSpec, prepare


def graded(step=0.1, dead=0.25, bits=4):
    n = GradedDeltaNeuron(bits)
    n.set_params([step], [step], [dead])
    return n


def test_a_change_is_sent_as_one_rounded_clipped_value_with_error_feedback_by_hand():
    n = graded()  # step 0.1, dead zone 0.25, 4 bits: at most 7 steps (0.7) per event
    counts = []
    n.register_spike_hook(lambda _n, _out, count: counts.append(count.tolist()))
    n.start(torch.tensor([1.0]), torch.tensor([3.0]), steps=4)  # the full code: 1.0 in 3 spikes
    assert n(torch.tensor([1.04])).tolist() == [1.0] and counts[-1] == [3.0]  # its error is in the dead zone
    assert n.last_events.tolist() == [0.0] and n.updates_per_element == 2 + 4
    assert n(torch.tensor([1.0])).tolist() == [1.0] and counts[-1] == [0.0]  # no change: nothing
    assert n(torch.tensor([1.2])).tolist() == [1.0] and counts[-1] == [0.0]  # 0.2 inside the dead zone, kept...
    assert n(torch.tensor([1.26])).tolist() == pytest.approx([1.3]) and counts[-1] == [1.0]  # ...0.26 sent as 0.3
    assert n.last_events.tolist() == [1.0] and n.updates_per_element == 2
    assert n(torch.tensor([3.0])).tolist() == pytest.approx([2.0]) and counts[-1] == [1.0]  # clipped at 0.7
    assert n(torch.tensor([1.0])).tolist() == pytest.approx([1.3]) and counts[-1] == [1.0]  # -1.0: clipped at -0.7
    first = graded()
    first.register_spike_hook(lambda _n, _out, count: counts.append(count.tolist()))
    first.start(torch.tensor([1.0]), torch.tensor([3.0]), steps=4)
    assert first(torch.tensor([1.5])).tolist() == [1.5] and counts[-1] == [4.0]  # the code's error corrected at once
    assert first.last_events.tolist() == [1.0]


def test_a_graded_site_costs_one_mac_per_event_output_and_fed_the_same_input_twice_sends_nothing():
    act = FSActivation("swish", [FSNeuron.from_bank("swish", K=4, method="ours")], [SiteSignature(2, 6)])
    act.encoders = nn.ModuleList([GradedEncoder(8)])
    act.encoders[0].set_params([0.01], [0.01], [0.02])
    layer = nn.Linear(6, 5)
    model = nn.Sequential(nn.Identity(), act.eval(), layer).eval()
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    y = x + 0.5 * torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    with measure_cost(model) as meter:
        model(x)  # the run's first step: the full FS code (spikes, ACs) and its correction (events)
        first = meter.report()
        enc = act.encoders[0]
        first_events = int(enc.last_events.sum())
        before = enc.sent.clone()
        out = model(y)  # graded events: one MAC per event per output
        second = meter.report()
        model(y)  # the same input again: nothing sent
        third = meter.report()
    assert first.layers[-1].snn_acs > 0 and first.layers[-1].event_macs == first_events * 5
    events = int(((enc.sent - before) != 0).sum())
    assert events > 0 and second.spikes - first.spikes == events
    assert second.layers[-1].event_macs - first.layers[-1].event_macs == events * 5
    assert second.layers[-1].event_bits == 8
    assert second.layers[-1].snn_acs == first.layers[-1].snn_acs  # no accumulates for events
    assert third.spikes == second.spikes and third.layers[-1].event_macs == second.layers[-1].event_macs
    with torch.no_grad():
        assert torch.allclose(out, layer(enc.sent))  # downstream: the layer applied to the value sent so far
        change = enc.sent - before
        assert torch.allclose(out, layer(before) + change @ layer.weight.T, atol=1e-6)  # kept output + the events
    e = third.energy(3)
    assert e.snn_event_macs_per_image == pytest.approx((first_events + events) * 5 / 3)


def test_the_dead_zone_minimises_error_plus_price_per_event():
    a = torch.linspace(0, 1, 1001)
    threshold, events, mse = dead_zone(a, 1 / 127, 127, 0.01)
    assert threshold == pytest.approx(0.1, abs=2e-3)  # where the error of staying silent, a^2, equals the price
    assert events == pytest.approx(0.9, abs=2e-3)
    assert dead_zone(a, 1 / 127, 127, 10.0)[:2] == (1e30, 0.0)  # too dear: nothing is sent
    assert dead_zone(a, 1 / 127, 127, 0.0)[0] >= 0.5 / 127  # free: every change that rounds to a level


def graded_pipe():
    return DDIMPipeline(unet=tiny_unet(0).eval(), scheduler=DDIMScheduler(num_train_timesteps=100))


def test_a_graded_pipeline_is_fitted_samples_and_saves_and_loads(tmp_path):
    options = SamplingOptions(steps=4)
    pipe = graded_pipe()
    prepare(pipe, ConversionSpec(K=4, method="ours", coding=GradedCoding(images=2)), options)
    record = pipe.unet.fs_config
    assert record.coding == GradedCoding(spike_weight=0.0002, images=2) and record.events("delta-fit")
    assert all(bool(e.fitted) and e.bits == 8 for _, e in encoders(pipe.unet))
    with measure_cost(pipe) as meter:
        images = generate(pipe, range(2), options)
    report = meter.report()
    assert sum(lay.event_macs for lay in report.layers) > 0
    save_pipeline(pipe, tmp_path / "g")
    loaded = load_pipeline(tmp_path / "g", scheduler="pipeline")
    assert loaded.unet.fs_config.coding == record.coding
    assert torch.equal(generate(loaded, range(2), options), images)
    assert "graded" in record.label and "8-bit events" in record.summary()


def test_bad_graded_settings_are_clear_errors(cli, tmp_path):
    with pytest.raises(SettingError, match="an event's bits must be an integer from 2 to 16"):
        GradedCoding(bits=1)
    with pytest.raises(ValueError, match="bits must be an integer from 2 to 16"):
        GradedDeltaNeuron(17)
    code, _, err = cli("convert", "--coding", "graded", "--graded-bits", "40", "--out", tmp_path / "x")
    assert code != 0 and "--graded-bits: an event's bits must be an integer from 2 to 16" in err and "Traceback" not in err
