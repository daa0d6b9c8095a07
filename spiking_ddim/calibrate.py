"""Calibration: fit every FS site to the inputs that site actually sees.

The converted pipeline samples with its original activations (FSActivation mode
``record``) through its own ``__call__``, so latents, prompts and classifier-free guidance
are those of real use, keeping a sample of each site's inputs; each site's neuron is then
refitted to that input distribution with the exact-gradient search of ``fs_neurons``,
starting from its current (bank) parameters, so no site gets worse. All sites are
searched together in one batch.

Under a :class:`SpikeBudget` (mean spikes per neuron per call, or SNN/ANN energy ratio of
the whole pipeline) each site is also fitted at a grid of spike weights
(``MSE + weight * spikes``, exact in ``fs_neurons``), giving a per-site trade-off between
error and spikes; one multiplier mu then picks, for every site, the option minimising its
summed squared error over the site's neurons plus mu times what its spikes cost (spikes,
or the accumulates they trigger downstream, from the energy accounting), the smallest mu
that meets the budget. Each site may also take a neuron of fewer time steps (K/2, K/4),
padded to K with steps whose threshold is never reached: per-site K, the cheap options a
heavily weighted K-step search does not find. That choice rests on an additive model of
the error (each site's MSE times its sensitivity); so in a denoiser it competes with every
site at its best fit of fewer steps (where that fits the budget), and the one whose
denoiser output comes closest to the original's on recorded sampling calls is kept.
:func:`fit_site_options` does the search once and :func:`apply_budget` the choice, so a
sweep of budgets searches once.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from diffusers import DiffusionPipeline

from fs_neurons import FSFit, InputDistribution, fit_ours_many, fs_mse
from fs_neurons.exact import OursConfig, exact_cost
from fs_neurons.names import UNET_METHOD
from fs_neurons.targets import resolve_activation

from .convert import SiteReport
from .diffusion import ddim_noise_gain
from .energy import EnergyConstants, measure_cost
from .fs_activation import make_neurons
from .monitors import SiteInputMonitor
from .pipelines import DenoiserCalls, SamplingOptions, converted_components, generate, record_denoiser_calls
from .record import add_event
from .sites import fs_activations, original_activations

# A light search: the bank entry is already good; calibration adapts it to one site. All
# sites are searched in one batch, so the budget bounds the whole calibration.
CALIBRATION_SEARCH = OursConfig(pool=16, restarts=1, iters=60, elite=3, elite_iters=100, rounds=1, mutants=12,
                                round_iters=50, polish_iters=120, time_budget=300.0)
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
class SpikeBudget:
    """What the FS sites of a pipeline may spend per call: ``kind`` ``spikes`` = mean spikes
    per neuron (all sites, weighted by their neurons), or ``energy`` = the SNN/ANN energy
    ratio per image under ``constants`` (dense layers included, so it has a floor)."""

    kind: str
    value: float
    constants: EnergyConstants = EnergyConstants()

    def __post_init__(self) -> None:
        if self.kind not in ("spikes", "energy"):
            raise ValueError(f"budget kind must be 'spikes' or 'energy', got {self.kind!r}")
        if not math.isfinite(self.value) or self.value <= 0:
            raise ValueError(f"the {self.kind} budget must be a finite number > 0 (at 0 every site is silent and "
                             f"the model outputs no signal), got {self.value}")


@dataclass(frozen=True)
class _Option:
    """One fitted neuron of a site: parameters h, d, T, its MSE and expected spikes per call
    on the site's inputs, and the time steps it uses (fewer than its K when padded; 0 silent)."""

    params: dict
    mse: float
    spikes: float
    steps: int

    @classmethod
    def of(cls, fit: FSFit) -> "_Option":
        return cls({k: getattr(fit, k) for k in ("h", "d", "T")}, fit.mse, fit.spikes, fit.K)


@dataclass
class _Probe:
    """The denoiser's calls while sampling a few images, its original outputs on them (N, C,
    H, W) and each call's weight (N, 1, 1, 1): DDIM noise gain squared, mean 1."""

    calls: DenoiserCalls
    clean: torch.Tensor
    weight: torch.Tensor

    @torch.no_grad()
    def error(self, unet: torch.nn.Module) -> float:
        """The weighted MSE of ``unet``'s outputs on the calls against the original's."""
        return float((self.weight * (self.calls.run(unet).double().cpu() - self.clean) ** 2).mean())


