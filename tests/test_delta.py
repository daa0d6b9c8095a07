"""Delta coding across denoising steps: state, resets, batch and guidance independence,
accumulated layer outputs, operation counts, fitting, saving, bad input; through DDIM, latent
and text-conditional pipelines' own __call__."""

import copy

import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler
from tiny_models import AUTOENCODER, KINDS, build, tiny_cond_unet, tiny_unet
from torch import nn

from fs_neurons import FSNeuron, OursConfig
from fs_neurons.delta import DeltaFSNeuron
from fs_neurons.state import Stateful
from spiking_ddim import (
    SamplingOptions,
    convert_pipeline,
    convert_unet,
    fs_activations,
    generate,
    load_model,
    measure_cost,
)
from spiking_ddim.calibration import fit_delta
from spiking_ddim.codings import DeltaCoding
from spiking_ddim.delta import DeltaEncoder, encoders, remove_encoders
from spiking_ddim.fs_activation import FSActivation, SiteSignature
from spiking_ddim.pipelines import load_pipeline, save_pipeline
from spiking_ddim.recipe import refit_encoders
from spiking_ddim.run_state import RunClock, reset_net, step_coding


def binary(K: int, step: float) -> tuple[list[float], list[float], list[float]]:
    """h, d, T of a signed-magnitude binary code: rounds |change| to a multiple of ``step`` up to (2^K - 1) step."""
    h = [step * 2 ** (K - 1 - k) for k in range(K)]
    return h, h, [v - step / 2 for v in h]


def fit_by_hand(model: nn.Module, step: float = 1e-3) -> None:
    for _, e in encoders(model):
        e.set_params(*binary(e.K, step))


def test_a_change_is_sent_as_a_signed_code_with_error_feedback_by_hand():
    n = DeltaFSNeuron(2)
    n.set_params(*binary(2, 1.0))  # codes 0, 1, 2, 3 (rounded) per step
    counts = []
    n.register_spike_hook(lambda _n, _out, count: counts.append(count.tolist()))
    n.start(torch.tensor([0.0]), torch.tensor([0.0]), steps=2)
    assert n(torch.tensor([3.0])).tolist() == [3.0] and counts[-1] == [2.0]  # 2 + 1: two spikes
    assert n(torch.tensor([3.0])).tolist() == [3.0] and counts[-1] == [0.0]  # no change: nothing sent
    assert n(torch.tensor([2.0])).tolist() == [2.0] and counts[-1] == [1.0]  # -1: one spike of the other polarity
    assert n(torch.tensor([2.4])).tolist() == [2.0] and counts[-1] == [0.0]  # 0.4 is under the first threshold...
    assert n(torch.tensor([2.6])).tolist() == [3.0] and counts[-1] == [1.0]  # ...and kept: 0.6 since the last sent
    assert n(torch.tensor([9.0])).tolist() == [6.0] and counts[-1] == [2.0]  # clipped at 3 per step,
    assert n(torch.tensor([9.0])).tolist() == [9.0] and counts[-1] == [2.0]  # the rest follows next step



@pytest.mark.parametrize("threads", [1, 2])
def test_the_fused_delta_step_sends_what_the_torch_path_sends(monkeypatch, threads):
    from fs_neurons import kernels

    if not kernels.available():
        pytest.skip("numba is not installed: there is no fused kernel to compare")
    g = torch.Generator().manual_seed(0)
    h, d, T = (torch.tensor(t) for t in binary(4, 0.05))
    T = T + 0.01 * torch.rand(4, generator=g)  # thresholds off the grid of levels
    first = torch.randn(2, 3, 17, 19, generator=g)
    values = [first + 0.3 * torch.randn(first.shape, generator=g) * k for k in range(1, 6)]
    values[2][0, 0, :4, 0] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0])
    values[3] = values[3].to(torch.float16)  # the state stays float32; the output takes the input's dtype

    def run():
        n = DeltaFSNeuron(4)
        n.set_params(h, d, T)
        counts = []
        n.register_spike_hook(lambda _n, _out, count: counts.append(count))
        n.start(first, torch.zeros_like(first), steps=4)
        return [n(v) for v in values], counts, n.sent

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fused = run()
        monkeypatch.setattr(kernels, "available", lambda: False)
        plain = run()
    finally:
        torch.set_num_threads(before)
    for a, b in zip([*fused[0], fused[2]], [*plain[0], plain[2]]):  # outputs and state, bit for bit
        assert a.dtype == b.dtype and torch.equal(a.nan_to_num(7.0), b.nan_to_num(7.0)) and torch.equal(a.isnan(), b.isnan())
    finite = ~fused[2].isnan()  # spikes of a NaN change mean nothing (the torch lookup's and the kernel's differ)
    assert all(torch.equal(a[finite], b[finite]) for a, b in zip(fused[1], plain[1]))
    assert fused[0][3].dtype == torch.float16 and fused[2].dtype == torch.float32
    assert fused[1][1].sum() > 0 and fused[0][2].isnan().sum() == 1  # spikes were sent; NaN propagates

