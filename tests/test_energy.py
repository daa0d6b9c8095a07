"""Spike and energy accounting: hand counts of ACs and MACs, FS sites, energy arithmetic, bad input."""

import copy
import math

import pytest
import torch
from tiny_models import tiny_unet
from torch import nn

from fs_neurons import FSNeuron, fs_simulate
from spiking_ddim import convert_unet
from spiking_ddim.energy import CostReport, EnergyConstants, LayerCost, SiteCost, layer_acs, measure_cost


def ones_layer_sum(layer: nn.Module, count: torch.Tensor) -> float:
    """The definition: the layer with every weight 1 and no bias, applied to the count map, summed."""
    ones = copy.deepcopy(layer).double()
    with torch.no_grad():
        ones.weight.fill_(1.0)
        if ones.bias is not None:
            ones.bias.zero_()
        return float(ones(count.double()).sum())


def test_conv_acs_equal_a_hand_count_with_padding_and_stride():
    conv = nn.Conv2d(1, 2, 3, stride=2, padding=1)  # 4x4 input -> 2x2 output, rows/cols read: out 0 <- in -1..1,
    count = torch.zeros(1, 1, 4, 4)                  # out 1 <- in 1..3 (in -1 is padding)
    count[0, 0, 0, 0] = 3  # read by output row 0 only (tap 1) and output col 0 only: 1 x 1 position
    count[0, 0, 1, 1] = 2  # row 1 is read by output rows 0 (tap 2) and 1 (tap 0), same for col 1: 2 x 2
    count[0, 0, 3, 2] = 1  # row 3: output row 1 (tap 2); col 2: output col 1 (tap 1): 1 x 1
    hand = 2 * (3 * 1 + 2 * 4 + 1 * 1)  # x 2 output channels
    assert float(layer_acs(conv, count)) == hand == ones_layer_sum(conv, count)
    assert float(layer_acs(conv, count.sum(0))) == hand  # a count map already summed over the batch


@pytest.mark.parametrize("layer", [
    nn.Conv2d(6, 8, 3, stride=2, padding=1, groups=2),
    nn.Conv2d(4, 4, (3, 5), stride=(1, 2), padding=(2, 1), dilation=(2, 1)),
    nn.Conv2d(3, 6, 3, padding=1, padding_mode="reflect"),
    nn.Conv2d(3, 6, 3, padding=1, padding_mode="circular"),
    nn.Conv2d(4, 4, 3, padding="same", groups=4),
    nn.Conv1d(4, 2, 5, stride=3, padding=2),
    nn.Conv3d(2, 4, 3, padding=1, stride=2),
    nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=2),
    nn.ConvTranspose1d(3, 2, 3, stride=2, padding=1, output_padding=1),
], ids=lambda layer: repr(layer))
def test_conv_acs_follow_the_definition_for_any_geometry(layer):
    count = torch.randint(0, 5, (2, layer.in_channels, *([7] * len(layer.kernel_size))),
                          generator=torch.Generator().manual_seed(0)).float()
    assert float(layer_acs(layer, count)) == ones_layer_sum(layer, count)


def bank_neuron(K=4):
    return FSNeuron.from_bank("swish", K=K, method="ours")


def test_a_linear_after_an_fs_site_costs_one_ac_per_spike_per_output():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), bank_neuron(), nn.Dropout(0.0), nn.Linear(6, 3)).eval()
    x = torch.randn(5, 4) * 3
    with measure_cost(model) as meter, torch.no_grad():
        model(x)
    report = meter.report()
    hidden = model[0](x).detach()
    neuron = model[1]
    _, count = fs_simulate(hidden, neuron.h.detach(), neuron.d.detach(), neuron.T.detach(), count_spikes=True)
    spikes = float(count.sum())
    assert spikes > 0
    (site,) = report.sites
    assert site.name == "1" and site.K == 4 and site.calls == 1 and site.neurons == 5 * 6
    assert site.spikes == spikes and site.firing_rate == pytest.approx(spikes / 30)
    first, second = report.layers
    assert (first.name, first.kind, first.spike_calls) == ("0", "linear", 0)
    assert first.ann_macs == first.snn_macs == 5 * 6 * 4 and first.snn_acs == 0
    assert (second.name, second.spike_calls) == ("3", 1)
    assert second.ann_macs == 5 * 3 * 6 and second.snn_macs == 0 and second.snn_acs == spikes * 3
    assert report.samples == 5 and report.forwards == 1
    assert site.acs == spikes * 3 and site.acs_per_spike == 3  # the site is charged for what its spikes cost


