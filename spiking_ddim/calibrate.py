"""Calibration: fit every FS site to the inputs that site actually sees.

The converted model samples with its original activations (FSActivation mode
``record``) along real DDIM trajectories, keeping a sample of each site's inputs; each
site's neuron is then refitted to that input distribution with the exact-gradient search
of ``fs_neurons``, starting from its current (bank) parameters, so no site gets worse.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from fs_neurons import InputDistribution, fs_mse
from fs_neurons.exact import OursConfig
from fs_neurons.methods import fit_ours

from .convert import SiteReport, fs_activations, set_mode
from .diffusion import ddim_sample

# A light search: the bank entry is already good; calibration adapts it to one site.
CALIBRATION_SEARCH = OursConfig(pool=32, restarts=1, iters=120, elite=4, elite_iters=200, rounds=1, mutants=32,
                                round_iters=100, polish_iters=300, time_budget=20.0)


@torch.no_grad()
def record_site_inputs(model: nn.Module, scheduler, num_images: int = 16, steps: int = 20,
                       batch_size: int = 16, seed: int = 10_000) -> None:
    """Sample ``num_images`` DDIM trajectories with the original activations, recording
    each site's inputs (kept in its FSActivation)."""
    for _, act in fs_activations(model):
        act.clear_records()
    set_mode(model, "record")
    try:
        for start in range(0, num_images, batch_size):
            seeds = range(seed + start, seed + min(start + batch_size, num_images))
            ddim_sample(model, scheduler, seeds, steps=steps)
    finally:
        set_mode(model, "fs")


def calibrate(
    model: nn.Module,
    scheduler,
    num_images: int = 16,
    steps: int = 20,
    seed: int = 0,
    search: OursConfig = CALIBRATION_SEARCH,
    progress: Optional[Callable[[int, int], None]] = None,
) -> list[SiteReport]:
    """Refit every FS site of a converted model to its recorded inputs, in place.

    Returns one report per site with the neuron's MSE on the site's inputs before and after.
    """
    record_site_inputs(model, scheduler, num_images, steps, seed=seed + 10_000)
    acts = fs_activations(model)
    total = sum(a.num_sites for _, a in acts)
    reports, done = [], 0
    for path, act in acts:
        for i, neuron in enumerate(act.neurons):
            dist = InputDistribution.from_samples(act.site_samples(i))
            p = neuron.params()
            before = fs_mse(p["h"], p["d"], p["T"], act._target, dist)
            fit = fit_ours(act._target, neuron.K, dist, seed=seed + done, config=search, start=(p["h"], p["T"]))
            if fit.mse < before:
                with torch.no_grad():
                    for name in ("h", "d", "T"):
                        getattr(neuron, name).copy_(torch.tensor(getattr(fit, name)))
            reports.append(SiteReport(f"{path}[{i}]", act.activation, act.signatures[i].to_json(),
                                      before, min(before, fit.mse)))
            done += 1
            if progress is not None:
                progress(done, total)
        act.clear_records()
    model.fs_conversion["calibrated"] = True
    return reports
