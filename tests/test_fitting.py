"""Fitting FS neurons: exact loss, tendencies, TBPI and its baselines, ours, distributions."""

import math

import numpy as np
import pytest
import torch

from fs_neurons import (
    InputDistribution,
    OursConfig,
    fit_baselines,
    fit_ours,
    fit_ours_many,
    fit_tendencies,
    fit_tendency,
    fs_mse,
)
from fs_neurons.distribution import CumulativeMoments
from fs_neurons.exact import exact_mse, optimal_d, pieces
from fs_neurons.simulate import fs_simulate
from fs_neurons.targets import gelu, resolve_activation, swish


def random_neurons(B, K, seed):
    g = torch.Generator().manual_seed(seed)
    h = torch.rand(B, K, generator=g, dtype=torch.float64) * 4 - 0.5
    T = torch.randn(B, K, generator=g, dtype=torch.float64) * 3
    d = torch.randn(B, K, generator=g, dtype=torch.float64)
    return h, d, T


@pytest.mark.parametrize(
    "dist",
    [
        InputDistribution.uniform(-8, 12, 20_000),
        InputDistribution.gaussian(0.5, 2.0, 20_000),
        InputDistribution.from_samples(torch.randn(50_000, generator=torch.Generator().manual_seed(0)) * 3 + 1),
    ],
    ids=["uniform", "gaussian", "samples"],
)
def test_exact_loss_equals_simulated_mse(dist):
    h, d, T = random_neurons(6, 7, seed=1)
    # snap the neurons' breakpoints off the grid points so both sides see the same pieces
    exact, _ = exact_mse(h, d, T, dist.moments(swish))
    for b in range(6):
        sim = fs_mse(h[b], d[b], T[b], swish, dist)
        assert exact[b].item() == pytest.approx(sim, rel=2e-3, abs=1e-9)


def test_exact_loss_is_exact_when_breakpoints_sit_on_cell_edges():
    dist = InputDistribution.uniform(-8, 12, 2001)  # spacing 0.01, cell edges at k*0.01 + 0.005
    h = torch.tensor([[2.0, 1.0, 0.5]], dtype=torch.float64)
    T = torch.tensor([[1.005, 0.505, 0.255]], dtype=torch.float64)
    d = torch.tensor([[1.9, 1.1, 0.4]], dtype=torch.float64)
    exact, _ = exact_mse(h, d, T, dist.moments(swish))
    assert exact.item() == pytest.approx(fs_mse(h[0], d[0], T[0], swish, dist), rel=1e-9)


def test_many_distributions_give_each_candidate_the_loss_of_its_own():
    g = torch.Generator().manual_seed(4)
    dists = [InputDistribution.from_samples(torch.randn(5000, generator=g) * s + m) for s, m in [(1, 0), (3, 2), (0.2, -1)]]
    h, d, T = random_neurons(6, 5, seed=3)
    group = torch.tensor([2, 0, 1, 1, 2, 0])
    together, _ = exact_mse(h, d, T, CumulativeMoments.of(dists, swish), group)
    alone = torch.cat([exact_mse(h[b:b + 1], d[b:b + 1], T[b:b + 1], dists[int(group[b])].moments(swish))[0]
                       for b in range(6)])
    torch.testing.assert_close(together, alone, rtol=1e-12, atol=0)


def test_fitting_many_sites_in_one_batch_gives_each_the_fit_it_gets_alone():
    g = torch.Generator().manual_seed(5)
    dists = [InputDistribution.from_samples(torch.randn(4000, generator=g) * s + m) for s, m in [(1, 0), (2, -1), (0.5, 1)]]
    quick = OursConfig(pool=16, restarts=1, iters=40, elite=3, elite_iters=40, rounds=1, mutants=8, round_iters=30,
                       polish_iters=60)
    start = ([0.5, 0.25, 0.125, 0.06], [0.4, 0.2, 0.1, 0.05])
    starts = [None, start, start]
    batched = fit_ours_many("swish", 4, dists, [7, 8, 9], quick, starts)
    for dist, seed, st, fit in zip(dists, [7, 8, 9], starts, batched):
        alone = fit_ours("swish", 4, dist, seed=seed, config=quick, start=st)
        assert fit.mse == pytest.approx(alone.mse, rel=1e-9)
        assert fit.h == pytest.approx(alone.h, rel=1e-9, abs=1e-12)
        if st is not None:  # never worse than the start with its best d
            assert fit.mse <= exact_mse(torch.tensor([st[0]], dtype=torch.float64), None,
                                        torch.tensor([st[1]], dtype=torch.float64), dist.moments(swish))[0].item() * (1 + 1e-9)


