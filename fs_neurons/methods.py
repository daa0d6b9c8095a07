"""Fitting methods: the paper's baselines (``random``, ``gaussian``), TBPI and ``ours``.

* ``random`` (the paper's FS-Swish row): random init, pre-train, train on.
* ``gaussian``: the pre-trained parameters plus N(0, noise_std^2) noise, trained on.
* ``tbpi``: fit a tendency to each of h(t), d(t), T(t) of the pre-trained neuron,
  re-initialise from the fitted curves, train on.
* ``ours``: the exact-gradient search of :mod:`fs_neurons.exact` (ours).

All methods fit on an :class:`InputDistribution` (the paper's uniform grid by default)
and report the exact float64 error of the result.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence, Union

import torch

from . import exact
from .distribution import InputDistribution
from .exact import OursConfig
from .metrics import fs_mse
from .names import BASELINES
from .neuron import FSNeuron, check_K
from .targets import Activation, resolve_activation
from .tendency import TendencyFit, fit_tendencies
from .training import train_surrogate
from .utils.seeds import stream

# The TBPI paper's neuron-level table: MSE x 100 of FS-Swish on 100,000 points of [-8, 12].
PAPER_TABLE = {
    "random": {4: 3.8797, 8: 0.9776, 12: 0.1521, 16: 0.1425},
    "gaussian": {4: 3.8796, 8: 0.8968, 12: 0.1517, 16: 0.1249},
    "tbpi": {4: 3.8795, 8: 0.6295, 12: 0.1413, 16: 0.1246},
}
Progress = Optional[Callable[[str, int, int], None]]  # (stage, done, total)


@dataclass
class FSFit:
    """One fitted neuron. ``curves`` maps a stage name to its loss curve, logged every
    ``curve_every[stage]`` epochs (surrogate stages) or per search phase (``search``)."""

    activation: str
    K: int
    method: str
    h: list[float]
    d: list[float]
    T: list[float]
    mse: float
    distribution: str
    seed: int
    seconds: float
    curves: dict[str, list[float]] = field(default_factory=dict)
    curve_every: dict[str, int] = field(default_factory=dict)
    pretrained: Optional[dict[str, list[float]]] = None
    tendency: Optional[dict[str, TendencyFit]] = None
    spikes: Optional[float] = None  # ours: expected spikes per call under the distribution

    def neuron(self, **kwargs) -> FSNeuron:
        return FSNeuron.from_params(self.h, self.d, self.T, **kwargs)

    def to_json(self) -> dict:
        """Every field as JSON; a TBPI fit's tendency curves carry their formulas."""
        out = asdict(self)
        if self.tendency is not None:
            out["tendency"] = {k: {**asdict(v), "formula": v.formula()} for k, v in self.tendency.items()}
        return out


def _random_init(K: int, seeds: Sequence[int]) -> FSNeuron:
    """P = len(seeds) neurons, each with the paper's random init from its own seed."""
    rows = [FSNeuron(K, generator=torch.Generator().manual_seed(int(s))).params() for s in seeds]
    return FSNeuron.from_params(*([r[k] for r in rows] for k in ("h", "d", "T")))


def fit_baselines(
    activation: Union[str, Activation],
    K: int,
    seeds: Sequence[int] = (0,),
    dist: Optional[InputDistribution] = None,
    epochs: int = 20_000,
    lr: float = 1e-3,
    tendency: str = "auto",
    noise_std: float = 0.1,
    log_every: int = 100,
    progress: Progress = None,
) -> dict[tuple[str, int], FSFit]:
    """``random``, ``gaussian`` and ``tbpi`` for every seed, sharing one pre-training stage
    per seed; all neurons of a stage train together as one vectorised FSNeuron.

    Returns ``{(method, seed): FSFit}``. ``epochs`` is per stage (the paper: 20,000).
    """
    check_K(K)
    name, target = resolve_activation(activation)
    dist = dist or InputDistribution.uniform()
    seeds = [int(s) for s in seeds]
    P = len(seeds)
    start = time.perf_counter()

    def stage(label: str) -> Optional[Callable]:
        return None if progress is None else (lambda epoch, _l: progress(label, epoch + 1, epochs))

    pre = _random_init(K, seeds)
    pre_curve = train_surrogate(pre, target, dist, epochs, lr, log_every, stage("pretrain"))
    pre_params = pre.params()
    pre_seconds = time.perf_counter() - start

    inits, tendencies = {m: {k: [] for k in "hdT"} for m in BASELINES}, []
    for i, seed in enumerate(seeds):
        p = {k: pre_params[k][i] for k in "hdT"}
        noise = torch.Generator().manual_seed(stream("gaussian-baseline-noise", seed))
        fits = fit_tendencies(p, tendency)
        tendencies.append(fits)
        for k in "hdT":
            inits["random"][k].append(p[k])
            jitter = torch.randn(K, generator=noise, dtype=torch.float64) * noise_std
            inits["gaussian"][k].append((torch.tensor(p[k]) + jitter).tolist())
            inits["tbpi"][k].append(list(fits[k].values))
    post = FSNeuron.from_params(*(sum((inits[m][k] for m in BASELINES), []) for k in "hdT"))
    t1 = time.perf_counter()
    post_curve = train_surrogate(post, target, dist, epochs, lr, log_every, stage("retrain"))
    post_seconds = (time.perf_counter() - t1) / len(BASELINES)
    post_params = post.params()

    results = {}
    for j, method in enumerate(BASELINES):
        for i, seed in enumerate(seeds):
            row = j * P + i
            h, d, T = (post_params[k][row] for k in "hdT")
            results[(method, seed)] = FSFit(
                activation=name, K=K, method=method, h=h, d=d, T=T,
                mse=fs_mse(h, d, T, target, dist), distribution=dist.description, seed=seed,
                seconds=(pre_seconds + post_seconds) / P,
                curves={"pretrain": pre_curve[i].tolist(), "retrain": post_curve[row].tolist()},
                curve_every={"pretrain": log_every, "retrain": log_every},
                pretrained={k: pre_params[k][i] for k in "hdT"},
                tendency=tendencies[i] if method == "tbpi" else None,
            )
    return results


