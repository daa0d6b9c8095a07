"""Calibration's per-site options: record what every FS site sees, and fit each site to it.

:func:`record_site_inputs` samples the pipeline with its original activations and a
:class:`SiteInputMonitor` attached; :func:`fit_jobs` refits every distinct site (its
recorded inputs and starting neuron) with the exact search, all sites of one activation
and K in one batched search, at each spike weight of a grid and, under a budget, at fewer
time steps (padded to K) and silent: the options a budget chooses from (:class:`Option`,
gathered in :class:`SiteOptions`). Errors are MSE on the site's inputs; spikes are
expected spikes per neuron per call.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Optional

import torch
from diffusers import DiffusionPipeline

from fs_neurons import FSFit, InputDistribution, fit_ours_many, fs_mse
from fs_neurons.exact import OursConfig, exact_cost
from fs_neurons.names import UNET_METHOD
from fs_neurons.targets import resolve_activation
from fs_neurons.utils.seeds import stream

from ..fs_activation import make_neurons
from ..monitors import SiteInputMonitor
from ..pipelines import Progress, SamplingOptions, converted_components, counting_denoiser_calls, generate
from ..sites import fs_activations, original_activations

# A light search: the bank entry is already good; calibration adapts it to one site. All
# sites are searched in one batch; every phase runs to its count.
CALIBRATION_SEARCH = OursConfig(pool=16, restarts=1, iters=60, elite=3, elite_iters=100, rounds=1, mutants=12,
                                round_iters=50, polish_iters=120)
# Spike weights of the per-site options under a budget, in units of the site's starting MSE
# per spike; a never-spiking option is added to them.
SPIKE_GRID = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
# Spike weights of the options with fewer time steps (:func:`lower_steps`), same units.
LOWER_K_GRID = (0.0, 1.0)


def lower_steps(K: int) -> list[int]:
    """The smaller numbers of time steps a site of K steps may take under a budget: K // 2
    and K // 4, at least 2."""
    return sorted({k for k in (K // 2, K // 4) if 2 <= k < K}, reverse=True)


@dataclass(frozen=True)
class Option:
    """One fitted neuron of a site: parameters h, d, T, its MSE and expected spikes per call
    on the site's inputs, and the time steps it uses (fewer than its K when padded; 0 silent)."""

    params: dict
    mse: float
    spikes: float
    steps: int

    @classmethod
    def of(cls, fit: FSFit) -> "Option":
        return cls({k: getattr(fit, k) for k in ("h", "d", "T")}, fit.mse, fit.spikes, fit.K)


@dataclass
class SiteOptions:
    """What :func:`fit_site_options` found: every site (path, FSActivation, index, job key),
    each distinct job's options (the plain fit first) and starting MSE and spikes, and per
    site its neurons per forward pass, accumulates per spike downstream and ``sensitivity``
    (the denoiser's step-weighted output MSE per unit MSE at the site; denoiser sites
    only); the ANN's and the dense layers' MACs per forward pass; the ``probe`` the
    sensitivities were measured on (denoiser sites only)."""

    sites: list[tuple[str, object, int, bytes]]
    options: dict[bytes, list[Option]]
    before: dict[bytes, tuple[float, float]]
    neurons: dict[str, float] = field(default_factory=dict)
    acs_per_spike: dict[str, float] = field(default_factory=dict)
    ann_macs: float = 0.0
    dense_macs: float = 0.0
    sensitivity: dict[str, float] = field(default_factory=dict)
    probe: Optional[object] = None  # a probe.Probe (that module builds on this one)


@torch.no_grad()
def record_site_inputs(pipe: DiffusionPipeline, options: SamplingOptions = SamplingOptions(), num_images: int = 16,
                       batch_size: int = 16, seed: int = stream("calibration-inputs"),
                       progress: Progress = None) -> SiteInputMonitor:
    """Sample ``num_images`` images through ``pipe`` with the original activations in every FS
    component; the monitor holding each call site's inputs (:meth:`SiteInputMonitor.samples`).
    ``progress("record inputs", done, total)`` counts the denoiser's calls."""
    components = converted_components(pipe)
    if not components:
        raise ValueError(f"{type(pipe).__name__} has no FS components to calibrate; convert it first")
    monitor = SiteInputMonitor(torch.nn.ModuleList(components.values()))
    with contextlib.ExitStack() as stack:
        for model in components.values():
            stack.enter_context(original_activations(model))
        stack.enter_context(monitor)
        stack.enter_context(counting_denoiser_calls(pipe, num_images, batch_size, options, progress, "record inputs"))
        for start in range(0, num_images, batch_size):
            generate(pipe, range(start, min(start + batch_size, num_images)), options, seed)
    return monitor


def pooled_site_inputs(pipe: DiffusionPipeline, options: SamplingOptions = SamplingOptions(), num_images: int = 16,
                       points_per_site: int = 2000, seed: int = stream("calibration-inputs")) -> torch.Tensor:
    """The inputs of all FS sites of a converted pipeline while it samples, pooled with one
    weight per site: ``points_per_site`` evenly spaced quantiles of each site's recorded
    inputs, concatenated, shape (sites * points_per_site,), float64. What one neuron shared
    by every site (a bank entry) should be fitted to."""
    inputs = record_site_inputs(pipe, options, num_images, seed=seed)
    quantiles = []
    for model in converted_components(pipe).values():
        for _, act in fs_activations(model):
            for i in range(act.num_sites):
                s = torch.sort(inputs.samples(act, i).double()).values
                quantiles.append(s[torch.linspace(0, s.numel() - 1, points_per_site).round().long()])
    return torch.cat(quantiles)


def silent_params(K: int, hi: float) -> dict:
    """A neuron that never spikes on inputs <= ``hi`` (output 0)."""
    return {"h": [1.0] * K, "d": [0.0] * K, "T": [hi + 1.0] * K}


def padded(params: dict, K: int, hi: float) -> dict:
    """A neuron of fewer steps as one of K steps with the same output and spikes on inputs
    <= ``hi``: the added last steps' thresholds lie above any membrane potential it can
    reach (hi + sum |h| + 1)."""
    extra = K - len(params["h"])
    top = hi + sum(abs(v) for v in params["h"]) + 1.0
    return {"h": list(params["h"]) + [1.0] * extra, "d": list(params["d"]) + [0.0] * extra,
            "T": list(params["T"]) + [top] * extra}


def fit_jobs(jobs: list[tuple], seed: int, search: OursConfig, progress: Progress,
              weights: tuple[float, ...] = (0.0,)) -> list[tuple[list[Option], float, float]]:
    """Refit each job (activation, K, samples, start) to its samples at each spike weight
    (``weights`` times the start's MSE, per spike), the jobs of one activation and K in one
    batched search (job n draws from seed + n): per job its options (the plain fit, never
    worse than the start, first) and the start's MSE and expected spikes. With more than
    one weight, also neurons of :func:`lower_steps` time steps (from their bank entry, at
    :data:`LOWER_K_GRID`), padded to K, and a never-spiking one last. ``progress("fit sites",
    done, total)`` counts the exact-gradient steps of all searches."""
    results: list = [None] * len(jobs)
    batches: dict[tuple[str, int], list[int]] = {}
    for n, (activation, K, _, _) in enumerate(jobs):
        batches.setdefault((activation, K), []).append(n)
    budgeted = len(weights) > 1
    searches = sum(1 + (len(lower_steps(K)) if budgeted else 0) for _, K in batches)
    done, total = 0, searches * search.iterations

    def fit(members: list[int], dists: list, K: int, starts: list[dict], grid: tuple[float, ...],
            mses: list[float]) -> list[list[Option]]:
        """Per member, its fits at each weight of ``grid`` (times its ``mses`` entry)."""
        nonlocal done

        def step(_stage: str, steps: int, _steps: int, offset: int = done) -> None:
            if progress is not None:
                progress("fit sites", offset + steps, total)

        fits = fit_ours_many(jobs[members[0]][0], K, dists * len(grid), [seed + n for n in members] * len(grid),
                             search, [(st["h"], st["T"]) for st in starts] * len(grid), step,
                             spike_weight=[w * mse for w in grid for mse in mses])
        done += search.iterations
        return [[Option.of(fits[k * len(members) + j]) for k in range(len(grid))] for j in range(len(members))]

    for (activation, K), members in batches.items():
        _, target = resolve_activation(activation)
        dists = [InputDistribution.from_samples(jobs[n][2]) for n in members]
        starts = [jobs[n][3] for n in members]
        before = [option_cost(st, target, dist) for st, dist in zip(starts, dists)]
        mses = [mse for mse, _ in before]
        found = fit(members, dists, K, starts, weights, mses)
        for lower in lower_steps(K) if budgeted else []:
            start = make_neurons(activation, lower, UNET_METHOD, 1)[0].params()
            for j, opts in enumerate(fit(members, dists, lower, [start] * len(members), LOWER_K_GRID, mses)):
                found[j] += [Option(padded(o.params, K, dists[j].hi), o.mse, o.spikes, lower) for o in opts]
        for j, (dist, start) in enumerate(zip(dists, starts)):
            plain, *rest = found[j]
            options = [plain if plain.mse < before[j][0] else Option(start, *before[j], K), *rest]
            if budgeted:
                quiet = silent_params(K, dist.hi)
                options.append(Option(quiet, *option_cost(quiet, target, dist), 0))
            results[members[j]] = (options, *before[j])
    return results


def option_cost(params: dict, target, dist: InputDistribution) -> tuple[float, float]:
    """(MSE, expected spikes per call) of the neuron ``params`` on ``dist``."""
    t = [torch.as_tensor(params[k], dtype=torch.float64).unsqueeze(0) for k in ("h", "d", "T")]
    _, spikes, _ = exact_cost(t[0], t[1], t[2], dist.moments(target))
    return fs_mse(params["h"], params["d"], params["T"], target, dist), float(spikes[0])
