"""Exact, differentiable fitting error of FS neurons, and the ``ours`` optimiser built on it.

An FS neuron's output is piecewise constant in x. Following the spike loop, the input
interval splits at most once per time step: a piece whose spikes so far subtracted c
from the membrane splits at x = T[t] + c. So every breakpoint is *linear* in (h, T),
every level is linear in d, and the weighted MSE over an :class:`InputDistribution`
is a sum over pieces of closed-form cell sums (:class:`CumulativeMoments`). That gives

* the exact error (no surrogate, no sampling) and its gradient w.r.t. h and T, and
* the optimal d for given h and T as a K x K least-squares solve.

A split point outside its piece is clamped to the piece's end; the clamp passes the
one-sided gradient through when moving the split inward would lower the error, so dead
pieces can come back. Everything here is batched over B candidate neurons, parameters
of shape (B, K), float64, and candidate b may belong to its own input distribution
``group[b]`` of a multi-distribution :class:`CumulativeMoments`, so :func:`search_many`
fits many sites (one distribution each) in one batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, Optional, Sequence, Union

import torch

from .distribution import CumulativeMoments, InputDistribution
from .search_config import OursConfig
from .targets import Activation

Bound = Union[float, torch.Tensor]


class _InwardClamp(torch.autograd.Function):
    """clamp(s, lo, hi), whose backward also reaches an out-of-range s when the gradient
    points inward and the piece has nonzero width."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(s, lo, hi)
        return torch.minimum(torch.maximum(s, lo), hi)

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        s, lo, hi = ctx.saved_tensors
        below, above = s < lo, s > hi
        inward = (hi > lo) & ((below & (g < 0)) | (above & (g > 0)))
        return g * (~(below | above) | inward), g * below, g * above


@dataclass
class Pieces:
    """The pieces of B neurons on [lo, hi]: piece i belongs to candidate ``cand[i]``, spans
    [``lo[i]``, ``hi[i]``], has spike pattern ``code[i]`` (bit t set: spike at step t) and
    output ``level[i]`` (zero when no d was given). Zero-width pieces stand for the piece
    that would open if a clamped split moved inward."""

    cand: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    code: torch.Tensor
    level: torch.Tensor

    def spikes(self, K: int) -> torch.Tensor:
        """Spike patterns as a float64 matrix, shape (n_pieces, K)."""
        bits = torch.arange(K, device=self.code.device)
        return ((self.code.unsqueeze(1) >> bits) & 1).to(torch.float64)

    def counts(self, K: int) -> torch.Tensor:
        """Spikes each piece emits per call (n_pieces,), float64."""
        return self.spikes(K).sum(1)


def pieces(h: torch.Tensor, T: torch.Tensor, lo: Bound, hi: Bound, d: Optional[torch.Tensor] = None) -> Pieces:
    """Pieces of the neurons (h, T) of shape (B, K) on [lo, hi] (floats, or one range per
    candidate, shape (B,)), differentiable in h and T; with output weights ``d`` (B, K)
    each piece's level is accumulated too."""
    B, K = h.shape
    cand = torch.arange(B)
    plo = torch.as_tensor(lo, dtype=torch.float64).expand(B).clone()
    phi = torch.as_tensor(hi, dtype=torch.float64).expand(B).clone()
    c = torch.zeros(B, dtype=torch.float64)
    level = torch.zeros(B, dtype=torch.float64)
    d = torch.zeros_like(h) if d is None else d.detach()
    code = torch.zeros(B, dtype=torch.long)
    degenerate = torch.zeros(B, dtype=torch.bool)
    for t in range(K):
        split = T[cand, t] + c
        step, out = h[cand, t], d[cand, t]
        o = (~degenerate).nonzero().squeeze(1)
        g = degenerate.nonzero().squeeze(1)
        s = _InwardClamp.apply(split[o], plo[o], phi[o])
        # A zero-width piece follows the path its right-neighbourhood would take.
        zg = plo[g].detach() > split[g].detach()
        cand = torch.cat([cand[o], cand[o], cand[g]])
        plo, phi = torch.cat([plo[o], s, plo[g]]), torch.cat([s, phi[o], phi[g]])
        c = torch.cat([c[o], c[o] + step[o], c[g] + step[g] * zg])
        level = torch.cat([level[o], level[o] + out[o], level[g] + out[g] * zg])
        code = torch.cat([code[o], code[o] | (1 << t), code[g] | (zg.long() << t)])
        degenerate = (phi - plo).detach() <= 0
    return Pieces(cand, plo, phi, code, level)