def test_the_layer_fed_by_a_delta_site_accumulates_exactly_what_it_would_compute_from_the_sent_value():
    # by hand: a linear layer y = 0.5 x + 1 keeps its output and adds 0.5 x change
    n = DeltaFSNeuron(2)
    n.set_params(*binary(2, 1.0))
    n.start(torch.tensor([0.0]), torch.tensor([0.0]), steps=2)
    kept = 1.0  # the layer's output for the sent value 0
    for v in (3.0, 3.0, 2.0, 2.6):
        before = n.sent.clone()
        sent = n(torch.tensor([v]))
        kept += 0.5 * float(sent - before)
        assert kept == 0.5 * float(sent) + 1
    # a conv layer over 50 steps of a random walk: accumulated output == the layer on the sent value
    g = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    n = DeltaFSNeuron(8)
    n.set_params(*binary(8, 0.01))
    v = torch.randn(2, 3, 6, 6, generator=g)
    n.start(v, torch.zeros_like(v), steps=8)
    acc = conv(n.sent)
    with torch.no_grad():
        for _ in range(50):
            v = v + 0.1 * torch.randn(v.shape, generator=g)
            before = n.sent.clone()
            sent = n(v)
            acc = acc + nn.functional.conv2d(sent - before, conv.weight, None, padding=1)
            assert torch.allclose(acc, conv(sent), atol=1e-4)


def site_with_encoder(K=4):
    act = FSActivation("swish", [FSNeuron.from_bank("swish", K=K, method="ours")], [SiteSignature(2, 6)])
    act.encoders = nn.ModuleList([DeltaEncoder(K)])
    act.encoders[0].set_params(*binary(K, 0.05))
    return act.eval()


def test_a_delta_site_fed_the_same_input_twice_sends_no_spike_the_second_time():
    act = site_with_encoder()
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    model = nn.Sequential(nn.Identity(), act, nn.Linear(6, 5)).eval()
    with measure_cost(model) as meter:
        model(x)
        first = meter.report().spikes
        model(x)
        second = meter.report().spikes - first
    assert first > 0 and second == 0
    # the second call's linear layer costs accumulates for those (no) spikes, not MACs
    linear = [lay for lay in meter.report().layers if lay.kind == "linear"][0]
    assert linear.spike_calls == 2 and linear.snn_macs == 0


def test_accumulates_of_a_delta_step_equal_a_hand_count():
    act = site_with_encoder()
    model = nn.Sequential(nn.Identity(), act, nn.Linear(6, 5)).eval()
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(2))
    model(x)  # the run's first step
    enc = act.encoders[0]
    before = enc.sent.clone()
    y = x + 0.3 * torch.randn(3, 6, generator=torch.Generator().manual_seed(3))
    change = (torch.nn.functional.silu(y) - before).abs()
    _, hand_count = enc.code(change)  # the encoder's code of the change, by its own table
    with measure_cost(model) as meter:
        model(y)
    report = meter.report()
    assert report.spikes == float(hand_count.sum()) > 0
    assert report.layers[-1].snn_acs == float(hand_count.sum()) * 5  # one AC per spike per output
    assert report.sites[0].updates == 18 * (4 + 1)  # the graded activation and K steps per neuron
    assert report.layers[-1].kept_outputs == 15  # its 3 x 5 outputs are kept across steps (read and written)