def test_each_site_is_charged_the_acs_of_the_layers_its_spikes_feed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), bank_neuron(), nn.Linear(6, 5), bank_neuron(), nn.Identity(),
                          nn.Linear(5, 2)).eval()
    with measure_cost(model) as meter, torch.no_grad():
        model(torch.randn(7, 4) * 3)
    report = meter.report()
    first, second = report.sites
    assert first.spikes > 0 and second.spikes > 0
    assert first.acs_per_spike == 5 and second.acs_per_spike == 2  # a spike reaches every output of the next layer
    assert first.acs + second.acs == sum(lay.snn_acs for lay in report.layers)


def test_an_fs_output_changed_on_its_way_is_not_counted_as_spikes():
    model = nn.Sequential(bank_neuron(), nn.Linear(3, 2))
    scaled = nn.Sequential(bank_neuron(), nn.Hardtanh(), nn.Linear(3, 2))  # any other op: analog again
    x = torch.randn(4, 3) * 3
    for net, acs in ((model, True), (scaled, False)):
        with measure_cost(net.eval()) as meter, torch.no_grad():
            net(x)
        layer = meter.report().layers[0]
        assert (layer.snn_acs > 0) == acs and (layer.snn_macs == 0) == acs


def test_zero_spikes_give_zero_acs():
    silent = FSNeuron.from_params([1.0] * 4, [1.0] * 4, [1e6] * 4)  # thresholds no input reaches
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), silent, nn.Conv2d(4, 2, 3, padding=1)).eval()
    with measure_cost(model) as meter, torch.no_grad():
        model(torch.randn(3, 1, 6, 6))
    report = meter.report()
    assert report.spikes == 0 and report.sites[0].firing_rate == 0
    assert report.layers[1].spike_calls == 1 and report.layers[1].snn_acs == 0 and report.layers[1].snn_macs == 0
    e = report.energy(3)
    assert e.snn_acs_per_image == 0 and e.activation_sparsity == 1.0
    assert e.snn_joules_per_image == pytest.approx(report.layers[0].ann_macs / 3 * 4.6e-12)


# Every conv / linear of tests.test_convert.tiny_unet (8x8 input, widths 8 and 16, attention at 4x4 with
# two heads of 8), as (output pixels, in channels, out channels, kernel taps); attention: tokens and width.
TINY_UNET_LAYERS = {
    "time_embedding.linear_1": (1, 8, 32, 1), "time_embedding.linear_2": (1, 32, 32, 1),
    "conv_in": (64, 1, 8, 9),
    "down_blocks.0.resnets.0.conv1": (64, 8, 8, 9), "down_blocks.0.resnets.0.time_emb_proj": (1, 32, 8, 1),
    "down_blocks.0.resnets.0.conv2": (64, 8, 8, 9), "down_blocks.0.downsamplers.0.conv": (16, 8, 8, 9),
    "down_blocks.1.resnets.0.conv1": (16, 8, 16, 9), "down_blocks.1.resnets.0.time_emb_proj": (1, 32, 16, 1),
    "down_blocks.1.resnets.0.conv2": (16, 16, 16, 9), "down_blocks.1.resnets.0.conv_shortcut": (16, 8, 16, 1),
    "mid_block.resnets.0.conv1": (16, 16, 16, 9), "mid_block.resnets.0.time_emb_proj": (1, 32, 16, 1),
    "mid_block.resnets.0.conv2": (16, 16, 16, 9),
    "mid_block.resnets.1.conv1": (16, 16, 16, 9), "mid_block.resnets.1.time_emb_proj": (1, 32, 16, 1),
    "mid_block.resnets.1.conv2": (16, 16, 16, 9),
    "up_blocks.0.resnets.0.conv1": (16, 32, 16, 9), "up_blocks.0.resnets.0.time_emb_proj": (1, 32, 16, 1),
    "up_blocks.0.resnets.0.conv2": (16, 16, 16, 9), "up_blocks.0.resnets.0.conv_shortcut": (16, 32, 16, 1),
    "up_blocks.0.resnets.1.conv1": (16, 24, 16, 9), "up_blocks.0.resnets.1.time_emb_proj": (1, 32, 16, 1),
    "up_blocks.0.resnets.1.conv2": (16, 16, 16, 9), "up_blocks.0.resnets.1.conv_shortcut": (16, 24, 16, 1),
    "up_blocks.0.upsamplers.0.conv": (64, 16, 16, 9),
    "up_blocks.1.resnets.0.conv1": (64, 24, 8, 9), "up_blocks.1.resnets.0.time_emb_proj": (1, 32, 8, 1),
    "up_blocks.1.resnets.0.conv2": (64, 8, 8, 9), "up_blocks.1.resnets.0.conv_shortcut": (64, 24, 8, 1),
    "up_blocks.1.resnets.1.conv1": (64, 16, 8, 9), "up_blocks.1.resnets.1.time_emb_proj": (1, 32, 8, 1),
    "up_blocks.1.resnets.1.conv2": (64, 8, 8, 9), "up_blocks.1.resnets.1.conv_shortcut": (64, 16, 8, 1),
    "conv_out": (64, 8, 1, 9),
}
TINY_UNET_ATTENTION = ["down_blocks.1.attentions.0", "mid_block.attentions.0", "up_blocks.0.attentions.0",
                       "up_blocks.0.attentions.1"]