def _piece_sums(p: Pieces, moments: CumulativeMoments, group: torch.Tensor) -> torch.Tensor:
    """(sum w, sum w f, sum w f^2) over each piece, shape (n_pieces, 3)."""
    g = group[p.cand]
    return moments.at(p.hi, g) - moments.at(p.lo, g)


def _groups(group: Optional[torch.Tensor], B: int) -> torch.Tensor:
    """Each candidate's distribution (B,): ``group``, or distribution 0 for all."""
    if group is None:
        return torch.zeros(B, dtype=torch.long)
    if group.shape != (B,):
        raise ValueError(f"group must have shape ({B},), got {tuple(group.shape)}")
    return group


def optimal_d(p: Pieces, sums: torch.Tensor, B: int, K: int, ridge: float = 1e-12) -> torch.Tensor:
    """Least-squares output weights d (B, K) for fixed pieces: minimises the sum over pieces
    of sum w (f - z.d)^2. ``ridge`` (relative to each candidate's total weight) keeps steps
    that never spike at d = 0."""
    Z = p.spikes(K)
    n = sums[:, 0].detach()
    order = torch.argsort(p.cand, stable=True)
    counts = torch.bincount(p.cand, minlength=B)
    start = torch.cumsum(counts, 0) - counts
    rows = p.cand[order]
    slot = torch.arange(p.cand.numel()) - start[rows]
    padded = torch.zeros(B, int(counts.max()), K, dtype=torch.float64)
    padded[rows, slot] = Z[order]
    weight = torch.zeros(B, int(counts.max()), 1, dtype=torch.float64)
    weight[rows, slot, 0] = n[order]
    A = (padded * weight).transpose(1, 2) @ padded
    r = torch.zeros(B, K, dtype=torch.float64).index_add_(0, p.cand, Z * sums[:, 1].detach().unsqueeze(1))
    scale = ridge * torch.zeros(B, dtype=torch.float64).index_add_(0, p.cand, n) + 1e-300
    return torch.linalg.solve(A + scale.view(B, 1, 1) * torch.eye(K, dtype=torch.float64), r)