@dataclass
class SiteOptions:
    """What :func:`fit_site_options` found: every site (path, FSActivation, index, job key),
    each distinct job's options (the plain fit first) and starting MSE and spikes, and per
    site its neurons per forward pass, accumulates per spike downstream and ``sensitivity``
    (the denoiser's step-weighted output MSE per unit MSE at the site; denoiser sites
    only); the ANN's and the dense layers' MACs per forward pass; the ``probe`` the
    sensitivities were measured on (denoiser sites only)."""

    sites: list[tuple[str, object, int, bytes]]
    options: dict[bytes, list[_Option]]
    before: dict[bytes, tuple[float, float]]
    neurons: dict[str, float] = field(default_factory=dict)
    acs_per_spike: dict[str, float] = field(default_factory=dict)
    ann_macs: float = 0.0
    dense_macs: float = 0.0
    sensitivity: dict[str, float] = field(default_factory=dict)
    probe: Optional[_Probe] = None


@torch.no_grad()
def record_site_inputs(pipe: DiffusionPipeline, options: SamplingOptions = SamplingOptions(), num_images: int = 16,
                       batch_size: int = 16, seed: int = 10_000) -> SiteInputMonitor:
    """Sample ``num_images`` images through ``pipe`` with the original activations in every FS
    component; the monitor holding each call site's inputs (:meth:`SiteInputMonitor.samples`)."""
    components = converted_components(pipe)
    if not components:
        raise ValueError(f"{type(pipe).__name__} has no FS components to calibrate; convert it first")
    monitor = SiteInputMonitor(torch.nn.ModuleList(components.values()))
    with contextlib.ExitStack() as stack:
        for model in components.values():
            stack.enter_context(original_activations(model))
        stack.enter_context(monitor)
        for start in range(0, num_images, batch_size):
            generate(pipe, range(start, min(start + batch_size, num_images)), options, seed)
    return monitor


def pooled_site_inputs(pipe: DiffusionPipeline, options: SamplingOptions = SamplingOptions(), num_images: int = 16,
                       points_per_site: int = 2000, seed: int = 10_000) -> torch.Tensor:
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


def _silent(K: int, hi: float) -> dict:
    """A neuron that never spikes on inputs <= ``hi`` (output 0)."""
    return {"h": [1.0] * K, "d": [0.0] * K, "T": [hi + 1.0] * K}


def _padded(params: dict, K: int, hi: float) -> dict:
    """A neuron of fewer steps as one of K steps with the same output and spikes on inputs
    <= ``hi``: the added last steps' thresholds lie above any membrane potential it can
    reach (hi + sum |h| + 1)."""
    extra = K - len(params["h"])
    top = hi + sum(abs(v) for v in params["h"]) + 1.0
    return {"h": list(params["h"]) + [1.0] * extra, "d": list(params["d"]) + [0.0] * extra,
            "T": list(params["T"]) + [top] * extra}


def _fit_jobs(jobs: list[tuple], seed: int, search: OursConfig, progress: Optional[Callable[[int, int], None]],
              weights: tuple[float, ...] = (0.0,)) -> list[tuple[list[_Option], float, float]]:
    """Refit each job (activation, K, samples, start) to its samples at each spike weight
    (``weights`` times the start's MSE, per spike), the jobs of one activation and K in one
    batched search (job n draws from seed + n): per job its options (the plain fit, never
    worse than the start, first) and the start's MSE and expected spikes. With more than
    one weight, also neurons of :func:`lower_steps` time steps (from their bank entry, at
    :data:`LOWER_K_GRID`), padded to K, and a never-spiking one last."""
    results: list = [None] * len(jobs)
    batches: dict[tuple[str, int], list[int]] = {}
    for n, (activation, K, _, _) in enumerate(jobs):
        batches.setdefault((activation, K), []).append(n)
    budgeted = len(weights) > 1
    searches = sum(1 + (len(lower_steps(K)) if budgeted else 0) for _, K in batches)
    done, total = 0, searches * (search.restarts + search.rounds + 1)

    def fit(members: list[int], dists: list, K: int, starts: list[dict], grid: tuple[float, ...],
            mses: list[float]) -> list[list[_Option]]:
        """Per member, its fits at each weight of ``grid`` (times its ``mses`` entry)."""
        nonlocal done

        def step(_stage: str, phase: int, _rounds: int, offset: int = done) -> None:
            if progress is not None:
                progress(offset + phase, total)

        fits = fit_ours_many(jobs[members[0]][0], K, dists * len(grid), [seed + n for n in members] * len(grid),
                             search, [(st["h"], st["T"]) for st in starts] * len(grid), step,
                             spike_weight=[w * mse for w in grid for mse in mses])
        done += search.restarts + search.rounds + 1
        return [[_Option.of(fits[k * len(members) + j]) for k in range(len(grid))] for j in range(len(members))]

    for (activation, K), members in batches.items():
        _, target = resolve_activation(activation)
        dists = [InputDistribution.from_samples(jobs[n][2]) for n in members]
        starts = [jobs[n][3] for n in members]
        before = [_cost(st, target, dist) for st, dist in zip(starts, dists)]
        mses = [mse for mse, _ in before]
        found = fit(members, dists, K, starts, weights, mses)
        for lower in lower_steps(K) if budgeted else []:
            start = make_neurons(activation, lower, UNET_METHOD, 1)[0].params()
            for j, opts in enumerate(fit(members, dists, lower, [start] * len(members), LOWER_K_GRID, mses)):
                found[j] += [_Option(_padded(o.params, K, dists[j].hi), o.mse, o.spikes, lower) for o in opts]
        for j, (dist, start) in enumerate(zip(dists, starts)):
            plain, *rest = found[j]
            options = [plain if plain.mse < before[j][0] else _Option(start, *before[j], K), *rest]
            if budgeted:
                silent = _silent(K, dist.hi)
                options.append(_Option(silent, *_cost(silent, target, dist), 0))
            results[members[j]] = (options, *before[j])
    return results