def tiny_pipe(seed=0):
    return DDIMPipeline(unet=tiny_unet(seed).eval(), scheduler=DDIMScheduler(num_train_timesteps=100))


def delta_pipe(K=8, step=1e-3):
    pipe = tiny_pipe()
    convert_pipeline(pipe, K=K, method="ours", coding="delta")
    fit_by_hand(pipe.unet, step)
    return pipe


OPTIONS = SamplingOptions(steps=6)
QUICK = OursConfig(pool=8, restarts=0, iters=20, elite=2, elite_iters=20, rounds=0, polish_iters=20)  # light searches


def test_identical_runs_give_identical_images_and_every_call_of_the_pipeline_starts_afresh():
    pipe = delta_pipe()
    calls = []
    first_site = fs_activations(pipe.unet)[0][1]  # runs inside the model's forward, after its run clock
    first_site.register_forward_pre_hook(lambda m, a: calls.append(m.encoders[0].started))
    a = generate(pipe, range(2), OPTIONS)
    b = generate(pipe, range(2), OPTIONS)
    assert torch.equal(a, b)
    assert calls == [False] + [True] * 5 + [False] + [True] * 5  # a new run at each pipeline call
    reset_net(pipe.unet)
    assert not any(e.started for _, e in encoders(pipe.unet))


def test_a_delta_model_keeps_its_state_in_visible_modules_that_reset_net_clears():
    pipe = delta_pipe()
    unet = pipe.unet
    clock = dict(unet.named_modules())["run_clock"]
    assert isinstance(clock, RunClock) and all(isinstance(e, Stateful) for _, e in encoders(unet))
    assert not [key for key in vars(unet) if "delta" in key or "clock" in key]  # nothing hidden on the model
    assert not [key for key in unet.state_dict() if "run_clock" in key]  # state is not saved with the weights
    generate(pipe, range(2), OPTIONS)
    assert clock.shape == (2, 1, 8, 8) and clock.timestep is not None and all(e.started for _, e in encoders(unet))
    reset_net(unet)
    assert (clock.shape, clock.timestep) == (None, None) and not any(e.started for _, e in encoders(unet))
    twin = copy.deepcopy(unet)  # a copy runs on its own clock
    generate(pipe, range(1), OPTIONS)
    assert clock.shape == (1, 1, 8, 8) and dict(twin.named_modules())["run_clock"].shape is None
    remove_encoders(unet)
    assert "run_clock" not in dict(unet.named_modules()) and not encoders(unet)


def test_an_image_alone_and_in_a_batch_of_four_are_the_same():
    pipe = delta_pipe()
    batch = generate(pipe, range(4), OPTIONS)
    other = generate(pipe, [0, 1, 7, 3], OPTIONS)  # other companions, same batch shape: bit for bit
    assert torch.equal(batch[[0, 1, 3]], other[[0, 1, 3]]) and not torch.allclose(batch[2], other[2])
    # alone: equal up to float rounding (a batch of another size sums in another order, and
    # FS codes are discontinuous: eval/noise_floor.py measures this for step coding too)
    alone = generate(pipe, [2], OPTIONS)
    assert (batch[2:3] - alone).abs().max() < 5e-3


def test_guidance_halves_keep_separate_state():
    unet = tiny_cond_unet().eval()
    convert_unet(unet, K=8, method="ours", coding="delta")
    fit_by_hand(unet)
    g = torch.Generator().manual_seed(0)
    x, text, other = torch.randn(1, 1, 8, 8, generator=g), torch.randn(2, 3, 8, generator=g), torch.randn(1, 3, 8, generator=g)

    def run(texts):  # 4 denoising steps of one run, the batch [unconditional, conditional] as CFG calls it
        reset_net(unet)
        with torch.no_grad():
            return [unet(torch.cat([x, x]) * (1 + 0.1 * k), 90 - 10 * k, encoder_hidden_states=texts).sample
                    for k in range(4)]

    a, b = run(text), run(torch.cat([text[:1], other]))
    for k in range(4):  # another conditional half leaves the unconditional half's run bit for bit as it was
        assert torch.equal(a[k][0], b[k][0]) and not torch.allclose(a[k][1], b[k][1], atol=1e-3)
    alone = []
    reset_net(unet)
    with torch.no_grad():
        for k in range(4):
            alone.append(unet(x * (1 + 0.1 * k), 90 - 10 * k, encoder_hidden_states=text[1:]).sample)
    for k in range(4):  # the conditional half alone: the same up to float rounding (another batch size)
        assert (a[k][1:] - alone[k]).abs().max() < 5e-3