def test_ann_macs_of_a_tiny_unet_equal_a_hand_count_from_its_layer_shapes():
    hand = {name: px * cin * cout * taps for name, (px, cin, cout, taps) in TINY_UNET_LAYERS.items()}
    tokens, width = 16, 16
    for a in TINY_UNET_ATTENTION:
        hand.update({f"{a}.to_{p}": tokens * width * width for p in ("q", "k", "v")})
        hand[f"{a}.to_out.0"] = tokens * width * width
        hand[f"{a}:matmul"] = 2 * tokens * tokens * width  # q k^T and (scores) v over both heads
    unet = tiny_unet().eval()
    fs = copy.deepcopy(unet)
    convert_unet(fs, K=4, method="ours")
    fs.eval()
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([10, 200, 900])
    reports = []
    for model in (unet, fs):
        with measure_cost(model) as meter, torch.no_grad():
            model(x, t)
        reports.append(meter.report())
    for report in reports:
        counted = {(lay.name if lay.kind != "matmul" else f"{lay.name}:matmul"): lay.ann_macs / 3 for lay in report.layers}
        assert counted == hand
    ann, snn = reports
    assert not ann.sites and all(lay.snn_acs == 0 and lay.snn_macs == lay.ann_macs for lay in ann.layers)
    # In the SNN, exactly the layers right after a Swish take spikes.
    fed = {lay.name for lay in snn.layers if lay.spike_calls}
    assert fed == {n for n in TINY_UNET_LAYERS if n.endswith(("conv1", "conv2", "time_emb_proj"))
                   or n in ("time_embedding.linear_2", "conv_out")}
    assert len(snn.sites) == 3 * 8 + 2 and snn.samples == 3  # 8 ResnetBlock2D x 3 sites, time embedding, conv_act
    assert sum(lay.snn_macs for lay in snn.layers) == sum(hand[n] for n in hand if n.split(":")[0] not in fed) * 3


def test_site_spikes_match_the_simulated_spike_loop_on_the_site_inputs():
    fs = tiny_unet()
    convert_unet(fs, K=4, method="ours")
    fs.eval()
    seen = []
    act = fs.down_blocks[0].resnets[0].nonlinearity
    handle = act.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    with measure_cost(fs) as meter, torch.no_grad():
        fs(torch.randn(2, 1, 8, 8), torch.tensor([5, 500]))
    handle.remove()
    sites = {s.name: s for s in meter.report().sites}
    for i, x in enumerate(seen):
        n = act.neurons[i]
        _, count = fs_simulate(x, n.h.detach(), n.d.detach(), n.T.detach(), count_spikes=True)
        site = sites[f"down_blocks.0.resnets.0.nonlinearity[{i}]"]
        assert site.spikes == float(count.sum()) and site.neurons == x.numel()