def test_optimal_d_matches_least_squares_on_simulated_spikes():
    dist = InputDistribution.uniform(-8, 12, 5000)
    h, _, T = random_neurons(3, 5, seed=2)
    m = dist.moments(swish)
    p = pieces(h, T, m.lo, m.hi)
    d = optimal_d(p, m.at(p.hi) - m.at(p.lo), 3, 5)
    for b in range(3):
        # spike patterns of every grid point, from the simulation
        v, Z = dist.x.clone(), []
        for t in range(5):
            z = (v > T[b, t]).double()
            Z.append(z)
            v = v - h[b, t] * z
        Z = torch.stack(Z, 1).numpy()
        ref = np.linalg.lstsq(Z, swish(dist.x).numpy(), rcond=None)[0]
        fit_err = np.mean((Z @ d[b].numpy() - swish(dist.x).numpy()) ** 2)
        ref_err = np.mean((Z @ ref - swish(dist.x).numpy()) ** 2)
        assert fit_err == pytest.approx(ref_err, rel=1e-3, abs=1e-10)


@pytest.mark.parametrize(
    "kind,curve",
    [
        ("log", lambda t: -1.378 * np.log(t) + 3.5742),
        ("quadratic", lambda t: 0.6408 * t**2 - 4.8293 * t + 10.186),
        ("cubic", lambda t: 0.01 * t**3 - 0.2 * t**2 + t - 2),
        ("exponential", lambda t: 2.0 * np.exp(-0.3 * t) + 0.5),
    ],
)
def test_tendency_fits_recover_known_curves(kind, curve):
    t = np.arange(1, 13, dtype=float)
    fit = fit_tendency(curve(t), kind)
    np.testing.assert_allclose(fit.values, curve(t), atol=1e-6)
    assert fit.rmse < 1e-6


def test_auto_tendency_prefers_the_true_family_and_never_interpolates():
    t = np.arange(1, 9, dtype=float)
    rng = np.random.default_rng(0)
    params = {k: -a * np.log(t) + b + rng.normal(0, 0.01, t.size) for k, a, b in (("h", 1.4, 3.6), ("d", 1.9, 4.0), ("T", 3.7, 7.1))}
    assert next(iter(fit_tendencies(params).values())).kind == "log"
    # with K=4 a cubic would pass through every point; auto must not pick it
    four = {k: v[:4] for k, v in params.items()}
    assert next(iter(fit_tendencies(four).values())).kind != "cubic"


def test_short_tbpi_run_lowers_the_loss():
    dist = InputDistribution.uniform(-8, 12, 5000)
    res = fit_baselines("swish", 4, seeds=[0], dist=dist, epochs=300, lr=1e-2, tendency="quadratic", log_every=50)
    tbpi = res[("tbpi", 0)]
    pre, post = tbpi.curves["pretrain"], tbpi.curves["retrain"]
    assert pre[-1] < pre[0] and post[-1] < post[0]
    assert tbpi.tendency["h"].kind == "quadratic"
    # the re-initialisation came from the fitted curves
    assert tbpi.mse == pytest.approx(fs_mse(tbpi.h, tbpi.d, tbpi.T, swish, dist))
    assert set(m for m, _ in res) == {"random", "gaussian", "tbpi"}


def test_baselines_run_vectorised_over_seeds_like_single_runs():
    dist = InputDistribution.uniform(-8, 12, 2000)
    both = fit_baselines("swish", 3, seeds=[0, 1], dist=dist, epochs=50, lr=1e-2, tendency="log")
    one = fit_baselines("swish", 3, seeds=[1], dist=dist, epochs=50, lr=1e-2, tendency="log")
    for m in ("random", "gaussian", "tbpi"):
        np.testing.assert_allclose(both[(m, 1)].h, one[(m, 1)].h, rtol=1e-4, atol=1e-5)