def test_with_fine_neurons_the_delta_model_matches_the_per_step_model(fine_bank):
    bank, _ = fine_bank
    ann, step_pipe, delta = tiny_pipe(), tiny_pipe(), tiny_pipe()
    convert_pipeline(step_pipe, K=20, method="ours", bank_path=bank)
    convert_pipeline(delta, K=20, method="ours", bank_path=bank, coding=DeltaCoding(K=16))
    fit_by_hand(delta.unet, step=1e-4)  # changes to 1e-4, up to 6.5 per step
    reference, a, b = (generate(p, range(4), OPTIONS) for p in (ann, step_pipe, delta))
    step_error = (a - reference).abs().max()  # the per-step model's own error (inputs beyond the bank's range)
    # the delta model matches the per-step model within that error, and is no further from the original
    assert (b - a).abs().max() <= step_error + 1e-3 and (b - reference).abs().max() <= step_error
    assert (b - reference).abs().max() < 1e-3  # with changes sent to 1e-4 it follows the original closely
    with measure_cost(step_pipe) as m_step:  # and the saving is real: fewer spikes than the per-step model
        generate(step_pipe, range(2), OPTIONS)
    with measure_cost(delta) as m_delta:
        generate(delta, range(2), OPTIONS)
    assert m_delta.report().spikes < m_step.report().spikes


@pytest.mark.parametrize("kind", ["ddpm", "ldm", "sd"])
def test_ddpm_latent_and_guided_text_pipelines_sample_with_delta_coding_through_their_own_call(kind, tmp_path, fine_bank):
    bank, _ = fine_bank
    ann, options, _, _ = build(kind, tmp_path)
    if kind == "ddpm":  # with its own DDPM scheduler (fresh noise at every step)
        ann = KINDS["ddpm"][0](tmp_path)
    step_pipe, delta = copy.deepcopy(ann), copy.deepcopy(ann)
    convert_pipeline(step_pipe, K=20, method="ours", bank_path=bank)
    convert_pipeline(delta, K=20, method="ours", bank_path=bank, coding=DeltaCoding(K=16))
    fit_by_hand(delta.unet, step=1e-4)
    reference, a, b = (generate(p, range(3), options) for p in (ann, step_pipe, delta))
    # the delta model follows the original as closely as the per-step model does (sd: guided, 3 prompts)
    assert (b - reference).abs().max() <= (a - reference).abs().max() + 1e-3
    assert torch.equal(b, generate(delta, range(3), options))  # every __call__ a new run
    assert (generate(delta, [1], options) - b[1:2]).abs().max() < 5e-3  # image 1 alone as in its batch of 3
    with measure_cost(step_pipe) as m_step:
        generate(step_pipe, range(2), options)
    with measure_cost(delta) as m_delta:
        generate(delta, range(2), options)
    assert m_delta.report().spikes < m_step.report().spikes


def test_fit_delta_fits_every_encoder_and_records_it():
    pipe = tiny_pipe()
    convert_pipeline(pipe, K=8, method="ours", coding=DeltaCoding(K=4))
    sites = fit_delta(pipe, OPTIONS, images=2, spike_weight=0.0, search=QUICK)
    assert len(sites) == len(encoders(pipe.unet)) and all(bool(e.fitted) and e.K == 4 for _, e in encoders(pipe.unet))
    event = pipe.unet.fs_config.events("delta-fit")[-1]
    assert event["spike_weight"] == 0.0 and event["images"] == 2 and pipe.unet.fs_config.coding.K == 4
    assert all(r["mse"] < r["mean_square_change"] for r in sites if r["mean_square_change"] > 0)