def test_energy_arithmetic_and_runs_added_up():
    a = CostReport(samples=20, forwards=2, sites=[SiteCost("s[0]", K=8, calls=2, neurons=100, spikes=250.0, updates=800)],
                   layers=[LayerCost("conv1", "conv", 2, 2, ann_macs=1000, snn_macs=0, snn_acs=2200.0),
                           LayerCost("conv_in", "conv", 2, 0, ann_macs=300, snn_macs=300, snn_acs=0.0)])
    both = a + a
    assert both.samples == 40 and both.sites[0].spikes == 500 and both.layers[0].snn_acs == 4400
    e = both.energy(num_images=4, constants=EnergyConstants(mac_pj=4.0, ac_pj=1.0))
    assert e.forwards_per_image == 10
    assert e.ann_macs_per_image == 2600 / 4 and e.snn_macs_per_image == 600 / 4 and e.snn_acs_per_image == 4400 / 4
    assert e.ann_joules_per_image == pytest.approx(2600 * 4e-12 / 4)
    assert e.snn_joules_per_image == pytest.approx((600 * 4 + 4400 * 1) * 1e-12 / 4)
    assert e.ratio == pytest.approx((600 * 4 + 4400) / (2600 * 4))
    assert e.snn_joules_per_step == pytest.approx(e.snn_joules_per_image / 10)
    assert e.neuron_updates_per_image == 8 * 200 / 4 and e.activation_sparsity == pytest.approx(1 - 500 / 1600)
    assert e.neurobench["Dense"] == 2600 / 40 and e.neurobench["Eff_ACs"] == 4400 / 40
    assert e.sites[0]["firing_rate"] == 2.5 and e.layers[0]["input"] == "spikes" and e.layers[1]["input"] == "analog"
    assert e.constants["mac_pj"] == 4.0
    default = both.energy(4)
    assert default.constants["mac_pj"] == 4.6 and default.constants["ac_pj"] == 0.9


def test_energy_constants_parse_and_reject_bad_values():
    c = EnergyConstants.parse(["mac=3.1", "ac=0.1"])
    assert (c.mac_pj, c.ac_pj) == (3.1, 0.1) and c.source == "user-given"
    assert EnergyConstants.parse([]) == EnergyConstants()
    with pytest.raises(ValueError, match=r"unknown energy constant 'add=1'.*mac, ac"):
        EnergyConstants.parse(["add=1"])
    with pytest.raises(ValueError, match="unknown energy constant"):
        EnergyConstants.parse(["mac"])
    with pytest.raises(ValueError, match="energy constant mac must be a number of picojoules, got 'fast'"):
        EnergyConstants.parse(["mac=fast"])
    for bad in (-0.9, math.inf, math.nan):
        with pytest.raises(ValueError, match="energy constant ac must be a finite number of picojoules >= 0"):
            EnergyConstants(ac_pj=bad)
    with pytest.raises(ValueError, match="no forward pass"):
        CostReport().energy(1)
    with pytest.raises(ValueError, match="num_images must be >= 1"):
        CostReport(samples=1).energy(0)


def test_memory_aware_estimate_by_hand():
    from spiking_ddim.memory import MemoryConstants, memory_energy

    c = MemoryConstants()
    assert c.word_pj(0) == 0 and c.word_pj(4 * 1024) == 5.0 and c.word_pj(8 * 1024) == 10.0
    assert c.word_pj(20 * 1024) == 15.0 and c.word_pj(2 * 1024 * 1024) == 100.0
    # one image: a dense linear layer (4 -> 6) feeding an FS site (K=8), then a spike-fed linear layer (6 -> 3)
    dense = LayerCost("a", "linear", calls=1, spike_calls=0, ann_macs=24, snn_macs=24, inputs=4, outputs=6,
                      weights=24, input_size=4, output_size=6)
    fed = LayerCost("b", "linear", calls=1, spike_calls=1, ann_macs=18, snn_macs=0, snn_acs=30.0, inputs=6, outputs=3,
                    spike_events=10.0, weights=18, input_size=6, output_size=3)
    site = SiteCost("s[0]", K=8, calls=1, neurons=6, spikes=10.0, acs=30.0, updates=48, size=6)
    m = memory_energy([dense, fed], [site], num_images=1)
    pj = c.word_pj
    ann = {"ops": (24 + 18 + 6) * 3.2,  # both layers' MACs and the activation of 6 elements
           "weights": 24 * pj(96) + 18 * pj(72),
           "activations": 4 * pj(16) + 6 * pj(24) + 6 * pj(24) + 3 * pj(12)}
    snn = {"ops": 24 * 3.2 + 30 * 0.1 + 48 * 0.1,
           "weights": 24 * pj(96) + 30 * pj(72),
           "activations": 4 * pj(16) + 6 * pj(24) + 2 * 30 * pj(12) + 10 * pj(4000),
           "state": 2 * 48 * pj(24)}
    assert m.ann_joules_per_image == pytest.approx(sum(ann.values()) * 1e-12)
    assert m.snn_joules_per_image == pytest.approx(sum(snn.values()) * 1e-12)
    assert m.snn_breakdown["state"] == pytest.approx(snn["state"] * 1e-12)
    assert m.ann_int8_joules_per_image < m.ann_joules_per_image and m.ratio_int8 > m.ratio
    with pytest.raises(ValueError, match="increasing sizes"):
        MemoryConstants(sram=((0.0, 0.0), (0.0, 1.0)))


