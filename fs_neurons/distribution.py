"""Input distributions an FS neuron is fitted on.

An :class:`InputDistribution` is a sorted set of points ``x`` with non-negative weights
``w``. The fitting error of a neuron F against a target f is the weighted mean squared
error ``sum(w * (F(x) - f(x))**2) / sum(w)``. The paper's protocol (100,000 evenly spaced
points on [-8, 12]) is :meth:`InputDistribution.uniform`; a layer's recorded inputs are
:meth:`InputDistribution.from_samples`; a normal approximation is
:meth:`InputDistribution.gaussian`.

For the exact optimiser each point owns a cell between the midpoints to its neighbours;
:class:`CumulativeMoments` holds the running sums of w, w*f and w*f**2 over the cells, so
the error of any piecewise-constant function is a sum over its pieces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .names import PAPER_POINTS, PAPER_RANGE
from .targets import Activation


def _check_finite(name: str, t: torch.Tensor) -> None:
    if t.numel() == 0:
        raise ValueError(f"{name} is empty")
    bad = ~torch.isfinite(t)
    if bad.any():
        raise ValueError(f"{name} contains {int(bad.sum())} NaN or infinite value(s)")


@dataclass(frozen=True)
class InputDistribution:
    """Weighted points: ``x`` sorted ascending, shape (M,), float64; ``w`` shape (M,), >= 0."""

    x: torch.Tensor
    w: torch.Tensor
    description: str = ""

    def __post_init__(self) -> None:
        if self.x.ndim != 1 or self.x.shape != self.w.shape:
            raise ValueError("x and w must be 1-D tensors of the same length")
        if self.x.numel() < 2:
            raise ValueError("an input distribution needs at least 2 points")
        _check_finite("input points", self.x)
        _check_finite("input weights", self.w)
        if (self.w < 0).any() or float(self.w.sum()) <= 0:
            raise ValueError("input weights must be non-negative with a positive sum")
        if (self.x[1:] < self.x[:-1]).any():
            raise ValueError("input points must be sorted ascending")

    @classmethod
    def uniform(cls, lo: float = PAPER_RANGE[0], hi: float = PAPER_RANGE[1], n: int = PAPER_POINTS) -> "InputDistribution":
        """``n`` evenly spaced, equally weighted points on [lo, hi] (the paper's protocol)."""
        if not (lo < hi) or not all(map(_is_finite, (lo, hi))):
            raise ValueError(f"range must satisfy lo < hi with finite ends, got [{lo}, {hi}]")
        if n < 2:
            raise ValueError(f"need at least 2 points, got {n}")
        x = torch.linspace(lo, hi, n, dtype=torch.float64)
        return cls(x, torch.ones_like(x), f"uniform[{lo:g}, {hi:g}] x{n}")

    @classmethod
    def gaussian(cls, mean: float, std: float, n: int = PAPER_POINTS, width: float = 6.0) -> "InputDistribution":
        """N(mean, std^2) on a grid of ``n`` points over mean +- ``width`` std, density weights."""
        if not (std > 0) or not all(map(_is_finite, (mean, std))):
            raise ValueError(f"gaussian needs a finite mean and std > 0, got mean={mean}, std={std}")
        x = torch.linspace(mean - width * std, mean + width * std, n, dtype=torch.float64)
        w = torch.exp(-0.5 * ((x - mean) / std) ** 2)
        return cls(x, w, f"gaussian(mean={mean:.4g}, std={std:.4g})")

    @classmethod
    def from_samples(cls, samples: torch.Tensor, max_points: int = 200_000) -> "InputDistribution":
        """Empirical distribution of ``samples`` (any shape), reduced to at most ``max_points``
        equally weighted order statistics (evenly spaced quantiles)."""
        s = torch.as_tensor(samples).detach().reshape(-1).to("cpu", torch.float64)
        _check_finite("input samples", s)
        if s.numel() < 2:
            raise ValueError(f"need at least 2 input samples, got {s.numel()}")
        s = torch.sort(s).values
        if s.numel() > max_points:
            idx = torch.linspace(0, s.numel() - 1, max_points, dtype=torch.float64).round().long()
            s = s[idx]
        if float(s[-1] - s[0]) <= 0:
            raise ValueError("input samples are all equal; cannot fit a distribution of width 0")
        return cls(s, torch.ones_like(s), f"samples(n={s.numel()}, mean={float(s.mean()):.4g}, std={float(s.std()):.4g})")

    @property
    def lo(self) -> float:
        return float(self.x[0])

    @property
    def hi(self) -> float:
        return float(self.x[-1])

    def mse(self, prediction: torch.Tensor, target: Activation) -> float:
        """Weighted MSE of ``prediction`` (values at ``x``) against ``target``."""
        err = prediction.to(torch.float64) - target(self.x)
        return float((self.w * err * err).sum() / self.w.sum())

    def moments(self, target: Activation) -> "CumulativeMoments":
        """Cumulative sums of w, w*f, w*f^2 over the points' cells, for the exact loss."""
        return CumulativeMoments.of([self], target)


def _is_finite(v: float) -> bool:
    return v == v and abs(v) != float("inf")


@dataclass(frozen=True)
class CumulativeMoments:
    """Running sums of (w, w*f, w*f^2) over the cells of G distributions laid side by side.

    Distribution g's M_g + 1 cell edges ``edges`` (E,), with sums ``sums`` (E, 3) that start
    from 0 at its first edge, follow distribution g-1's; shifted by ``offset[g]`` they form
    one ascending array ``shifted`` (E,) to look positions up in. ``lo``, ``hi`` (G,) are
    each distribution's ends, ``total_weight`` (G,) its weight. :meth:`at` interpolates
    linearly inside a cell (unshifted, so a distribution's sums do not depend on the others
    beside it), so the sums are continuous, piecewise-linear functions of position and
    exact at cell edges.
    """

    edges: torch.Tensor
    shifted: torch.Tensor
    sums: torch.Tensor
    offset: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    total_weight: torch.Tensor

    @classmethod
    def of(cls, dists: "list[InputDistribution]", target: Activation) -> "CumulativeMoments":
        """The moments of ``dists`` under ``target``, distribution g at index g."""
        edges, shifted, sums, offsets, lo, hi, weight = [], [], [], [], [], [], []
        shift = 0.0
        for dist in dists:
            x, w = dist.x, dist.w
            mid = 0.5 * (x[1:] + x[:-1])
            e = torch.cat([(x[:1] - (mid[:1] - x[:1])), mid, x[-1:] + (x[-1:] - mid[-1:])])
            f = target(x)
            zero = torch.zeros(1, dtype=torch.float64)
            c = [torch.cat([zero, torch.cumsum(v, 0)]) for v in (w, w * f, w * f * f)]
            if edges:  # a gap as wide as the distribution keeps rounded positions in their own range
                shift = float(shifted[-1][-1]) + float(e[-1] - e[0]) - float(e[0])
            offsets.append(shift)
            edges.append(e)
            shifted.append(e + shift)
            sums.append(torch.stack(c, 1))
            lo.append(float(e[0]))
            hi.append(float(e[-1]))
            weight.append(float(w.sum()))
        per_dist = (torch.tensor(v, dtype=torch.float64) for v in (offsets, lo, hi, weight))
        return cls(torch.cat(edges), torch.cat(shifted), torch.cat(sums), *per_dist)

    @property
    def num_distributions(self) -> int:
        return self.offset.numel()

    def at(self, b: torch.Tensor, group: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Cumulative (w, w*f, w*f^2) up to positions ``b`` (N,) of distributions ``group``
        (N,) (default: distribution 0), shape (N, 3); differentiable in b."""
        at = b.detach() if group is None or self.num_distributions == 1 else b.detach() + self.offset[group]
        e = self.edges
        j = torch.searchsorted(self.shifted, at, right=True).clamp(1, e.numel() - 1) - 1
        width = (e[j + 1] - e[j]).clamp_min(1e-300)
        frac = ((b - e[j]) / width).clamp(0.0, 1.0)
        lower = self.sums[j]
        return lower + frac.unsqueeze(1) * (self.sums[j + 1] - lower)