def test_a_larger_spike_price_fits_encoders_that_send_fewer_spikes():
    cheap, dear = tiny_pipe(), tiny_pipe()
    for pipe, weight in ((cheap, 0.0), (dear, 1.0)):
        convert_pipeline(pipe, K=4, method="ours", coding="delta")
        fit_delta(pipe, OPTIONS, images=2, spike_weight=weight, search=QUICK)
    counts = []
    for pipe in (cheap, dear):
        with measure_cost(pipe) as meter:
            generate(pipe, range(2), OPTIONS)
        counts.append(meter.report().spikes)
    assert counts[1] < counts[0]


@pytest.mark.integration
def test_train_snn_fine_tunes_a_delta_model_and_refits_its_encoders_to_the_trained_weights(tmp_path, cli):
    pipe = tiny_pipe()
    convert_pipeline(pipe, K=4, method="ours", coding="delta")
    fit_delta(pipe, OPTIONS, images=2, spike_weight=0.05, search=QUICK)
    save_pipeline(pipe, tmp_path / "start")
    code, _, err = cli("train", "snn", "--model", tmp_path / "start", "--reference", "self", "--train-unet",
                       "--distill-on", "trajectories", "--trajectories", "2", "--sampling-steps", "6", "--steps", "2",
                       "--batch-size", "4", "--lr", "1e-2", "--held-out", "0", "--checkpoint-every", "100",
                       "--out", tmp_path / "ft")
    assert code == 0, err
    tuned = load_pipeline(tmp_path / "ft" / "model")
    spec = tuned.unet.fs_config
    events = [e["event"] for e in spec.history]
    assert spec.coding.name == "delta" and events[-2:] == ["finetune", "delta-fit"]  # refitted after training
    first, last = spec.events("delta-fit")
    assert (last["images"], last["seed"], last["spike_weight"]) == (first["images"], first["seed"], 0.05)
    assert all(bool(e.fitted) for _, e in encoders(tuned.unet))
    assert torch.equal(generate(tuned, range(2), OPTIONS), generate(tuned, range(2), OPTIONS))


def test_refitting_needs_a_first_fit():
    pipe = tiny_pipe()
    convert_pipeline(pipe, K=4, method="ours", coding="delta")
    with pytest.raises(ValueError, match="never fitted"):
        refit_encoders(pipe, OPTIONS)


def test_a_price_in_value_units_sends_fewer_spikes_per_step_when_more_steps_make_smaller_changes():
    spikes = {}
    for price, weight in (("change", 0.05), ("value", 0.002)):
        for steps in (5, 20):
            pipe = tiny_pipe()
            convert_pipeline(pipe, K=4, method="ours", coding="delta")
            options = SamplingOptions(steps=steps)
            sites = fit_delta(pipe, options, images=2, spike_weight=weight, search=QUICK, price=price)
            assert all(r["mean_square_value"] > r["mean_square_change"] for r in sites if r["mean_square_change"])
            with measure_cost(pipe) as meter:
                generate(pipe, range(2), options)
            spikes[price, steps] = meter.report().spikes / steps
    # priced against the change, the encoders get finer as the changes shrink; against the
    # value, the dead zone stays put and the spikes per step fall further
    assert spikes["value", 20] / spikes["value", 5] < spikes["change", 20] / spikes["change", 5]
    assert pipe.unet.fs_config.events("delta-fit")[-1]["price"] == "value"
    with pytest.raises(ValueError, match="price must be one of change, value"):
        fit_delta(pipe, OPTIONS, price="values")


def test_pricing_spikes_by_their_accumulates_moves_spikes_to_sites_that_feed_narrow_layers():
    fanout, fits = {}, {}
    for cost in ("spikes", "acs"):
        pipe = tiny_pipe()
        convert_pipeline(pipe, K=4, method="ours", coding="delta")
        fits[cost] = fit_delta(pipe, OPTIONS, images=2, spike_weight=0.5, search=QUICK, cost=cost)
        with measure_cost(pipe) as meter:
            generate(pipe, range(2), OPTIONS)
        report = meter.report()
        fanout[cost] = sum(s.acs for s in report.sites) / report.spikes  # accumulates per spike
        assert pipe.unet.fs_config.events("delta-fit")[-1]["cost"] == cost
    assert all(r["relative_fanout"] == 1.0 for r in fits["spikes"] if r["mean_square_value"] is not None)
    weights = [r["relative_fanout"] for r in fits["acs"] if r["mean_square_value"] is not None]
    assert min(weights) < 1.0 < max(weights)  # this model's sites feed layers of different widths
    assert fanout["acs"] < fanout["spikes"]
    refit_encoders(pipe, OPTIONS)
    assert pipe.unet.fs_config.events("delta-fit")[-1]["cost"] == "acs"
    with pytest.raises(ValueError, match="cost must be one of spikes, acs"):
        fit_delta(pipe, OPTIONS, cost="macs")