def _cost(params: dict, target, dist: InputDistribution) -> tuple[float, float]:
    """(MSE, expected spikes per call) of the neuron ``params`` on ``dist``."""
    t = [torch.as_tensor(params[k], dtype=torch.float64).unsqueeze(0) for k in ("h", "d", "T")]
    _, spikes, _ = exact_cost(t[0], t[1], t[2], dist.moments(target))
    return fs_mse(params["h"], params["d"], params["T"], target, dist), float(spikes[0])


def fit_site_options(
    pipe: DiffusionPipeline,
    options: SamplingOptions = SamplingOptions(),
    num_images: int = 16,
    seed: int = 0,
    search: OursConfig = CALIBRATION_SEARCH,
    progress: Optional[Callable[[int, int], None]] = None,
    weights: tuple[float, ...] = SPIKE_GRID,
    budget: Optional[SpikeBudget] = None,
) -> SiteOptions:
    """Record every FS site's inputs while ``pipe`` samples with ``options`` and fit each
    site at the spike ``weights`` (see :data:`SPIKE_GRID`); with more than one weight,
    first measure what each site's neurons and spikes cost (one image through the FS
    pipeline), and with a ``budget`` check that it can be met at all before searching.
    Changes no neuron."""
    found = SiteOptions([], {}, {})
    if len(weights) > 1:
        _measure_costs(pipe, options, found)
        if budget is not None:
            _limit(found, budget)
    inputs = record_site_inputs(pipe, options, num_images, seed=seed + 10_000)
    jobs = {}  # inputs and start -> (activation, K, samples, start)
    for name, model in converted_components(pipe).items():
        for path, act in fs_activations(model):
            for i in range(act.num_sites):
                samples, start = inputs.samples(act, i), act.neurons[i].params()
                key = hashlib.sha1(samples.numpy().tobytes() + repr((act.activation, start)).encode()).digest()
                found.sites.append((f"{path if name == 'unet' else f'{name}.{path}'}[{i}]", act, i, key))
                jobs.setdefault(key, (act.activation, act.neurons[i].K, samples, start))
    for key, (opts, *before) in zip(jobs, _fit_jobs(list(jobs.values()), seed, search, progress, tuple(weights))):
        found.options[key], found.before[key] = opts, tuple(before)
    if len(weights) > 1:
        _measure_sensitivity(pipe, options, found)
    return found


