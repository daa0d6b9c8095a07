"""Calibration: fit every FS site to the inputs that site actually sees.

The converted pipeline samples with its original activations
(:func:`~spiking_ddim.sites.original_activations`) through its own ``__call__``, so
latents, prompts and classifier-free guidance are those of real use, while a
:class:`~spiking_ddim.monitors.SiteInputMonitor` keeps a sample of each site's inputs; each site's neuron is then
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

Two fits of other neurons live here too: :func:`fit_delta` fits a delta-coded model's
encoders to the changes its sites see between denoising steps (:mod:`.delta`), and
:func:`rate_coded_if` sets every site to the rate-coded IF baseline with balanced
thresholds (:mod:`.if_baseline`). A delta-coded model is calibrated with full codes at
every call (:func:`spiking_ddim.run_state.step_coding`).
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Optional

from diffusers import DiffusionPipeline

from fs_neurons.exact import OursConfig
from fs_neurons.signed import SignedFSNeuron
from fs_neurons.utils.seeds import stream

from ..convert import SiteReport
from ..held_out import calibration_seeds
from ..pipelines import Progress, SamplingOptions, converted_components
from ..run_state import step_coding
from ..sites import fs_activations
from .budget import SpikeBudget, apply_budget, budget_limit, calibration_outcome
from .delta import fit_delta
from .if_baseline import IF_PERCENTILE, rate_coded_if
from .options import (
    CALIBRATION_SEARCH,
    LOWER_K_GRID,
    SPIKE_GRID,
    SiteOptions,
    fit_jobs,
    lower_steps,
    padded,
    pooled_site_inputs,
    record_site_inputs,
)
from .probe import measure_costs, measure_sensitivity

__all__ = ["CALIBRATION_SEARCH", "IF_PERCENTILE", "LOWER_K_GRID", "SPIKE_GRID",
           "SiteOptions", "SpikeBudget", "apply_budget", "calibrate", "calibration_outcome", "fit_delta",
           "fit_site_options", "lower_steps", "padded", "pooled_site_inputs", "rate_coded_if", "record_site_inputs"]


def fit_site_options(
    pipe: DiffusionPipeline,
    options: SamplingOptions = SamplingOptions(),
    num_images: int = 16,
    seed: int = 0,
    search: OursConfig = CALIBRATION_SEARCH,
    progress: Progress = None,
    weights: tuple[float, ...] = SPIKE_GRID,
    budget: Optional[SpikeBudget] = None,
) -> SiteOptions:
    """Record every FS site's inputs while ``pipe`` samples with ``options`` and fit each
    site at the spike ``weights`` (see :data:`SPIKE_GRID`); with more than one weight,
    first measure what each site's neurons and spikes cost (one image through the FS
    pipeline), and with a ``budget`` check that it can be met at all before searching.
    Changes no neuron."""
    found = SiteOptions([], {}, {})
    if len(weights) > 1 and any(m.fs_config.spiking == "all" for m in converted_components(pipe).values()):
        raise ValueError("spike and energy budgets work on Swish sites; a fully spiking model (spiking 'all') is "
                         "calibrated without a budget")
    if len(weights) > 1:
        measure_costs(pipe, options, found)
        if budget is not None:
            budget_limit(found, budget)
    inputs = record_site_inputs(pipe, options, num_images, seed=stream("calibration-inputs", seed), progress=progress)
    jobs = {}  # inputs and start -> (activation, K, samples, start)
    for name, model in converted_components(pipe).items():
        for path, act in fs_activations(model):
            for i in range(act.num_sites):
                samples, start = inputs.samples(act, i), act.neurons[i].params()
                activation = act.activation
                if isinstance(act.neurons[i], SignedFSNeuron):  # a signed code of x: FS(|x|) fitted to |x|
                    samples, activation = samples.abs(), "relu"
                key = hashlib.sha1(samples.numpy().tobytes() + repr((activation, start)).encode()).digest()
                found.sites.append((f"{path if name == 'unet' else f'{name}.{path}'}[{i}]", act, i, key))
                jobs.setdefault(key, (activation, act.neurons[i].K, samples, start))
    for key, (opts, *before) in zip(jobs, fit_jobs(list(jobs.values()), seed, search, progress, tuple(weights))):
        found.options[key], found.before[key] = opts, tuple(before)
    if len(weights) > 1:
        measure_sensitivity(pipe, options, found)
    return found


def calibrate(
    pipe: DiffusionPipeline,
    options: SamplingOptions = SamplingOptions(),
    num_images: int = 16,
    seed: int = 0,
    search: OursConfig = CALIBRATION_SEARCH,
    progress: Progress = None,
    budget: Optional[SpikeBudget] = None,
) -> list[SiteReport]:
    """Refit every FS site of a converted pipeline (all its FS components) to the inputs it
    sees when the pipeline samples with ``options`` (prompts and guidance included), in place;
    under ``budget``, trading error for spikes across sites to meet it.

    Returns one report per site (named ``path[i]`` in the UNet, ``component.path[i]``
    elsewhere) with the neuron's MSE and expected spikes on the site's inputs before and
    after. Sites with the same inputs and start (a UNet's ResnetBlocks all take Swish of the
    one time embedding) are fitted once, and all fits of one K run as one batched search
    (:func:`fs_neurons.fit_ours_many`); ``progress(stage, done, total)`` counts the
    denoiser calls that record the inputs and the exact-gradient steps of the fits.
    """
    weights = (0.0,) if budget is None else SPIKE_GRID
    with contextlib.ExitStack() as stack:  # delta-coded models: calibration prices and fits full codes
        for model in converted_components(pipe).values():
            stack.enter_context(step_coding(model))
        found = fit_site_options(pipe, options, num_images, seed, search, progress, weights, budget)
    return apply_budget(pipe, found, budget, details={
        "images": num_images, "steps": options.steps, "seed": seed, "prompts": list(options.prompts or []) or None,
        "image_seeds": calibration_seeds(num_images, seed, budget is not None)})