def exact_cost(
    h: torch.Tensor, d: Optional[torch.Tensor], T: torch.Tensor, moments: CumulativeMoments,
    group: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted MSE (B,) of each candidate on its distribution ``group`` (B,) (default: 0),
    its expected spikes per call (B,) under that distribution, and the d used (B, K); both
    differentiable in h and T (a piece's spikes are fixed, its probability mass moves with
    its ends).

    With ``d=None`` the least-squares optimal d for these (h, T) is used and returned.
    """
    B, K = h.shape
    group = _groups(group, B)
    lo, hi = moments.lo[group], moments.hi[group]
    if d is None:
        with torch.no_grad():
            p = pieces(h, T, lo, hi)
            d = optimal_d(p, _piece_sums(p, moments, group), B, K)
    p = pieces(h, T, lo, hi, d)
    sums = _piece_sums(p, moments, group)
    per_piece = sums[:, 2] - 2 * p.level * sums[:, 1] + p.level * p.level * sums[:, 0]
    total = torch.zeros(B, dtype=torch.float64).index_add(0, p.cand, per_piece)
    spikes = torch.zeros(B, dtype=torch.float64).index_add(0, p.cand, sums[:, 0] * p.counts(K))
    weight = moments.total_weight[group]
    return total / weight, spikes / weight, d


def exact_mse(
    h: torch.Tensor, d: Optional[torch.Tensor], T: torch.Tensor, moments: CumulativeMoments,
    group: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`exact_cost` without the spikes: (MSE (B,), d (B, K))."""
    mse, _, d = exact_cost(h, d, T, moments, group)
    return mse, d


def _per_group(value, G: int, name: str, default: float) -> torch.Tensor:
    values = [default if v is None else v for v in (value if isinstance(value, (list, tuple)) else [value] * G)]
    if len(values) != G:
        raise ValueError(f"{name}: need one value or one per distribution ({G}), got {len(values)}")
    t = torch.tensor(values, dtype=torch.float64)
    if torch.isnan(t).any() or (t < 0).any():
        raise ValueError(f"{name} must be >= 0 (not NaN), got {values}")
    return t


@dataclass(frozen=True)
class SpikeObjective:
    """What the search minimises on distribution g: ``mse + spike_weight[g] * spikes``,
    subject to ``spikes <= max_spikes[g]`` (expected spikes per call; ``inf``: no budget),
    both (G,) float64. A candidate over its budget scores ``VIOLATION`` (in MSE units) per
    spike over it on top: that steers its gradient back and ranks it below every candidate
    within budget (a never-spiking one always is)."""

    spike_weight: torch.Tensor
    max_spikes: torch.Tensor

    VIOLATION = 1e6

    @classmethod
    def of(cls, G: int, spike_weight: Union[float, Sequence[float]] = 0.0,
           max_spikes: Union[None, float, Sequence[Optional[float]]] = None) -> "SpikeObjective":
        """One spike weight (finite, >= 0) and one budget (>= 0, None: none) for all G
        distributions, or one each."""
        weight = _per_group(spike_weight, G, "spike_weight", 0.0)
        if torch.isinf(weight).any():
            raise ValueError(f"spike_weight must be finite, got {weight.tolist()}")
        return cls(weight, _per_group(max_spikes, G, "max_spikes", math.inf))

    def score(self, mse: torch.Tensor, spikes: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        over = (spikes - self.max_spikes[group]).clamp_min(0.0)
        return mse + self.spike_weight[group] * spikes + self.VIOLATION * over


def best_per_group(mse: torch.Tensor, group: torch.Tensor, n: Union[int, torch.Tensor]) -> torch.Tensor:
    """Indices of the ``n`` lowest ``mse`` (B,) of every group (``n``: one count, or one per
    group), ordered by group, then best first."""
    by_mse = torch.argsort(mse, stable=True)
    order = by_mse[torch.argsort(group[by_mse], stable=True)]
    g = group[order]
    counts = torch.bincount(g)
    rank = torch.arange(g.numel()) - (torch.cumsum(counts, 0) - counts)[g]
    limit = torch.as_tensor(n).expand(counts.numel())[g]
    return order[rank < limit]


@dataclass
class Candidates:
    """B candidate neurons with their exact errors: h, d, T of shape (B, K), mse (B,), the
    distribution each was fitted on, ``group`` (B,), expected spikes per call ``spikes``
    (B,) and the ``score`` (B,) the search ranks them by (the MSE unless spikes count)."""

    h: torch.Tensor
    d: torch.Tensor
    T: torch.Tensor
    mse: torch.Tensor
    group: torch.Tensor
    spikes: torch.Tensor
    score: torch.Tensor

    @classmethod
    def of(cls, h: torch.Tensor, T: torch.Tensor, moments: CumulativeMoments, group: torch.Tensor,
           objective: Optional[SpikeObjective] = None) -> "Candidates":
        """Candidates (h, T) with their best d, errors, spikes and scores."""
        with torch.no_grad():
            mse, spikes, d = exact_cost(h, None, T, moments, group)
        return cls(h, d, T, mse, group, spikes, mse if objective is None else objective.score(mse, spikes, group))

    def best(self, n: int = 1) -> "Candidates":
        """The ``n`` best (lowest score) of every group, ordered by group, best first."""
        return self.take(best_per_group(self.score, self.group, n))

    def take(self, i: torch.Tensor) -> "Candidates":
        return Candidates(*(getattr(self, f.name)[i] for f in fields(self)))


def refine(
    h: torch.Tensor,
    T: torch.Tensor,
    moments: CumulativeMoments,
    iters: int = 300,
    lr: float = 0.02,
    cull_at: float = 1.0,
    keep: float = 1.0,
    on_step: Optional[Callable[[int, torch.Tensor], None]] = None,
    group: Optional[torch.Tensor] = None,
    objective: Optional[SpikeObjective] = None,
) -> Candidates:
    """Adam on (h, T) of B candidates against their exact error on their distributions
    ``group`` (B,) (default: 0), with d solved exactly at every step and cosine learning-rate
    decay. After ``cull_at * iters`` steps only the best ``keep`` fraction of each group's
    candidates continues. With an ``objective`` the score descended and culled on is its
    (error + spike cost); without, the error. Returns the survivors with their errors."""
    group = _groups(group, h.shape[0])
    h = h.detach().clone().to(torch.float64)
    T = T.detach().clone().to(torch.float64)
    m = torch.zeros(2, *h.shape, dtype=torch.float64)
    v = torch.zeros_like(m)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    cull_step = int(cull_at * iters) if keep < 1.0 else -1
    for i in range(iters):
        h.requires_grad_(True)
        T.requires_grad_(True)
        mse, spikes, _ = exact_cost(h, None, T, moments, group)
        score = mse if objective is None else objective.score(mse, spikes, group)
        # The last step's h never matters (the membrane is not read after step K).
        gh, gT = torch.autograd.grad(score.sum(), (h, T), allow_unused=True, materialize_grads=True)
        with torch.no_grad():
            if i == cull_step:
                quota = (keep * torch.bincount(group).double()).round().clamp_min(1).long()
                survivors = best_per_group(score, group, quota)
                h, T, m, v, group = h[survivors], T[survivors], m[:, survivors], v[:, survivors], group[survivors]
                gh, gT = gh[survivors], gT[survivors]
            grad = torch.stack([gh, gT])
            m.mul_(beta1).add_(grad, alpha=1 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            rate = 0.5 * lr * (1 + math.cos(math.pi * i / iters))
            step = rate / (1 - beta1 ** (i + 1)) * m / ((v / (1 - beta2 ** (i + 1))).sqrt() + eps)
            h, T = h.detach() - step[0], T.detach() - step[1]
        if on_step is not None:
            on_step(i, score.detach())
    return Candidates.of(h, T, moments, group, objective)


def _curvature_points(dist: InputDistribution, target: Activation, n: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid over the distribution's range and weights |f''| x input mass (where a piecewise
    constant fit needs its pieces); falls back to the input mass for a linear target."""
    x = torch.linspace(dist.lo, dist.hi, n, dtype=torch.float64)
    step = (dist.hi - dist.lo) * 1e-3
    curv = (target(x + step) - 2 * target(x) + target(x - step)).abs() / step**2
    cum = torch.cumsum(dist.w, 0)
    mass = torch.diff(cum[torch.searchsorted(dist.x, x).clamp(max=dist.x.numel() - 1)], prepend=cum[:1] * 0)
    weight = curv * mass
    return x, (weight if float(weight.sum()) > 0 else mass + 1e-12)


class _Sampler:
    """Random starting neurons and mutations for :func:`search`, on the scale of an input
    distribution."""

    def __init__(self, dist: InputDistribution, target: Activation, K: int, g: torch.Generator):
        self.K, self.g = K, g
        lo = float(dist.x[torch.searchsorted(torch.cumsum(dist.w, 0), 0.001 * dist.w.sum()).clamp(max=dist.x.numel() - 1)])
        hi = float(dist.x[torch.searchsorted(torch.cumsum(dist.w, 0), 0.999 * dist.w.sum()).clamp(max=dist.x.numel() - 1)])
        self.lo, self.span = lo, max(hi - lo, 1e-12)
        self.dist = dist
        self.curve_x, self.curve_w = _curvature_points(dist, target)

    def _u(self, a: float, b: float, n: int = 1) -> torch.Tensor:
        return a + (b - a) * torch.rand(n, generator=self.g, dtype=torch.float64)

    def _int(self, a: int, b: int) -> int:
        return int(torch.randint(a, b + 1, (1,), generator=self.g))

    def _at(self, a: float, b: float, n: int) -> torch.Tensor:
        """n positions, uniform on [lo + a span, lo + b span]."""
        return self.lo + self.span * self._u(a, b, n)

    def _bend(self, n: int) -> torch.Tensor:
        """n positions drawn where the target bends."""
        if n == 0:
            return self.curve_x[:0]
        return self.curve_x[torch.multinomial(self.curve_w, n, replacement=True, generator=self.g)]

    def template(self) -> tuple[torch.Tensor, torch.Tensor]:
        """coarse steps | a binary-ADC block (h halving, T tracking h) | small corrections."""
        K, s = self.K, self.span
        a = self._int(min(3, K), min(8, K))
        c = self._int(0, min(2, K - a))
        m = K - a - c
        adc = float(self._u(0.15, 0.35)) * s * 2.0 ** -torch.arange(1, a + 1, dtype=torch.float64)
        adc = adc * (1 + 0.05 * torch.randn(a, generator=self.g, dtype=torch.float64))
        coarse_T = self._at(0.1, 0.6, m) if self._int(0, 1) else self._bend(m)
        h = torch.cat([self._u(-0.05, 0.15, m) * s, adc, self._u(-0.015, 0.015, c) * s])
        T = torch.cat([coarse_T, adc * float(self._u(0.85, 1.0)), self._bend(c)])
        return h, T

    def random(self) -> tuple[torch.Tensor, torch.Tensor]:
        """|N(0, 1)|-like resets scaled to the span, thresholds drawn from the inputs."""
        h = torch.randn(self.K, generator=self.g, dtype=torch.float64).abs() * 0.1 * self.span
        idx = torch.multinomial(self.dist.w, self.K, replacement=True, generator=self.g)
        return h, self.dist.x[idx].clone()

    def mutate(self, h: torch.Tensor, T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Redraw one step, move one step, swap two neighbours, or jitter every parameter."""
        K, h, T = self.K, h.clone(), T.clone()
        kind = self._int(0, 3 if K > 1 else 0)
        if kind == 0:
            p = self._int(0, K - 1)
            h[p] = float(self._u(-0.05, 0.1)) * self.span * 0.5 ** self._int(0, 4)
            T[p] = float(self._bend(1)) if self._int(0, 1) else float(self._at(0.0, 1.0, 1))
        elif kind == 1:
            p, q = self._int(0, K - 1), self._int(0, K - 1)
            order = [i for i in range(K) if i != p]
            order.insert(q, p)
            h, T = h[order], T[order]
        elif kind == 2:
            p = self._int(0, K - 2)
            h[[p, p + 1]], T[[p, p + 1]] = h[[p + 1, p]], T[[p + 1, p]]
        else:
            scale = float(self._u(0.0005, 0.01)) * self.span
            h = h + scale * torch.randn(K, generator=self.g, dtype=torch.float64)
            T = T + scale * torch.randn(K, generator=self.g, dtype=torch.float64)
        return h, T


def _merge(a: Candidates, b: Candidates) -> Candidates:
    return Candidates(*(torch.cat([getattr(a, f.name), getattr(b, f.name)]) for f in fields(a)))


def _batch(neurons: list[list[tuple[torch.Tensor, torch.Tensor]]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-group lists of (h, T) -> h, T (B, K) and group (B,)."""
    group = torch.tensor([g for g, rows in enumerate(neurons) for _ in rows], dtype=torch.long)
    h, T = (torch.stack(v) for v in zip(*(row for rows in neurons for row in rows)))
    return h, T, group


def search(
    dist: InputDistribution,
    target: Activation,
    K: int,
    config: OursConfig = OursConfig(),
    generator: Optional[torch.Generator] = None,
    start: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    on_round: Optional[Callable[[int, float], None]] = None,
) -> tuple[Candidates, list[float]]:
    """The ``ours`` search for one K on one distribution: :func:`search_many` with one."""
    elites, histories = search_many(
        [dist], target, K, config, [generator if generator is not None else torch.Generator().manual_seed(0)],
        [start], None if on_round is None else (lambda phase, best: on_round(phase, float(best[0]))),
    )
    return elites[0], histories[0]


def _starting_elite(start_rows: list, moments: CumulativeMoments, K: int,
                    objective: Optional[SpikeObjective]) -> Optional[Candidates]:
    """The candidates every search keeps from the start: each given start (with its best d)
    and, with an ``objective``, a silent neuron per distribution; None when neither."""
    elite = None
    given = [g for g, row in enumerate(start_rows) if row is not None]
    if given:  # each start itself (with its best d) stays a candidate throughout
        h0, T0 = (torch.stack([start_rows[g][i] for g in given]) for i in (0, 1))
        elite = Candidates.of(h0, T0, moments, torch.tensor(given, dtype=torch.long), objective)
    if objective is not None:  # silent neurons: thresholds above every input
        G = len(start_rows)
        silent = Candidates.of(torch.ones(G, K, dtype=torch.float64), (moments.hi + 1).unsqueeze(1).repeat(1, K),
                               moments, torch.arange(G), objective)
        elite = silent if elite is None else _merge(elite, silent)
    return elite


def _pool(samplers: list["_Sampler"], config: OursConfig, start_rows: list):
    """One restart's starting neurons per distribution (random and templates, then its start
    row if given), batched: (h, T, group)."""
    n_random = round(config.random_share * config.pool)
    pools = [[s.random() for _ in range(n_random)] + [s.template() for _ in range(config.pool - n_random)]
             for s in samplers]
    for rows, row in zip(pools, start_rows):
        if row is not None:
            rows.append(row)  # refined too
    return _batch(pools)


def _mutants(samplers: list["_Sampler"], elite: Candidates, count: int):
    """``count`` mutations of each distribution's elite (its parents in turn), batched: (h, T, group)."""
    kids = []
    for g, sampler in enumerate(samplers):
        parents = (elite.group == g).nonzero().squeeze(1)
        kids.append([sampler.mutate(elite.h[parents[i % parents.numel()]], elite.T[parents[i % parents.numel()]])
                     for i in range(count)])
    return _batch(kids)


def search_many(
    dists: Sequence[InputDistribution],
    target: Activation,
    K: int,
    config: OursConfig,
    generators: Sequence[torch.Generator],
    starts: Optional[Sequence[Optional[tuple[torch.Tensor, torch.Tensor]]]] = None,
    on_round: Optional[Callable[[int, torch.Tensor], None]] = None,
    objective: Optional[SpikeObjective] = None,
    on_step: Optional[Callable[[int, int], None]] = None,
) -> tuple[list[Candidates], list[list[float]]]:
    """The ``ours`` search for one K on G distributions at once, one neuron each, all
    candidates in one batch (the Python overhead of a step is paid once for all G).

    For each of ``restarts`` pools of starting neurons (structured templates and random
    ones, plus ``starts[g]`` = (h, T) if given): exact-gradient refinement with successive
    halving, then a longer refinement of its elite. Then rounds of mutations of the merged
    elite, then a polish of the best. Distribution g draws its starts and mutations from
    ``generators[g]``. Every phase runs to its count (no clock is read), so the result
    depends only on the inputs and the generators.
    Returns each distribution's elite (best first) and its best error after each phase;
    ``on_round(phase, best)`` gets the G best errors (G,) after each phase, ``on_step(done,
    total)`` the exact-gradient steps taken and :attr:`OursConfig.iterations` after each.

    With an ``objective`` candidates are refined and ranked by its score (error plus spike
    cost, within each distribution's spike budget), and "best" means lowest score; a
    neuron that never spikes is a candidate from the start, so every budget >= 0 is met.
    """
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    G = len(dists)
    starts = list(starts) if starts is not None else [None] * G
    if len(generators) != G or len(starts) != G:
        raise ValueError(f"need one generator and one start per distribution ({G}), got {len(generators)} and {len(starts)}")
    moments = CumulativeMoments.of(list(dists), target)
    samplers = [_Sampler(dist, target, K, g) for dist, g in zip(dists, generators)]
    start_rows = [None if st is None else tuple(torch.as_tensor(v, dtype=torch.float64).reshape(K) for v in st)
                  for st in starts]
    elite, history = _starting_elite(start_rows, moments, K, objective), []
    taken = [0]

    def stepped(_i: int, _score: torch.Tensor) -> None:
        taken[0] += 1
        on_step(taken[0], config.iterations)

    step = None if on_step is None else stepped

    def phase_done(found: Candidates) -> Candidates:
        merged = found if elite is None else _merge(elite, found)
        best = merged.best(config.elite)
        history.append(best.mse[best_per_group(best.score, best.group, 1)])
        if on_round is not None:
            on_round(len(history), history[-1])
        return best

    for restart in range(config.restarts):
        h, T, group = _pool(samplers, config, start_rows if restart == 0 else [None] * G)
        found = refine(h, T, moments, config.iters, config.lr, config.cull_at, config.keep, step, group=group,
                       objective=objective).best(config.elite)
        if config.elite_iters > 0:
            more = refine(found.h, found.T, moments, config.elite_iters, config.elite_lr, on_step=step,
                          group=found.group, objective=objective)
            found = _merge(found, more).best(config.elite)
        elite = phase_done(found)
    for _ in range(config.rounds):
        kh, kT, kg = _mutants(samplers, elite, config.mutants)
        elite = phase_done(refine(kh, kT, moments, config.round_iters, config.round_lr, config.cull_at, config.keep,
                                  step, group=kg, objective=objective))
    if config.polish_iters > 0:
        top = elite.best(1)
        elite = phase_done(refine(top.h, top.T, moments, config.polish_iters, config.polish_lr, on_step=step,
                                  group=top.group, objective=objective))
    elites = [elite.take((elite.group == g).nonzero().squeeze(1)) for g in range(G)]
    return elites, [[float(row[g]) for row in history] for g in range(G)]
