"""Fitting delta encoders to the changes their sites see (see :mod:`spiking_ddim.delta`).

The pipeline samples a few images with its original activations while a
:class:`~spiking_ddim.monitors.ChangeMonitor` records, per call site, |change| of the
activation between consecutive denoising steps; each site's encoder is then fitted by the
exact method to the identity on that distribution, a spike priced at ``spike_weight``
times the site's mean squared change or activation (``price``), and, with ``cost="acs"``,
times what it costs downstream: the accumulates one spike of the site causes in the layer
it feeds over the model's mean (a probe pass of one image under
:class:`~spiking_ddim.energy.CostMeter` measures it).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import NamedTuple, Optional

import torch
from diffusers import DiffusionPipeline
from torch import nn

from fs_neurons.delta import binary_code
from fs_neurons.distribution import InputDistribution
from fs_neurons.methods import fit_ours_many
from fs_neurons.search_config import OursConfig
from fs_neurons.state import reset_net
from fs_neurons.utils.choices import check_choice
from fs_neurons.utils.seeds import stream

from ..defaults import DELTA_COST, DELTA_COSTS, DELTA_IMAGES, DELTA_PRICE, DELTA_PRICES, DELTA_SPIKE_WEIGHTS
from ..delta import encoders, step_coding
from ..energy import measure_cost
from ..errors import SettingError
from ..held_out import delta_fit_seeds
from ..monitors import ChangeMonitor
from ..pipelines import Progress, SamplingOptions, converted_components, counting_denoiser_calls, generate
from ..record import add_event
from ..sites import fs_activations, original_activations
from .options import CALIBRATION_SEARCH


def _binary_start(samples: torch.Tensor, K: int) -> tuple[list[float], list[float]]:
    """(h, T) of a binary code of K steps covering the 99.9th percentile of ``samples``."""
    top = float(torch.quantile(samples[:100_000].double(), 0.999)) or float(samples.max()) or 1.0
    h, _, T = binary_code(K, top)
    return h, T


class _Job(NamedTuple):
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


def check_delta_fit(spike_weight: Optional[float] = None, price: str = DELTA_PRICE, cost: str = DELTA_COST,
                    num_images: int = DELTA_IMAGES) -> float:
    """The settings of :func:`fit_delta` checked before any work (:class:`SettingError`
    naming the setting); the spike weight, the price's default filled in."""
    check_choice("price", price, DELTA_PRICES, lambda m: SettingError("price", m))
    check_choice("cost", cost, DELTA_COSTS, lambda m: SettingError("cost", m))
    spike_weight = DELTA_SPIKE_WEIGHTS[price] if spike_weight is None else spike_weight
    if not (isinstance(spike_weight, (int, float)) and 0 <= spike_weight < float("inf")):
        raise SettingError("spike_weight", f"the price of a spike must be a finite number >= 0, got {spike_weight!r}")
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise SettingError("num_images", f"the images the encoders are fitted to must be >= 1, got {num_images!r}")
    return float(spike_weight)