def test_eta_above_zero_still_runs_and_repeats():
    pipe = delta_pipe()
    options = SamplingOptions(steps=6, eta=0.5)
    a, b = generate(pipe, range(2), options), generate(pipe, range(2), options)
    assert torch.equal(a, b) and torch.isfinite(a).all()


def test_save_and_load_keep_the_coding_and_the_encoders(tmp_path):
    pipe = delta_pipe(K=6, step=2e-3)
    pipe.unet.save_pretrained(tmp_path / "unet")
    loaded = load_model(tmp_path / "unet")
    assert loaded.fs_config.coding.name == "delta"
    for (name, a), (_, b) in zip(encoders(pipe.unet), encoders(loaded)):
        assert torch.equal(a.h, b.h) and torch.equal(a.T, b.T) and bool(b.fitted), name
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outs = [[m(x * (1 + 0.05 * k), 80 - 10 * k).sample for k in range(3)] for m in (pipe.unet.eval(), loaded)]
    assert all(torch.equal(p, q) for p, q in zip(*outs))


def test_step_coding_codes_every_call_in_full():
    pipe = delta_pipe()
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), step_coding(pipe.unet):
        a, b = pipe.unet(x, 50).sample, pipe.unet(x, 40).sample
    assert not any(e.started for _, e in encoders(pipe.unet))
    step = tiny_pipe()
    convert_pipeline(step, K=8, method="ours")
    with torch.no_grad():
        assert torch.equal(a, step.unet(x, 50).sample) and torch.equal(b, step.unet(x, 40).sample)


def test_bad_codings_are_clear_errors():
    from diffusers import AutoencoderKL

    with pytest.raises(ValueError, match="coding must be one of step, delta"):
        convert_unet(tiny_unet(), K=4, coding="sigma")
    with pytest.raises(ValueError, match="needs a denoiser called once per denoising step"):
        convert_unet(AutoencoderKL(latent_channels=2, **AUTOENCODER), K=4, coding="delta")
    pipe = tiny_pipe()
    convert_pipeline(pipe, K=4, method="ours", coding="delta")
    with pytest.raises(RuntimeError, match="fit_delta"):
        generate(pipe, range(1), OPTIONS)
    plain = tiny_pipe()
    convert_pipeline(plain, K=4, method="ours")
    with pytest.raises(ValueError, match="no component coding changes"):
        fit_delta(plain, OPTIONS)


def test_the_rate_coded_if_baseline_counts_floor_K_x_over_theta_spikes():
    from spiking_ddim.calibration import rate_coded_if

    pipe = tiny_pipe()
    convert_pipeline(pipe, K=4, method="ours")
    sites = rate_coded_if(pipe, OPTIONS, num_images=2)
    act = fs_activations(pipe.unet)[0][1]
    neuron, theta = act.neurons[0], sites[0]["threshold"]
    x = torch.tensor([-1.0, 0.1 * theta, 0.3 * theta, 0.99 * theta, 2 * theta])
    out, count = neuron.code(x)
    assert count.tolist() == [0, 0, 1, 3, 4]  # floor(K x / theta), at most K: the IF neuron's spikes
    assert torch.allclose(out, count * theta / 4)
    assert pipe.unet.fs_config.events("if-baseline")[-1]["percentile"] == 99.9


