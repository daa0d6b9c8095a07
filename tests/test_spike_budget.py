"""Spike-aware fitting: the exact expected spike count, spike weights and hard budgets."""

import math

import pytest
import torch

from fs_neurons import InputDistribution, OursConfig, fit_ours
from fs_neurons.exact import SpikeObjective, exact_cost, search_many
from fs_neurons.simulate import fs_simulate
from fs_neurons.targets import swish

QUICK = OursConfig(pool=24, restarts=1, iters=50, elite=3, elite_iters=50, rounds=1, mutants=12, round_iters=40,
                   polish_iters=60)
DIST = InputDistribution.gaussian(0.3, 1.5, 4000)


def test_expected_spikes_equal_the_count_simulated_on_samples_of_the_distribution():
    fit = fit_ours("swish", 8, DIST, seed=0, config=QUICK)
    x = torch.randn(400_000, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 1.5 + 0.3
    _, count = fs_simulate(x, *(torch.tensor(v, dtype=torch.float64) for v in (fit.h, fit.d, fit.T)),
                           count_spikes=True)
    standard_error = float(count.std()) / math.sqrt(x.numel())
    assert 1 < fit.spikes < 8
    assert abs(float(count.mean()) - fit.spikes) < 4 * standard_error + 2e-3  # + the grid's discretisation


def test_expected_spikes_are_exact_for_many_random_neurons_on_sample_distributions():
    g = torch.Generator().manual_seed(1)
    samples = torch.randn(20_000, generator=g, dtype=torch.float64) * 2 + 0.5
    dist = InputDistribution.from_samples(samples)
    h, T = torch.rand(32, 6, generator=g, dtype=torch.float64) * 3, torch.randn(32, 6, generator=g, dtype=torch.float64) * 2
    mse, spikes, d = exact_cost(h, None, T, dist.moments(swish))
    for b in range(32):
        _, count = fs_simulate(samples, h[b], d[b], T[b], count_spikes=True)
        assert float(spikes[b]) == pytest.approx(float(count.mean()), abs=1e-3)


def test_a_spike_weight_and_a_tighter_budget_never_give_more_spikes():
    plain = fit_ours("swish", 8, DIST, seed=0, config=QUICK)
    weighted = fit_ours("swish", 8, DIST, seed=0, config=QUICK, spike_weight=1e-2)
    assert weighted.spikes < plain.spikes and weighted.mse > plain.mse
    spent = [fit_ours("swish", 8, DIST, seed=0, config=QUICK, max_spikes=b).spikes for b in (2.0, 1.0, 0.5)]
    assert all(s <= b + 1e-9 for s, b in zip(spent, (2.0, 1.0, 0.5))), spent
    assert spent == sorted(spent, reverse=True) and spent[0] <= plain.spikes


def test_zero_spike_weight_and_no_budget_is_the_plain_fit():
    seeds = [torch.Generator().manual_seed(7)], [torch.Generator().manual_seed(7)]
    plain, _ = search_many([DIST], swish, 6, QUICK, seeds[0])
    scored, _ = search_many([DIST], swish, 6, QUICK, seeds[1], objective=SpikeObjective.of(1))
    # the scored search also holds a silent neuron; it ranks last, so the elites' best agree
    assert torch.equal(plain[0].h[0], scored[0].h[0]) and torch.equal(plain[0].T[0], scored[0].T[0])
    assert float(plain[0].mse[0]) == float(scored[0].mse[0])
    direct = fit_ours("swish", 6, DIST, seed=7, config=QUICK, spike_weight=0.0, max_spikes=None)
    assert direct.h == fit_ours("swish", 6, DIST, seed=7, config=QUICK).h


def test_a_budget_of_zero_gives_a_neuron_that_never_spikes():
    fit = fit_ours("swish", 4, DIST, seed=0, config=QUICK, max_spikes=0.0)
    x = torch.linspace(-8, 12, 10_001, dtype=torch.float64)
    x = x[(x >= DIST.lo) & (x <= DIST.hi)]
    out, count = fs_simulate(x, *(torch.tensor(v, dtype=torch.float64) for v in (fit.h, fit.d, fit.T)),
                             count_spikes=True)
    assert fit.spikes == 0 and count.sum() == 0 and out.abs().max() == 0


@pytest.mark.parametrize("kwargs,message", [
    (dict(max_spikes=-1.0), "max_spikes must be >= 0"),
    (dict(max_spikes=math.nan), "max_spikes must be >= 0"),
    (dict(spike_weight=-0.1), "spike_weight must be >= 0"),
    (dict(spike_weight=math.inf), "spike_weight must be finite"),
])
def test_bad_budgets_and_weights_give_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit_ours("swish", 4, DIST, seed=0, config=QUICK, **kwargs)


def test_a_neuron_of_fewer_steps_padded_to_K_keeps_its_output_and_spikes():
    from fs_neurons import FSNeuron
    from spiking_ddim.calibration import lower_steps, padded

    assert (lower_steps(16), lower_steps(8), lower_steps(6), lower_steps(3)) == ([8, 4], [4, 2], [3], [])
    short = FSNeuron.from_bank("swish", 4, "ours-unet")
    long = FSNeuron.from_params(**padded(short.params(), 9, hi=6.0))
    x = torch.linspace(-8.0, 6.0, 20_001)
    seen = {}  # (backend, K) -> (output, spike count per element)
    for neuron in (short, long):
        neuron.register_spike_hook(lambda n, out, count: seen.__setitem__((n.backend, n.K), (out, count)))
        for backend in ("simulate", "lookup"):
            neuron.backend = backend
            with torch.no_grad():
                neuron(x)
    for backend in ("simulate", "lookup"):
        (out4, count4), (out9, count9) = seen[backend, 4], seen[backend, 9]
        assert count4.sum() > 0 and torch.equal(out4, out9) and torch.equal(count4, count9), backend


def _tiny_converted_pipeline():
    from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel

    from spiking_ddim import convert_pipeline

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32), layers_per_block=1,
                       norm_num_groups=8, down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)
    pipe = DDIMPipeline(unet=unet.eval(), scheduler=DDIMScheduler(num_train_timesteps=100))
    convert_pipeline(pipe, K=6)
    return pipe