@torch.no_grad()
def _measure_sensitivity(pipe: DiffusionPipeline, options: SamplingOptions, found: SiteOptions, images: int = 2,
                         noise: float = 0.1, seed: int = 30_000) -> None:
    """Each denoiser site's sensitivity: Gaussian noise of variance sigma^2 (``noise`` times
    the RMS of the site's Swish outputs, squared) added to its output raises the denoiser's
    output MSE, over the calls of sampling ``images`` images and weighted by how far each
    call's DDIM step moves with it (noise gain squared, mean 1), by a * sigma^2; a is the
    sensitivity. Measured with the original activations everywhere else. Skipped when a
    component other than the denoiser is converted (its sites have no such measure)."""
    components = converted_components(pipe)
    if set(components) != {"unet"}:
        return
    unet = components["unet"]
    with original_activations(unet):
        calls = record_denoiser_calls(pipe, range(images), options, seed=seed)
        gain = ddim_noise_gain(pipe.scheduler, calls.timestep).to(torch.float64) ** 2
        weight = (gain / gain.mean()).view(-1, *[1] * (calls.output.ndim - 1))
        found.probe = probe = _Probe(calls, calls.run(unet).double().cpu(), weight)
        rms = {name: math.sqrt(found.options[key][-1].mse) for name, _, _, key in found.sites}  # the silent option
        for name, act, i, _ in found.sites:
            sigma = noise * rms[name]
            g = torch.Generator().manual_seed(seed)

            def perturb(module, _args, out, i=i, sigma=sigma, g=g):
                if module.site_index() == i:
                    return out + sigma * torch.randn(out.shape, generator=g, dtype=torch.float32).to(out.device, out.dtype)
                return None

            handle = act.register_forward_hook(perturb)
            try:
                found.sensitivity[name] = probe.error(unet) / max(sigma * sigma, 1e-300)
            finally:
                handle.remove()


@torch.no_grad()
def _measure_costs(pipe: DiffusionPipeline, options: SamplingOptions, found: SiteOptions) -> None:
    with measure_cost(pipe) as meter:
        generate(pipe, range(1), options, seed=20_000)
    report = meter.report()
    spiking = [s for s in report.sites if s.spikes > 0]
    mean_fanout = sum(s.acs for s in spiking) / max(sum(s.spikes for s in spiking), 1e-300)
    for s in report.sites:
        found.neurons[s.name] = s.neurons / report.samples
        found.acs_per_spike[s.name] = s.acs_per_spike if s.spikes > 0 else mean_fanout
    found.ann_macs = sum(lay.ann_macs for lay in report.layers) / report.samples
    found.dense_macs = sum(lay.snn_macs for lay in report.layers) / report.samples


def _limit(found: SiteOptions, budget: SpikeBudget) -> float:
    """What the sites may spend per forward pass: spikes, or accumulates (energy budget)."""
    if budget.kind == "spikes":
        return budget.value * sum(found.neurons.values())
    c = budget.constants
    limit = (budget.value * c.mac_pj * found.ann_macs - c.mac_pj * found.dense_macs) / c.ac_pj
    if limit < 0:
        raise ValueError(f"energy budget {budget.value} is below what the dense (MAC) layers alone cost: "
                         f"an SNN/ANN ratio of {found.dense_macs / found.ann_macs:.3f}")
    return limit


def _allocate(found: SiteOptions, budget: SpikeBudget, weighting: str) -> list[dict[bytes, int]]:
    """Choices of the option index per job: the plain fits alone if they fit ``budget``, else
    the choice at the smallest multiplier mu that fits it, then, for each smaller number of
    time steps among the options, every job's lowest-error option of that many steps where
    they fit it."""
    error: dict[bytes, float] = {}  # per job: what one unit of its MSE weighs
    cost: dict[bytes, float] = {}  # per job: what one expected spike per call of its neurons costs
    for name, _, _, key in found.sites:
        if name not in found.neurons:
            raise ValueError(f"site {name} did not run while measuring costs; cannot budget its spikes")
        per_spike = found.acs_per_spike[name] if budget.kind == "energy" else 1.0
        error[key] = error.get(key, 0.0) + (found.sensitivity[name] if weighting == "sensitivity"
                                            else found.neurons[name])
        cost[key] = cost.get(key, 0.0) + found.neurons[name] * per_spike
    limit = _limit(found, budget)

    def pick(mu: float) -> dict[bytes, int]:
        return {k: min(range(len(opts)), key=lambda i: (error[k] * opts[i].mse + mu * cost[k] * opts[i].spikes, i))
                for k, opts in found.options.items()}

    def spent(choice: dict[bytes, int]) -> float:
        return sum(cost[k] * found.options[k][i].spikes for k, i in choice.items())

    plain = {k: 0 for k in found.options}
    if spent(plain) <= limit:  # a budget that does not bind changes nothing
        return [plain]
    lo, hi = 0.0, 1.0
    while spent(pick(hi)) > limit:
        lo, hi = hi, hi * 10
        if hi > 1e300:
            raise ValueError(f"no choice of options meets the {budget.kind} budget {budget.value}")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if spent(pick(mid)) > limit else (lo, mid)
    choices = [pick(hi)]
    top = max(o.steps for opts in found.options.values() for o in opts)
    for steps in sorted({o.steps for opts in found.options.values() for o in opts} - {0, top}, reverse=True):
        if not all(any(o.steps == steps for o in opts) for opts in found.options.values()):
            continue
        uniform = {k: min((i for i, o in enumerate(opts) if o.steps == steps), key=lambda i: opts[i].mse)
                   for k, opts in found.options.items()}
        if spent(uniform) <= limit:
            choices.append(uniform)
    return choices


