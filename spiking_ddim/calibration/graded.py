"""Fitting graded-change encoders (:class:`spiking_ddim.codings.GradedCoding`) to the
changes their sites see.

Per site, from its |change| samples ``a`` (:class:`~spiking_ddim.calibration.delta.Job`):
the step ``s`` spreads the encoder's ``2^(b-1) - 1`` levels over the largest change seen
(a larger one is clipped and error feedback sends the rest later; spread over the 99.9th
percentile instead, the early denoising steps' large changes lagged: 42.0 against 60.9 dB
on 8 images, in a one-off comparison); the dead zone
``T`` minimises, over the samples, the single-step cost

    mean(a^2 [a < T] + (a - q(a))^2 [a >= T]) + price x P(a >= T),

``q`` rounding to the step, ``price`` = ``spike_weight`` x the site's mean squared change or
value (``price``) x its relative fan-out (``cost="acs"``): the same price per event as
delta coding's per spike. Candidates for ``T`` are the sorted samples (at least half a
step, so no event rounds to 0), each scored exactly with prefix sums, and no event at all.
"""

from __future__ import annotations

import math

import torch

from ..codings import GradedCoding
from ..pipelines import Progress
from .delta import Job


def dead_zone(samples: torch.Tensor, step: float, levels: int, price: float) -> tuple[float, float, float]:
    """(dead zone, expected events per change, MSE) minimising the cost above for |change|
    ``samples`` (1-D, >= 0), a quantiser of ``step`` and ``levels`` levels, a ``price`` per event."""
    a = torch.sort(samples.double().flatten()).values
    n = a.numel()
    rounded = torch.clamp(torch.round(a / step), max=levels) * step
    silent = torch.cumsum(torch.cat([a.new_zeros(1), a * a]), 0)  # silent[k]: error of samples 0..k-1 unsent
    sent = torch.flip(torch.cumsum(torch.flip(torch.cat([(a - rounded) ** 2, a.new_zeros(1)]), [0]), 0), [0])
    events = (n - torch.arange(n + 1, dtype=torch.float64)) / n  # samples k.. are sent
    mse = (silent + sent) / n
    cost = mse + price * events
    allowed = torch.cat([a >= step / 2, torch.ones(1, dtype=torch.bool)])  # k = n: nothing sent
    cost = torch.where(allowed, cost, torch.full_like(cost, math.inf))
    k = int(torch.argmin(cost))
    if k == n:
        return 1e30, 0.0, float(mse[n])
    threshold = float(a[k]) if k == 0 else float((a[k - 1] + a[k]) / 2)
    return max(threshold, step / 2), float(events[k]), float(mse[k])


def fit_graded_jobs(jobs: list[Job], coding: GradedCoding, progress: Progress = None) -> list[dict]:
    """Set every job's encoder's step and dead zone (module docstring), in place; one result each."""
    results = []
    for i, job in enumerate(jobs):
        encoder, a = job.encoder, job.samples.double()
        top = float(a.max()) or 1.0
        step = top / encoder.levels
        change = float((a * a).mean())
        scale = change if coding.price == "change" else job.mean_square_value
        threshold, events, mse = dead_zone(a, step, encoder.levels, coding.spike_weight * scale * job.fanout)
        encoder.set_params([step], [step], [threshold])
        results.append({"site": job.label, "spikes_per_change": events, "mse": mse, "mean_square_change": change,
                        "mean_square_value": job.mean_square_value, "relative_fanout": job.fanout,
                        "step": step, "dead_zone": threshold})
        if progress is not None:
            progress("fit encoders", i + 1, len(jobs))
    return results