def fit_ours(
    activation: Union[str, Activation],
    K: int,
    dist: Optional[InputDistribution] = None,
    seed: int = 0,
    config: OursConfig = OursConfig(),
    start: Optional[tuple[Sequence[float], Sequence[float]]] = None,
    progress: Progress = None,
    spike_weight: float = 0.0,
    max_spikes: Optional[float] = None,
) -> FSFit:
    """``ours``: the exact-gradient search of :func:`fs_neurons.exact.search_many` at one K.

    ``start`` = (h, T) of a known neuron (e.g. a bank entry) joins the starting pool, so the
    result is never worse than it with its best d. ``curves["search"]`` holds the best
    error after each search phase.

    Spikes: the search minimises ``MSE + spike_weight * spikes`` with ``spikes`` the
    expected spikes per call under ``dist`` (exact), and with ``max_spikes`` keeps
    ``spikes <= max_spikes`` (0: a neuron that never spikes). ``spike_weight=0`` and no
    budget is the plain fit. The fit's ``spikes`` records what it spends.
    """
    return fit_ours_many(activation, K, [dist or InputDistribution.uniform()], [seed], config, [start], progress,
                         spike_weight, max_spikes)[0]


def fit_ours_many(
    activation: Union[str, Activation],
    K: int,
    dists: Sequence[InputDistribution],
    seeds: Sequence[int],
    config: OursConfig = OursConfig(),
    starts: Optional[Sequence[Optional[tuple[Sequence[float], Sequence[float]]]]] = None,
    progress: Progress = None,
    spike_weight: Union[float, Sequence[float]] = 0.0,
    max_spikes: Union[None, float, Sequence[Optional[float]]] = None,
) -> list[FSFit]:
    """:func:`fit_ours` for one neuron per distribution, all searched in one batch: neuron
    g fits ``dists[g]``, draws from ``seeds[g]`` and starts from ``starts[g]`` (or None),
    under ``spike_weight`` and ``max_spikes`` (one value, or one per distribution).
    ``seconds`` of each fit is the batch's wall time divided by G."""
    check_K(K)
    name, target = resolve_activation(activation)
    objective = exact.SpikeObjective.of(len(dists), spike_weight, max_spikes)
    if not (objective.spike_weight.any() or torch.isfinite(objective.max_spikes).any()):
        objective = None  # the plain fit
    t0 = time.perf_counter()
    inits = None if starts is None else [
        None if st is None else tuple(torch.as_tensor(v, dtype=torch.float64) for v in st) for st in starts]
    if progress is not None:
        progress("ours", 0, config.iterations)
    elites, histories = exact.search_many(
        dists, target, K, config, [torch.Generator().manual_seed(int(s)) for s in seeds], inits, objective=objective,
        on_step=None if progress is None else (lambda done, total: progress("ours", done, total)),
    )
    seconds = (time.perf_counter() - t0) / len(dists)
    fits = []
    for dist, seed, elite, history in zip(dists, seeds, elites, histories):
        h, d, T = (v.tolist() for v in (elite.h[0], elite.d[0], elite.T[0]))
        fits.append(FSFit(
            activation=name, K=K, method="ours", h=h, d=d, T=T, mse=fs_mse(h, d, T, target, dist),
            distribution=dist.description, seed=int(seed), seconds=seconds,
            curves={"search": history}, curve_every={"search": 1}, spikes=float(elite.spikes[0]),
        ))
    return fits