def fit_delta(
    pipe: DiffusionPipeline,
    options: SamplingOptions,
    num_images: int = DELTA_IMAGES,
    seed: int = 0,
    spike_weight: Optional[float] = None,
    progress: Progress = None,
    batch_size: int = 8,
    search: OursConfig = CALIBRATION_SEARCH,
    price: str = DELTA_PRICE,
    cost: str = DELTA_COST,
) -> list[dict]:
    """Fit every delta encoder of a converted pipeline to the changes its site sees when the
    pipeline samples ``num_images`` images with ``options`` (the original network's run,
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
    None: the price's default (``DELTA_SPIKE_WEIGHTS``). Returns per site: name, expected spikes
    per change, MSE, mean squared change, mean squared value and relative fan-out (1 with
    ``cost="spikes"``)."""
    spike_weight = check_delta_fit(spike_weight, price, cost, num_images)
    models = {n: m for n, m in converted_components(pipe).items() if encoders(m)}
    if not models:
        raise ValueError("this pipeline has no delta-coded component: convert it with coding='delta'")
    fanout = {name: _relative_fanout(pipe, model, options, seed) if cost == "acs" else {}
              for name, model in models.items()}
    first = stream("calibration-inputs", seed)
    with contextlib.ExitStack() as stack:
        monitors = {}
        for name, model in models.items():
            stack.enter_context(original_activations(model))
            monitors[name] = stack.enter_context(ChangeMonitor(model, seed=seed))
        stack.enter_context(counting_denoiser_calls(pipe, num_images, batch_size, options, progress, "record changes"))
        for start in range(0, num_images, batch_size):
            for m in monitors.values():
                m.new_run()
            generate(pipe, range(start, min(num_images, start + batch_size)), options, seed=first)
    jobs, silent = [], []
    for name, model in models.items():
        for path, act in fs_activations(model):
            for i, encoder in enumerate(act.encoders):
                samples = monitors[name].samples(act, i).double()
                label = f"{path if name == 'unet' else f'{name}.{path}'}[{i}]"
                if float(samples.max()) <= 0:  # nothing ever changed: an encoder that never spikes
                    silent.append((label, encoder))
                    continue
                jobs.append(_Job(label, encoder, samples, monitors[name].mean_square(act, i),
                                 fanout[name].get(f"{path}[{i}]", 1.0)))
    results = []
    by_K: dict[int, list[_Job]] = {}
    for job in jobs:
        by_K.setdefault(job.encoder.K, []).append(job)
    total = len(by_K) * search.iterations  # the exact-gradient steps of every search, for progress
    for n, (K, group) in enumerate(by_K.items()):
        changes = [float((j.samples * j.samples).mean()) for j in group]
        scale = changes if price == "change" else [j.mean_square_value for j in group]
        fits = fit_ours_many("relu", K, [InputDistribution.from_samples(j.samples) for j in group],
                             [seed + n for n in range(len(group))], search,
                             [_binary_start(j.samples, K) for j in group],
                             None if progress is None else (lambda _stage, done, _total, n=n: progress(
                                 "fit encoders", n * search.iterations + done, total)),
                             spike_weight=[spike_weight * v * j.fanout for v, j in zip(scale, group)])
        for job, fit, ms in zip(group, fits, changes):
            job.encoder.set_params(fit.h, fit.d, fit.T)
            results.append({"site": job.label, "spikes_per_change": fit.spikes, "mse": fit.mse,
                            "mean_square_change": ms, "mean_square_value": job.mean_square_value,
                            "relative_fanout": job.fanout})
    for label, encoder in silent:
        K = encoder.K
        encoder.set_params([0.0] * K, [0.0] * K, [1e30] * K)
        results.append({"site": label, "spikes_per_change": 0.0, "mse": 0.0, "mean_square_change": 0.0,
                        "mean_square_value": None, "relative_fanout": None})
    for model in models.values():
        reset_net(model)
        add_event(model, "delta-fit", images=num_images, image_seeds=delta_fit_seeds(num_images, seed),
                  steps=options.steps, seed=seed, spike_weight=spike_weight,
                  price=price, cost=cost, sites=len(results),
                  spikes_per_change=sum(r["spikes_per_change"] for r in results) / len(results))
    return results


def refit_delta(pipe: DiffusionPipeline, options: SamplingOptions,
                progress: Progress = None) -> list[dict]:
    """Fit the delta encoders of ``pipe`` again, with the images, seed, spike weight, price and cost of
    the model's last fit (its ``delta-fit`` event) and ``options``' runs: for a model whose weights
    changed since (fine-tuning with ``--train-unet``), whose sites now see other changes.
    Returns :func:`fit_delta`'s per-site list; ``ValueError`` if the UNet was never fitted."""
    last = last_delta_fit(pipe.unet)
    if last is None:
        raise ValueError("the UNet's delta encoders were never fitted: use fit_delta")
    return fit_delta(pipe, options, num_images=last["images"], seed=last["seed"], spike_weight=last["spike_weight"],
                     progress=progress, price=last["price"], cost=last["cost"])


def last_delta_fit(model: nn.Module) -> Optional[dict]:
    """The last ``delta-fit`` event of a converted model's record, or None; fits recorded before
    ``price`` and ``cost`` were recorded read as the price and cost they used: change, spikes."""
    spec = getattr(model, "fs_config", None)
    fits = spec.events("delta-fit") if spec is not None else []
    return {"price": "change", "cost": "spikes", **fits[-1]} if fits else None