@pytest.mark.integration
def test_sample_with_delta_coding_records_it(tmp_path, cli):
    import json

    save_pipeline(tiny_pipe(), tmp_path / "tiny")  # a small UNet: the encoders' fit takes seconds
    code, out, err = cli("sample", "--model", tmp_path / "tiny", "--coding", "delta", "--K", "4", "--delta-price", "value",
                         "--num-images", "4", "--batch-size", "4", "--steps", "6", "--real", "none",
                         "--out", tmp_path / "run")
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["coding"] == "delta" and metrics["delta_K"] == 4 and metrics["spiking"] == "swish"
    assert [e["event"] for e in metrics["history"]] == ["convert", "delta-fit"]
    fit = metrics["history"][-1]
    assert (fit["spike_weight"], fit["price"], fit["cost"]) == (0.0002, "value", "acs")
    assert metrics["energy"]["memory"]["ratio"] > 0
    assert "delta coding (K=4)" in out + err and "memory-aware" in out


def test_a_signed_fs_neuron_codes_both_signs_with_spikes_of_the_magnitude():
    from fs_neurons.signed import SignedFSNeuron

    n = SignedFSNeuron.binary(3, top=7.0).eval()  # levels 0..7, step 1, rounded
    x = torch.tensor([-6.2, -0.4, 0.0, 2.6, 9.0])
    out, count = n.code(x)
    assert out.tolist() == [-6.0, 0.0, 0.0, 3.0, 7.0] and count.tolist() == [2.0, 0.0, 0.0, 2.0, 3.0]
    assert torch.equal(n(x), out)


def test_fully_spiking_leaves_only_the_first_layer_and_attention_matmuls_dense(tmp_path):
    pipe = tiny_pipe()
    report = convert_pipeline(pipe, K=6, method="ours", spiking="all")["unet"]
    assert "conv_in" not in report.inputs and "down_blocks.1.attentions.0.to_q" in report.inputs
    assert pipe.unet.fs_config.spiking == "all"
    with measure_cost(pipe) as meter:
        generate(pipe, range(2), OPTIONS)
    layers = {lay["name"]: lay for lay in meter.report().energy(2).layers}
    dense = {name for name, lay in layers.items() if lay["input"] != "spikes"}
    assert dense == {"conv_in"} | {name for name, lay in layers.items() if lay["kind"] == "matmul"}
    # saved and loaded: the same encoders, the same images
    pipe.unet.save_pretrained(tmp_path / "unet")
    loaded = load_model(tmp_path / "unet")
    assert loaded.fs_config.spiking == "all" and len(fs_activations(loaded)) == len(fs_activations(pipe.unet))
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x, 50).sample, pipe.unet(x, 50).sample)


def test_calibration_fits_the_input_encoders_to_their_inputs():
    from spiking_ddim.calibration import calibrate

    ann, pipe = tiny_pipe(), tiny_pipe()
    convert_pipeline(pipe, K=8, method="ours", spiking="all")
    reference = generate(ann, range(4), OPTIONS)
    before = (generate(pipe, range(4), OPTIONS) - reference).pow(2).mean()
    sites = calibrate(pipe, OPTIONS, num_images=2, search=QUICK)
    after = (generate(pipe, range(4), OPTIONS) - reference).pow(2).mean()
    inputs = [s for s in sites if ".input_encoder[" in s.name]
    assert inputs and all(s.mse_after <= s.mse_before for s in inputs) and after < before


def test_fully_spiking_with_delta_coding_runs_through_the_pipeline():
    pipe = tiny_pipe()
    convert_pipeline(pipe, K=8, method="ours", spiking="all", coding="delta")
    fit_delta(pipe, OPTIONS, images=2, spike_weight=0.1, search=QUICK)
    a, b = generate(pipe, range(2), OPTIONS), generate(pipe, range(2), OPTIONS)
    assert torch.equal(a, b) and torch.isfinite(a).all()
    assert any(".input_encoder" in name for name, _ in encoders(pipe.unet))


def test_delta_state_is_one_float32_value_per_site_input_element_and_reset_frees_it():
    from spiking_ddim.speed import state_bytes

    pipe = delta_pipe()
    elements = []
    hooks = [act.register_forward_pre_hook(lambda mod, args: elements.append(args[0].numel()))
             for _, act in fs_activations(pipe.unet)]
    with torch.no_grad():
        pipe.unet(torch.zeros(3, 1, 8, 8), torch.tensor(999))  # one call of a run: every site once
    for h in hooks:
        h.remove()
    assert elements and state_bytes(pipe.unet) == 4 * sum(elements)
    reset_net(pipe.unet)
    assert state_bytes(pipe.unet) == 0