def test_energy_report_carries_the_int8_ratio_and_the_memory_aware_estimate():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), bank_neuron(), nn.Linear(6, 3)).eval()
    with measure_cost(model) as meter:
        model(torch.randn(5, 4))
    e = meter.report().energy(5)
    assert e.ann_int8_joules_per_image == pytest.approx(e.ann_macs_per_image * 0.23e-12)
    assert e.ratio_int8 == pytest.approx(e.snn_joules_per_image / e.ann_int8_joules_per_image)
    assert e.memory["snn_joules_per_image"] > 0 and "memory-aware" in e.summary() and "INT8" in e.summary()
    fed = [lay for lay in meter.report().layers if lay.spike_calls][0]
    assert fed.spike_events == meter.report().spikes and fed.weights == 18 and fed.output_size == 3


def test_matched_precision_energy_of_a_tiny_network_by_hand():
    from spiking_ddim.energy.matched import Widths, ann_family, matched_energy
    from spiking_ddim.memory import MemoryConstants

    # one image: an 8-bit dense linear layer (4 -> 6) feeding an FS site (K=8), then an 8-bit spike-fed
    # linear layer (6 -> 3) whose input is a delta encoder's change (its 3 outputs kept across steps)
    dense = LayerCost("a", "linear", calls=1, ann_macs=24, snn_macs=24, inputs=4, outputs=6, weights=24, input_size=4,
                      output_size=6, weight_bits=8)
    fed = LayerCost("b", "linear", calls=1, spike_calls=1, ann_macs=18, snn_macs=0, snn_acs=30.0, inputs=6, outputs=3,
                    spike_events=10.0, weights=18, input_size=6, output_size=3, weight_bits=8, kept_outputs=3)
    site = SiteCost("s[0]", K=8, calls=1, neurons=6, spikes=10.0, acs=30.0, updates=48, size=6)
    m = matched_energy([dense, fed], [site], 1, 10 / 6, Widths(accumulators={"b": 16}))
    pj = MemoryConstants().word_pj

    def access(elements, bits):  # one access of `bits` to a buffer of `elements` such values
        return pj(elements * bits / 8) * bits / 32

    mac_ann, mac_snn = 0.2 + 0.1, 0.2 * 2 + 0.1  # 8 x 8 and 8 x 16 multiplies, 32-bit adds
    assert m["ops"].ann_joules_per_image == pytest.approx(42 * mac_ann * 1e-12)
    assert m["ops"].snn_joules_per_image == pytest.approx((24 * mac_snn + 30 * 0.05) * 1e-12)
    assert m["ops"].break_even == pytest.approx(10 / 6 * (42 * mac_ann - 24 * mac_snn) / (30 * 0.05))
    assert (m["ops"].ann_precision, m["ops"].snn_precision) == ("W8A8", "W8, spikes, analog A16")
    ann = (48 * mac_ann + 24 * access(24, 8) + 18 * access(18, 8)
           + 4 * access(4, 8) + 6 * access(6, 8) + 6 * access(6, 8) + 3 * access(3, 8))
    common = (24 * mac_snn + 24 * access(24, 8) + 4 * access(4, 16) + 6 * access(6, 16)  # the dense layer
              + 30 * 0.05 + 30 * access(18, 8) + 10 * access(1000, 32)  # ACs, their weights, the spike FIFO
              + 48 * 0.1 + 2 * 48 * access(6, 32))  # neuron updates and their state
    lemaire = common + 2 * 30 * access(3, 16)  # a 16-bit read-modify-write per accumulate
    stationary = common + (3 + 3) * access(3, 16)  # each output written once, and read once (kept)
    for name, snn in (("lemaire", lemaire), ("output-stationary", stationary)):
        assert m[name].ann_joules_per_image == pytest.approx(ann * 1e-12)
        assert m[name].snn_joules_per_image == pytest.approx(snn * 1e-12)
    events = 30 * 0.05 + 30 * access(18, 8) + 10 * access(1000, 32)
    assert m["lemaire"].snn_event_joules_per_image == pytest.approx((events + 2 * 30 * access(3, 16)) * 1e-12)
    assert m["output-stationary"].snn_event_joules_per_image == pytest.approx(events * 1e-12)
    family = ann_family([dense, fed], [site], 1)  # the same counts as an ANN at other precisions
    assert family["W4A8"]["ops"] == pytest.approx(42 * (0.2 * 32 / 64 + 0.1) * 1e-12)
    assert family["W8A16"]["ops"] == pytest.approx(42 * mac_snn * 1e-12)
    assert family["fp32"]["ops"] == pytest.approx(42 * 4.6 * 1e-12)
    assert family["W8A8"]["lemaire"] == pytest.approx(ann * 1e-12)