@torch.no_grad()
def _set_options(found: SiteOptions, choice: dict[bytes, int]) -> None:
    """Give every site the option ``choice`` names for its job."""
    for _, act, i, key in found.sites:
        act.neurons[i].set_params(**found.options[key][choice[key]].params)


def apply_budget(pipe: DiffusionPipeline, found: SiteOptions, budget: Optional[SpikeBudget] = None,
                 weighting: str = "sensitivity", details: Optional[dict] = None) -> list[SiteReport]:
    """Give every site of ``pipe`` its chosen option from ``found``: the plain fit without a
    budget, else the allocation that meets ``budget``, each site's error weighted by its
    measured ``sensitivity`` (or, with ``neurons`` or when none was measured, by its
    neurons), or, where the denoiser's output on ``found.probe`` is closer to the
    original's with it, every site at its best fit of fewer time steps; in place. One
    report per site: MSE and expected spikes per call on its inputs, before and after.
    Adds a ``calibrate`` event (budget, ``details``, :func:`calibration_outcome`) to every
    converted component's history."""
    if weighting not in ("sensitivity", "neurons"):
        raise ValueError(f"weighting must be 'sensitivity' or 'neurons', got {weighting!r}")
    weighting = weighting if found.sensitivity else "neurons"
    choices = [{k: 0 for k in found.options}] if budget is None else _allocate(found, budget, weighting)
    if len(choices) > 1 and found.probe is not None:
        unet = converted_components(pipe)["unet"]
        scores = []
        for choice in choices:
            _set_options(found, choice)
            scores.append(found.probe.error(unet))
        choices = [choices[scores.index(min(scores))]]
    choice = choices[0]
    _set_options(found, choice)
    reports = []
    for name, act, i, key in found.sites:
        option = found.options[key][choice[key]]
        before, spikes_before = found.before[key]
        reports.append(SiteReport(name, act.activation, act.signatures[i].to_json(), before, option.mse,
                                  spikes_before, option.spikes))
    outcome = calibration_outcome(reports)
    for model in converted_components(pipe).values():
        add_event(model, "calibrate", budget=None if budget is None else {"kind": budget.kind, "value": budget.value},
                  **(details or {}), **outcome)
    return reports


def calibration_outcome(reports: list[SiteReport]) -> dict:
    """What a calibration did, from its site reports: the summed MSE of the neurons on their
    own inputs before and after, and the sites left silent (a neuron that never spikes
    outputs 0 everywhere)."""
    before = sum(r.mse_before for r in reports)
    after = sum(r.mse_after for r in reports)
    silent = [r.name for r in reports if r.spikes_after == 0]
    return {"sites": len(reports), "summed_mse_before": before, "summed_mse_after": after, "silent_sites": silent}


def calibrate(
    pipe: DiffusionPipeline,
    options: SamplingOptions = SamplingOptions(),
    num_images: int = 16,
    seed: int = 0,
    search: OursConfig = CALIBRATION_SEARCH,
    progress: Optional[Callable[[int, int], None]] = None,
    budget: Optional[SpikeBudget] = None,
) -> list[SiteReport]:
    """Refit every FS site of a converted pipeline (all its FS components) to the inputs it
    sees when the pipeline samples with ``options`` (prompts and guidance included), in place;
    under ``budget``, trading error for spikes across sites to meet it.

    Returns one report per site (named ``path[i]`` in the UNet, ``component.path[i]``
    elsewhere) with the neuron's MSE and expected spikes on the site's inputs before and
    after. Sites with the same inputs and start (a UNet's ResnetBlocks all take Swish of the
    one time embedding) are fitted once, and all fits of one K run as one batched search
    (:func:`fs_neurons.fit_ours_many`); ``progress(done, total)`` counts its phases.
    """
    weights = (0.0,) if budget is None else SPIKE_GRID
    found = fit_site_options(pipe, options, num_images, seed, search, progress, weights, budget)
    return apply_budget(pipe, found, budget, details={"images": num_images, "steps": options.steps, "seed": seed,
                                                      "prompts": list(options.prompts or []) or None})
