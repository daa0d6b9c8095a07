"""Calibration: fit every FS site to the inputs that site actually sees.

The converted pipeline samples with its original activations (FSActivation mode
``record``) through its own ``__call__``, so latents, prompts and classifier-free guidance
are those of real use, keeping a sample of each site's inputs; each site's neuron is then
refitted to that input distribution with the exact-gradient search of ``fs_neurons``,
starting from its current (bank) parameters, so no site gets worse. All sites are
searched together in one batch.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Optional

import torch
from diffusers import DiffusionPipeline

from fs_neurons import InputDistribution, fit_ours_many, fs_mse
from fs_neurons.exact import OursConfig
from fs_neurons.targets import resolve_activation

from .convert import SiteReport
from .pipelines import SamplingOptions, converted_components, generate
from .sites import fs_activations, set_mode

# A light search: the bank entry is already good; calibration adapts it to one site. All
# sites are searched in one batch, so the budget bounds the whole calibration.
CALIBRATION_SEARCH = OursConfig(pool=16, restarts=1, iters=60, elite=3, elite_iters=100, rounds=1, mutants=12,
                                round_iters=50, polish_iters=120, time_budget=300.0)


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


def _fit_jobs(jobs: list[tuple], seed: int, search: OursConfig,
              progress: Optional[Callable[[int, int], None]]) -> list[tuple[dict, float, float]]:
    """Refit each job (activation, K, samples, start) to its samples, the jobs of one
    activation and K in one batched search (job n draws from seed + n): per job the best
    (h, d, T), its MSE before and after."""
    results: list = [None] * len(jobs)
    batches: dict[tuple[str, int], list[int]] = {}
    for n, (activation, K, _, _) in enumerate(jobs):
        batches.setdefault((activation, K), []).append(n)
    done, total = 0, len(batches) * (search.restarts + search.rounds + 1)
    for (activation, K), members in batches.items():
        _, target = resolve_activation(activation)
        dists = [InputDistribution.from_samples(jobs[n][2]) for n in members]
        starts = [jobs[n][3] for n in members]

        def step(_stage: str, phase: int, _rounds: int, offset: int = done) -> None:
            if progress is not None:
                progress(offset + phase, total)

        fits = fit_ours_many(target, K, dists, [seed + n for n in members], search,
                             [(st["h"], st["T"]) for st in starts], step)
        done += search.restarts + search.rounds + 1
        for n, dist, start, fit in zip(members, dists, starts, fits):
            before = fs_mse(start["h"], start["d"], start["T"], target, dist)
            best = {k: getattr(fit, k) for k in ("h", "d", "T")} if fit.mse < before else start
            results[n] = (best, before, min(before, fit.mse))
    return results


def calibrate(
    pipe: DiffusionPipeline,
    options: SamplingOptions = SamplingOptions(),
    num_images: int = 16,
    seed: int = 0,
    search: OursConfig = CALIBRATION_SEARCH,
    progress: Optional[Callable[[int, int], None]] = None,
) -> list[SiteReport]:
    """Refit every FS site of a converted pipeline (all its FS components) to the inputs it
    sees when the pipeline samples with ``options`` (prompts and guidance included), in place.

    Returns one report per site (named ``path[i]`` in the UNet, ``component.path[i]``
    elsewhere) with the neuron's MSE on the site's inputs before and after. Sites with the
    same inputs and start (a UNet's ResnetBlocks all take Swish of the one time embedding)
    are fitted once, and all fits of one K run as one batched search
    (:func:`fs_neurons.fit_ours_many`); ``progress(done, total)`` counts its phases.
    """
    record_site_inputs(pipe, options, num_images, seed=seed + 10_000)
    sites = [(path if name == "unet" else f"{name}.{path}", act, i)
             for name, model in converted_components(pipe).items()
             for path, act in fs_activations(model) for i in range(act.num_sites)]
    jobs: dict[bytes, tuple] = {}  # inputs and start -> (activation, K, samples, start)
    keys = []
    for _, act, i in sites:
        samples, start = act.site_samples(i), act.neurons[i].params()
        key = hashlib.sha1(samples.numpy().tobytes() + repr((act.activation, start)).encode()).digest()
        keys.append(key)
        jobs.setdefault(key, (act.activation, act.neurons[i].K, samples, start))
    fitted = dict(zip(jobs, _fit_jobs(list(jobs.values()), seed, search, progress)))
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
