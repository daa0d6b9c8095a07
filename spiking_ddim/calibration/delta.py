"""Fitting the encoders of a coding of changes (delta, graded) to the changes their sites
see (see :mod:`spiking_ddim.delta`).

The pipeline samples a few images with its original activations while a
:class:`~spiking_ddim.monitors.ChangeMonitor` records, per call site, |change| of the
activation between consecutive denoising steps; each site's encoder is then fitted to
that distribution by its coding (:meth:`~spiking_ddim.codings.ChangeCoding.fit_jobs`): a
delta encoder by the exact method to the identity (:func:`fit_fs_jobs`), a spike priced at ``spike_weight``
times the site's mean squared change or activation (``price``), and, with ``cost="acs"``,
times what it costs downstream: the accumulates one spike of the site causes in the layer
it feeds over the model's mean (a probe pass of one image under
:class:`~spiking_ddim.energy.CostMeter` measures it).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import NamedTuple

import torch
from diffusers import DiffusionPipeline
from torch import nn

from fs_neurons.delta import binary_code
from fs_neurons.distribution import InputDistribution
from fs_neurons.methods import fit_ours_many
from fs_neurons.search_config import OursConfig
from fs_neurons.state import reset_net
from fs_neurons.utils.seeds import stream

from ..codings import ChangeCoding, DeltaCoding
from ..delta import encoders
from ..energy import measure_cost
from ..held_out import delta_fit_seeds
from ..monitors import ChangeMonitor
from ..pipelines import Progress, SamplingOptions, converted_components, counting_denoiser_calls, generate
from ..record import add_event, record_of
from ..run_state import step_coding
from ..sites import fs_activations, original_activations
from .options import CALIBRATION_SEARCH


def _binary_start(samples: torch.Tensor, K: int) -> tuple[list[float], list[float]]:
    """(h, T) of a binary code of K steps covering the 99.9th percentile of ``samples``."""
    top = float(torch.quantile(samples[:100_000].double(), 0.999)) or float(samples.max()) or 1.0
    h, _, T = binary_code(K, top)
    return h, T


class Job(NamedTuple):
    """One encoder to fit: its label, the encoder, its site's |change| samples, the site's mean
    squared activation and its relative fan-out (1 unless priced by accumulates)."""

    label: str
    encoder: nn.Module
    samples: torch.Tensor
    mean_square_value: float
    fanout: float


def _relative_fanout(pipe: DiffusionPipeline, model: nn.Module, options: SamplingOptions, seed: int) -> dict[str, float]:
    """Per site name (``path[i]``): the accumulates one spike of it causes downstream over the
    model's mean (total accumulates over total spikes), from one image of two denoising steps
    with every site sending its full code. Sites that did not spike: 1."""
    with step_coding(model), measure_cost(model) as meter:
        generate(pipe, [0], replace(options, steps=2), seed=stream("calibration-inputs", seed))
    sites = meter.report().sites
    spikes, acs = sum(s.spikes for s in sites), sum(s.acs for s in sites)
    mean = acs / spikes if spikes and acs else 1.0
    return {s.name: s.acs_per_spike / mean for s in sites if s.acs_per_spike > 0}


def fit_delta(
    pipe: DiffusionPipeline,
    options: SamplingOptions,
    seed: int = 0,
    progress: Progress = None,
    batch_size: int = 8,
    search: OursConfig = CALIBRATION_SEARCH,
    **settings,
) -> list[dict]:
    """Fit every change encoder (delta, graded) of a converted pipeline to the changes its site sees when the
    pipeline samples ``images`` images with ``options`` (the original network's run,
    images from the ``calibration-inputs`` stream of ``seed``), in place, and record the
    fit in the model's history. The exact method (``ours``, the calibration search) fits
    each encoder to the identity (``relu``) on its site's |change| distribution (``search``:
    the effort, calibration's by default), minimising
    MSE + ``spike_weight`` x scale x spikes, where the scale is the site's mean squared change
    (``price="change"``) or mean squared activation (``price="value"``): ``spike_weight`` is
    the price of one spike relative to the typical change or value (larger: fewer spikes, more
    error). With ``"change"`` the encoders follow the step size: more denoising steps, smaller
    changes, finer codes; with ``"value"`` the dead zone stays put in the activation's units, so
    more, smaller steps send fewer spikes each (and the error that error feedback leaves stays
    the same). ``cost="acs"`` prices a spike by what it costs: the scale above times the site's
    accumulates per spike over the model's mean (a spike into a wide layer dearer than one into
    a narrow one), so the fits spend error where the accumulates are cheap. ``spike_weight``
    None: the price's default. ``images``, ``spike_weight``, ``price`` and ``cost`` (``settings``)
    are the UNet's :class:`~spiking_ddim.codings.DeltaCoding`'s unless given, and the record's
    coding takes those the fit used. Returns per site: name, expected spikes per change, MSE,
    mean squared change, mean squared value and relative fan-out (1 with ``cost="spikes"``)."""
    models = {n: m for n, m in converted_components(pipe).items() if encoders(m)}
    coding = _fit_coding(models, settings)
    fanout = {name: _relative_fanout(pipe, model, options, seed) if coding.cost == "acs" else {}
              for name, model in models.items()}
    monitors = _record_changes(pipe, models, options, coding.images, seed, batch_size, progress)
    jobs, silent = _jobs(models, monitors, fanout)
    results = coding.fit_jobs(jobs, seed, search, progress)
    for label, encoder in silent:
        K = encoder.K
        encoder.set_params([0.0] * K, [0.0] * K, [1e30] * K)
        results.append({"site": label, "spikes_per_change": 0.0, "mse": 0.0, "mean_square_change": 0.0,
                        "mean_square_value": None, "relative_fanout": None})
    for model in models.values():
        reset_net(model)
        model.fs_config = replace(model.fs_config, coding=coding)
        add_event(model, "delta-fit", coding=coding.name, images=coding.images, image_seeds=delta_fit_seeds(coding.images, seed),
                  steps=options.steps, seed=seed, spike_weight=coding.spike_weight,
                  price=coding.price, cost=coding.cost, sites=len(results),
                  spikes_per_change=sum(r["spikes_per_change"] for r in results) / len(results))
    return results


def _record_changes(pipe: DiffusionPipeline, models: dict[str, nn.Module], options: SamplingOptions, images: int,
                    seed: int, batch_size: int, progress: Progress) -> dict[str, ChangeMonitor]:
    """Each model's :class:`ChangeMonitor` after ``pipe`` sampled ``images`` images of the
    ``calibration-inputs`` stream of ``seed`` with its original activations."""
    first = stream("calibration-inputs", seed)
    with contextlib.ExitStack() as stack:
        monitors = {}
        for name, model in models.items():
            stack.enter_context(original_activations(model))
            monitors[name] = stack.enter_context(ChangeMonitor(model, seed=seed))
        stack.enter_context(counting_denoiser_calls(pipe, images, batch_size, options, progress, "record changes"))
        for start in range(0, images, batch_size):
            for m in monitors.values():
                m.new_run()
            generate(pipe, range(start, min(images, start + batch_size)), options, seed=first)
    return monitors


def _jobs(models: dict[str, nn.Module], monitors: dict[str, ChangeMonitor],
          fanout: dict[str, dict[str, float]]) -> tuple[list[Job], list[tuple[str, nn.Module]]]:
    """The encoders to fit (their site changed) and those that never spike (it never did), labelled."""
    jobs, silent = [], []
    for name, model in models.items():
        for path, act in fs_activations(model):
            for i, encoder in enumerate(act.encoders):
                samples = monitors[name].samples(act, i).double()
                label = f"{path if name == 'unet' else f'{name}.{path}'}[{i}]"
                if float(samples.max()) <= 0:  # nothing ever changed: an encoder that never spikes
                    silent.append((label, encoder))
                    continue
                jobs.append(Job(label, encoder, samples, monitors[name].mean_square(act, i),
                                 fanout[name].get(f"{path}[{i}]", 1.0)))
    return jobs, silent


def fit_fs_jobs(jobs: list[Job], coding: DeltaCoding, seed: int, search: OursConfig, progress: Progress) -> list[dict]:
    """Fit every job's delta encoder (one batched search per K), in place; one result dict each."""
    results = []
    by_K: dict[int, list[Job]] = {}
    for job in jobs:
        by_K.setdefault(job.encoder.K, []).append(job)
    total = len(by_K) * search.iterations  # the exact-gradient steps of every search, for progress
    for n, (K, group) in enumerate(by_K.items()):
        changes = [float((j.samples * j.samples).mean()) for j in group]
        scale = changes if coding.price == "change" else [j.mean_square_value for j in group]
        fits = fit_ours_many("relu", K, [InputDistribution.from_samples(j.samples) for j in group],
                             [seed + n for n in range(len(group))], search,
                             [_binary_start(j.samples, K) for j in group],
                             None if progress is None else (lambda _stage, done, _total, n=n: progress(
                                 "fit encoders", n * search.iterations + done, total)),
                             spike_weight=[coding.spike_weight * v * j.fanout for v, j in zip(scale, group)])
        for job, fit, ms in zip(group, fits, changes):
            job.encoder.set_params(fit.h, fit.d, fit.T)
            results.append({"site": job.label, "spikes_per_change": fit.spikes, "mse": fit.mse,
                            "mean_square_change": ms, "mean_square_value": job.mean_square_value,
                            "relative_fanout": job.fanout})
    return results


def _fit_coding(models: dict[str, nn.Module], settings: dict) -> ChangeCoding:
    """The coding of changes a fit of ``models`` uses: theirs, with ``settings`` given to
    :func:`fit_delta` in place of its own (checked; :class:`SettingError` naming the setting)."""
    if not models:
        raise ValueError("this pipeline has no component coding changes: convert it with coding='delta' or 'graded'")
    unknown = sorted(set(settings) - {"images", "spike_weight", "price", "cost"})
    if unknown:
        raise TypeError(f"fit_delta() got an unexpected keyword argument {unknown[0]!r}")
    if "price" in settings:  # another price: its own default weight unless one is given
        settings = {"spike_weight": None, **settings}
    record = record_of(next(iter(models.values())))
    return replace(record.coding, **settings).resolve(record.K)
