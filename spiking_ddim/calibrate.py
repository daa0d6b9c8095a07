"""Calibration: fit every FS site to the inputs that site actually sees.

The converted pipeline samples with its original activations (FSActivation mode
``record``) through its own ``__call__``, so latents, prompts and classifier-free guidance
are those of real use, keeping a sample of each site's inputs; each site's neuron is then
refitted to that input distribution with the exact-gradient search of ``fs_neurons``,
starting from its current (bank) parameters, so no site gets worse.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Optional

import torch
from diffusers import DiffusionPipeline

from fs_neurons import InputDistribution, fs_mse
from fs_neurons.exact import OursConfig
from fs_neurons.methods import fit_ours
from fs_neurons.targets import resolve_activation

from .convert import SiteReport, fs_activations, set_mode
from .pipelines import SamplingOptions, converted_components, generate

# A light search: the bank entry is already good; calibration adapts it to one site.
CALIBRATION_SEARCH = OursConfig(pool=32, restarts=1, iters=120, elite=4, elite_iters=200, rounds=1, mutants=32,
                                round_iters=100, polish_iters=300, time_budget=20.0)


@torch.no_grad()
def record_site_inputs(pipe: DiffusionPipeline, options: SamplingOptions = SamplingOptions(), num_images: int = 16,
                       batch_size: int = 16, seed: int = 10_000) -> None:
    """Sample ``num_images`` images through ``pipe`` with the original activations in every FS
    component, recording each site's inputs (kept in its FSActivation)."""
    components = converted_components(pipe)
    if not components:
        raise ValueError(f"{type(pipe).__name__} has no FS components to calibrate; convert it first")
    for model in components.values():
        for _, act in fs_activations(model):
            act.clear_records()
        set_mode(model, "record")
    try:
        for start in range(0, num_images, batch_size):
            generate(pipe, range(start, min(start + batch_size, num_images)), options, seed)
    finally:
        for model in components.values():
            set_mode(model, "fs")


def pooled_site_inputs(pipe: DiffusionPipeline, options: SamplingOptions = SamplingOptions(), num_images: int = 16,
                       points_per_site: int = 2000, seed: int = 10_000) -> torch.Tensor:
    """The inputs of all FS sites of a converted pipeline while it samples, pooled with one
    weight per site: ``points_per_site`` evenly spaced quantiles of each site's recorded
    inputs, concatenated, shape (sites * points_per_site,), float64. What one neuron shared
    by every site (a bank entry) should be fitted to."""
    record_site_inputs(pipe, options, num_images, seed=seed)
    quantiles = []
    for model in converted_components(pipe).values():
        for _, act in fs_activations(model):
            for i in range(act.num_sites):
                s = torch.sort(act.site_samples(i).double()).values
                quantiles.append(s[torch.linspace(0, s.numel() - 1, points_per_site).round().long()])
            act.clear_records()
    return torch.cat(quantiles)


def _fit_site(activation: str, K: int, samples: torch.Tensor, start: dict, seed: int,
              search: OursConfig) -> tuple[dict, float, float]:
    """Refit one site's neuron to its inputs: (best h, d, T; MSE before; MSE after)."""
    _, target = resolve_activation(activation)
    dist = InputDistribution.from_samples(samples)
    before = fs_mse(start["h"], start["d"], start["T"], target, dist)
    fit = fit_ours(target, K, dist, seed=seed, config=search, start=(start["h"], start["T"]))
    best = {k: getattr(fit, k) for k in ("h", "d", "T")} if fit.mse < before else start
    return best, before, min(before, fit.mse)


def _single_threaded() -> None:
    torch.set_num_threads(1)  # one fit per core


def calibrate(
    pipe: DiffusionPipeline,
    options: SamplingOptions = SamplingOptions(),
    num_images: int = 16,
    seed: int = 0,
    search: OursConfig = CALIBRATION_SEARCH,
    progress: Optional[Callable[[int, int], None]] = None,
    workers: Optional[int] = None,
) -> list[SiteReport]:
    """Refit every FS site of a converted pipeline (all its FS components) to the inputs it
    sees when the pipeline samples with ``options`` (prompts and guidance included), in place.

    Returns one report per site (named ``path[i]`` in the UNet, ``component.path[i]``
    elsewhere) with the neuron's MSE on the site's inputs before and after. Sites with the
    same inputs and start (a UNet's ResnetBlocks all take Swish of the one time embedding)
    are fitted once. The fits run in ``workers`` processes (default: one per CPU core, at
    most one per site), one thread each; the result does not depend on their number.
    """
    record_site_inputs(pipe, options, num_images, seed=seed + 10_000)
    sites = [(path if name == "unet" else f"{name}.{path}", act, i)
             for name, model in converted_components(pipe).items()
             for path, act in fs_activations(model) for i in range(act.num_sites)]
    jobs: dict[bytes, tuple] = {}  # inputs and start -> the arguments of its one fit
    keys = []
    for _, act, i in sites:
        samples, start = act.site_samples(i), act.neurons[i].params()
        key = hashlib.sha1(samples.numpy().tobytes() + repr((act.activation, start)).encode()).digest()
        keys.append(key)
        jobs.setdefault(key, (act.activation, act.neurons[i].K, samples, start, seed + len(jobs), search))
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    fitted: dict[bytes, tuple[dict, float, float]] = {}
    if workers == 1:
        threads = torch.get_num_threads()
        _single_threaded()  # the same arithmetic as in a worker
        try:
            for n, (key, job) in enumerate(jobs.items(), 1):
                fitted[key] = _fit_site(*job)
                if progress is not None:
                    progress(n, len(jobs))
        finally:
            torch.set_num_threads(threads)
    else:
        # fork where there is one (as DataLoader workers do): no re-import of the caller's script
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_single_threaded) as pool:
            futures = {pool.submit(_fit_site, *job): key for key, job in jobs.items()}
            for n, future in enumerate(as_completed(futures), 1):
                fitted[futures[future]] = future.result()
                if progress is not None:
                    progress(n, len(jobs))
    reports = []
    for (path, act, i), key in zip(sites, keys):
        best, before, after = fitted[key]
        with torch.no_grad():
            for name in ("h", "d", "T"):
                getattr(act.neurons[i], name).copy_(torch.tensor(best[name]))
        reports.append(SiteReport(f"{path}[{i}]", act.activation, act.signatures[i].to_json(), before, after))
    for _, act, _ in sites:
        act.clear_records()
    for model in converted_components(pipe).values():
        model.fs_conversion["calibrated"] = True
    return reports