def test_matched_precision_at_float32_is_the_earlier_estimates():
    from spiking_ddim.energy.matched import matched_energy
    from spiking_ddim.memory import memory_energy

    dense = LayerCost("a", "linear", calls=1, ann_macs=24, snn_macs=24, inputs=4, outputs=6, weights=24, input_size=4,
                      output_size=6)
    fed = LayerCost("b", "linear", calls=1, spike_calls=1, ann_macs=18, snn_macs=0, snn_acs=30.0, inputs=6, outputs=3,
                    spike_events=10.0, weights=18, input_size=6, output_size=3)
    site = SiteCost("s[0]", K=8, calls=1, neurons=6, spikes=10.0, acs=30.0, updates=48, size=6)
    m, old = matched_energy([dense, fed], [site], 1, 10 / 6), memory_energy([dense, fed], [site], 1)
    assert m["lemaire"].ann_joules_per_image == pytest.approx(old.ann_joules_per_image)
    assert m["lemaire"].snn_joules_per_image == pytest.approx(old.snn_joules_per_image)
    assert m["ops"].ratio == pytest.approx((30 * 0.9) / (18 * 4.6 + 24 * 4.6) + 24 * 4.6 / (42 * 4.6))
    assert m["ops"].break_even == pytest.approx(4.6 / 0.9 * (1 - 0) * 10 / 6 * 18 / 30)
    assert m["ops"].ann_precision == "float32"


def test_an_eight_bit_layer_is_priced_at_its_width_and_the_ann_beside_it():
    from spiking_ddim.synapses import quantize_weights

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), bank_neuron(), nn.Linear(6, 3)).eval()
    quantize_weights(model, 8)
    with measure_cost(model) as meter:
        model(torch.randn(5, 4))
    report = meter.report()
    assert [lay.weight_bits for lay in report.layers] == [8, 8]
    e = report.energy(5)
    fed = report.layers[1]
    assert e.matched["ops"]["snn_precision"].startswith("W8") and e.matched["ops"]["ann_precision"] == "W8A8"
    assert e.ann_family["W8A8"]["ops"] == pytest.approx(e.matched["ops"]["ann_joules_per_image"])
    expected = (report.layers[0].ann_macs * (0.2 * 2 + 0.1) + fed.snn_acs * 0.1) * 1e-12 / 5
    assert e.matched["ops"]["snn_joules_per_image"] == pytest.approx(expected)


def test_graded_events_are_priced_as_macs_with_an_accumulates_memory_traffic():
    from spiking_ddim.energy.matched import matched_energy
    from spiking_ddim.memory import MemoryConstants

    # one image: 4 graded 8-bit events reach 3 outputs each of an 8-bit linear layer (6 -> 3)
    fed = LayerCost("b", "linear", calls=1, spike_calls=1, ann_macs=18, snn_macs=0, event_macs=12.0, event_bits=8,
                    inputs=6, outputs=3, spike_events=4.0, weights=18, input_size=6, output_size=3, weight_bits=8)
    m = matched_energy([fed], [], 1, 4 / 6)
    pj = MemoryConstants().word_pj
    assert m["ops"].snn_joules_per_image == pytest.approx(12 * (0.2 + 0.1) * 1e-12)
    snn = 12 * 0.3 + 12 * pj(18) / 4 + 2 * 12 * pj(12) + 4 * pj(4000)  # weight (1 byte), 32-bit accumulator, FIFO
    assert m["lemaire"].snn_joules_per_image == pytest.approx(snn * 1e-12)
    e = CostReport(samples=1, forwards=1, layers=[fed]).energy(1)
    assert e.snn_macs_per_image == 12 and e.snn_event_macs_per_image == 12 and e.snn_acs_per_image == 0