def test_calibration_under_a_budget_spends_at_most_it_and_a_tighter_one_spends_less():
    from spiking_ddim import SamplingOptions
    from spiking_ddim.calibration import LOWER_K_GRID, SPIKE_GRID, SpikeBudget, apply_budget, fit_site_options
    from spiking_ddim.calibration.budget import set_options

    pipe, options = _tiny_converted_pipeline(), SamplingOptions(steps=3)
    found = fit_site_options(pipe, options, num_images=2, search=QUICK)
    neurons = {name: found.neurons[name] for name, *_ in found.sites}
    # per job: the spike-weight grid, the 3-step neurons (padded to K=6) at their grid, silent
    for opts in found.options.values():
        assert len(opts) == len(SPIKE_GRID) + len(LOWER_K_GRID) + 1
        assert all(len(o.params[p]) == 6 for o in opts for p in ("h", "d", "T"))
        assert all(o.params["d"][3:] == [0.0] * 3 for o in opts[len(SPIKE_GRID):-1])

    def mean_spikes(reports):  # expected spikes per neuron per call over the whole network
        return sum(neurons[r.name] * r.spikes_after for r in reports) / sum(neurons.values())

    # every site's sensitivity was measured: noise at a site moves the denoiser's output
    assert set(found.sensitivity) == set(neurons) and all(v > 0 for v in found.sensitivity.values())
    with pytest.raises(ValueError, match="weighting must be one of sensitivity, neurons"):
        apply_budget(pipe, found, SpikeBudget("spikes", 1.0), weighting="uniform")
    plain = apply_budget(pipe, found)
    free = mean_spikes(plain)
    state = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    loose = apply_budget(pipe, found, SpikeBudget("spikes", 1.01 * free))  # does not bind: the plain fits
    assert [(r.mse_after, r.spikes_after) for r in loose] == [(r.mse_after, r.spikes_after) for r in plain]
    assert all(torch.equal(v, pipe.unet.state_dict()[k]) for k, v in state.items())
    spent, errors = [], []
    for fraction in (0.8, 0.5, 0.2, 0.02):  # a budget of 0 (every site silent) is refused
        reports = apply_budget(pipe, found, SpikeBudget("spikes", fraction * free))
        spent.append(mean_spikes(reports))
        errors.append(sum(neurons[r.name] * r.mse_after for r in reports))
        assert spent[-1] <= fraction * free + 1e-9, (fraction, spent[-1], free)
        assert pipe.unet.fs_config.budget == {"kind": "spikes", "value": fraction * free}
    assert spent == sorted(spent, reverse=True) and spent[-1] < spent[-2] and spent[0] > 0
    assert errors == sorted(errors)  # per site, a tighter budget never picks an option with less error
    # energy: the accumulates of the chosen spikes fit what the ratio leaves after the dense layers
    budget = SpikeBudget("energy", (1 + found.dense_macs / found.ann_macs) / 2)  # between the floor and 1
    reports = apply_budget(pipe, found, budget)
    c = budget.constants
    acs = sum(neurons[r.name] * found.acs_per_spike[r.name] * r.spikes_after for r in reports)
    assert (c.mac_pj * found.dense_macs + c.ac_pj * acs) / (c.mac_pj * found.ann_macs) <= budget.value + 1e-9
    # every site at its best 3-step fit: a budget of what that spends is met, and the choice is never
    # further from the original's denoiser output on the probe (the additive error model can misjudge it)
    fewer = {k: min((i for i, o in enumerate(opts) if o.steps == 3), key=lambda i: opts[i].mse)
             for k, opts in found.options.items()}
    spend = sum(neurons[name] * found.options[key][fewer[key]].spikes for name, _, _, key in found.sites)
    budget, probe = SpikeBudget("spikes", spend / sum(neurons.values())), found.probe
    set_options(found, fewer)
    fewer_error = probe.error(pipe.unet)
    for weighting in ("sensitivity", "neurons"):
        found.probe = None  # the additive model's choice alone
        apply_budget(pipe, found, budget, weighting)
        additive_error = probe.error(pipe.unet)
        found.probe = probe
        assert mean_spikes(apply_budget(pipe, found, budget, weighting)) <= budget.value + 1e-9
        assert probe.error(pipe.unet) == min(additive_error, fewer_error), weighting
    with pytest.raises(ValueError, match="below what the dense \\(MAC\\) layers alone cost"):
        apply_budget(pipe, found, SpikeBudget("energy", 0.5 * found.dense_macs / found.ann_macs))
    for kind, value, message in (("spikes", -1.0, "finite number > 0"), ("energy", math.inf, "finite number > 0"),
                                 ("joules", 1.0, "kind must be one of spikes, energy")):
        with pytest.raises(ValueError, match=message):
            SpikeBudget(kind, value)


@pytest.mark.parametrize("argv,message", [
    (["convert", "--spike-budget", "1", "--out", "x"], "--spike-budget works through calibration: add --calibrate"),
    (["sample", "--energy-budget", "0.5"], "--energy-budget works through calibration: add --calibrate"),
    (["train", "snn", "--spike-budget", "2", "--out", "x"], "--spike-budget works through calibration"),
    (["convert", "--calibrate", "--spike-budget", "-1", "--out", "x"], "--spike-budget: the spikes budget must be a finite"),
    (["calibrate", "--model", "m", "--energy-budget", "nan", "--out", "x"], "--energy-budget: the energy budget must be"),
])
def test_budget_flags_give_clear_errors_before_any_work(argv, message, tmp_path, monkeypatch):
    from spiking_ddim.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=message):
        main(argv)


def test_an_energy_budget_below_the_dense_layers_floor_stops_before_the_search(tmp_path):
    from spiking_ddim.cli import main

    with pytest.raises(SystemExit, match="energy budget 0.1 is below what the dense \\(MAC\\) layers alone cost"):
        main(["convert", "--K", "4", "--calibrate", "--energy-budget", "0.1", "--calibration-images", "1",
              "--steps", "2", "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()