SMALL = OursConfig(pool=96, iters=150, rounds=1, mutants=48, round_iters=80, polish_iters=100)


def test_ours_beats_the_papers_tbpi_at_K4():
    f = fit_ours("swish", 4, config=SMALL)
    assert 100 * f.mse < 3.8795
    # the recorded error is the simulated one, and the search only ever improved
    assert f.mse == pytest.approx(fs_mse(f.h, f.d, f.T, swish, InputDistribution.uniform()), rel=1e-12)
    phases = f.curves["search"]
    assert all(a >= b for a, b in zip(phases, phases[1:]))


def test_a_fit_under_a_slow_clock_gives_the_same_neuron(monkeypatch):
    """Searches stop on counts: a clock that jumps an hour at every reading (a very busy
    machine) changes neither the phases run nor the neuron found."""
    import time

    config = OursConfig(pool=16, restarts=2, iters=20, elite=2, elite_iters=20, rounds=2, mutants=8, round_iters=20,
                        polish_iters=20)
    normal = fit_ours("swish", 4, seed=3, config=config)
    now = [0.0]

    def slow() -> float:
        now[0] += 3600.0
        return now[0]

    for name in ("perf_counter", "time", "monotonic"):
        monkeypatch.setattr(time, name, slow)
    busy = fit_ours("swish", 4, seed=3, config=config)
    assert now[0] > 0  # the fit did read the clock (its seconds), so the clock really was slow
    assert len(busy.curves["search"]) == len(normal.curves["search"]) == config.restarts + config.rounds + 1
    assert (busy.h, busy.d, busy.T) == (normal.h, normal.d, normal.T)


def test_ours_never_ends_worse_than_its_start():
    start = fit_ours("swish", 3, config=SMALL)
    again = fit_ours("swish", 3, seed=5, config=OursConfig(pool=4, iters=5, rounds=0, polish_iters=0),
                     start=(start.h, start.T))
    assert again.mse <= start.mse * (1 + 1e-9)


def test_distribution_aware_fit_wins_on_its_own_distribution():
    narrow = InputDistribution.gaussian(-1.0, 0.7, 20_000)
    on_narrow = fit_ours("gelu", 3, narrow, config=SMALL)
    on_uniform = fit_ours("gelu", 3, InputDistribution.uniform(-8, 12, 20_000), config=SMALL)
    assert fs_mse(on_narrow.h, on_narrow.d, on_narrow.T, gelu, narrow) < 0.5 * fs_mse(
        on_uniform.h, on_uniform.d, on_uniform.T, gelu, narrow)


def test_bad_fitting_inputs():
    with pytest.raises(ValueError, match="NaN"):
        InputDistribution.from_samples(torch.tensor([0.0, float("nan"), 1.0]))
    with pytest.raises(ValueError, match="NaN"):
        InputDistribution.from_samples(torch.tensor([0.0, float("inf"), 1.0]))
    with pytest.raises(ValueError, match="std"):
        InputDistribution.gaussian(0.0, 0.0)
    with pytest.raises(ValueError, match="lo < hi"):
        InputDistribution.uniform(2.0, 1.0)
    with pytest.raises(ValueError, match="lo < hi"):
        InputDistribution.uniform(0.0, math.inf)
    with pytest.raises(ValueError, match="activation must be one of .*got 'swishh'"):
        resolve_activation("swishh")
    with pytest.raises(ValueError, match="K"):
        fit_ours("swish", 0)
    with pytest.raises(ValueError, match="K"):
        fit_baselines("swish", -1)
    with pytest.raises(ValueError, match="NaN"):
        fit_tendency([1.0, float("nan"), 3.0], "log")
    with pytest.raises(ValueError, match="tendency must be one of"):
        fit_tendency([1.0, 2.0, 3.0], "spline")


def test_simulation_rejects_nothing_silently_for_nan_fitting_data():
    # NaN inputs to a neuron propagate (as for any activation) ...
    out, _ = fs_simulate(torch.tensor([float("nan")]), torch.ones(1), torch.ones(1), torch.zeros(1))
    assert torch.isnan(out).all()
    # ... but a distribution to fit on refuses them
    with pytest.raises(ValueError):
        InputDistribution(torch.tensor([0.0, float("nan")], dtype=torch.float64), torch.ones(2, dtype=torch.float64))
