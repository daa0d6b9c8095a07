"""Spike and energy budgets: which option every site takes so that the whole pipeline
spends at most a budget, and the outcome of a calibration.

Under a :class:`SpikeBudget` one multiplier mu picks, for every site, the option
minimising its summed squared error (weighted by its measured sensitivity) plus mu times
what its spikes cost (spikes, or the accumulates they trigger downstream), the smallest mu
that meets the budget; that choice competes with every site at its best fit of fewer time
steps, and the one whose denoiser output is closest to the original's on the probe is
kept (:func:`apply_budget`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from diffusers import DiffusionPipeline

from fs_neurons.utils.choices import check_choice

from ..convert import SiteReport
from ..energy import EnergyConstants
from ..pipelines import converted_components
from ..record import add_event
from .options import SiteOptions


@dataclass(frozen=True)
class SpikeBudget:
    """What the FS sites of a pipeline may spend per call: ``kind`` ``spikes`` = mean spikes
    per neuron (all sites, weighted by their neurons), or ``energy`` = the SNN/ANN energy
    ratio per image under ``constants`` (dense layers included, so it has a floor)."""

    kind: str
    value: float
    constants: EnergyConstants = EnergyConstants()

    def __post_init__(self) -> None:
        check_choice("budget kind", self.kind, ("spikes", "energy"))
        if not math.isfinite(self.value) or self.value <= 0:
            raise ValueError(f"the {self.kind} budget must be a finite number > 0 (at 0 every site is silent and "
                             f"the model outputs no signal), got {self.value}")


def budget_limit(found: SiteOptions, budget: SpikeBudget) -> float:
    """What the sites may spend per forward pass: spikes, or accumulates (energy budget)."""
    if budget.kind == "spikes":
        return budget.value * sum(found.neurons.values())
    c = budget.constants
    limit = (budget.value * c.mac_pj * found.ann_macs - c.mac_pj * found.dense_macs) / c.ac_pj
    if limit < 0:
        raise ValueError(f"energy budget {budget.value} is below what the dense (MAC) layers alone cost: "
                         f"an SNN/ANN ratio of {found.dense_macs / found.ann_macs:.3f}")
    return limit


def allocate(found: SiteOptions, budget: SpikeBudget, weighting: str) -> list[dict[bytes, int]]:
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
    limit = budget_limit(found, budget)

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
def set_options(found: SiteOptions, choice: dict[bytes, int]) -> None:
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
    check_choice("weighting", weighting, ("sensitivity", "neurons"))
    weighting = weighting if found.sensitivity else "neurons"
    choices = [{k: 0 for k in found.options}] if budget is None else allocate(found, budget, weighting)
    if len(choices) > 1 and found.probe is not None:
        unet = converted_components(pipe)["unet"]
        scores = []
        for choice in choices:
            set_options(found, choice)
            scores.append(found.probe.error(unet))
        choices = [choices[scores.index(min(scores))]]
    choice = choices[0]
    set_options(found, choice)
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
