"""Exact fast inference for FS neurons: the output as a lookup table.

An FS neuron's output is piecewise constant in x. Following the spike loop over the
whole real line, a piece whose spikes so far subtracted c from the membrane splits at
x = T[t] + c; after K steps the pieces are the neuron's table. Evaluating a neuron is
then one ``searchsorted`` over its breakpoints instead of K simulated steps, and the
spike count of each piece comes for free.

Pieces are left-open, right-closed, (b[i-1], b[i]], matching "spike when v > T".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from . import kernels


@dataclass
class PiecewiseFS:
    """Tables of P neurons: ``breakpoints`` (P, M) ascending, padded with +inf; ``levels``
    and ``spikes`` (P, M+1): output and spike count on each piece. float64, CPU."""

    breakpoints: torch.Tensor
    levels: torch.Tensor
    spikes: torch.Tensor
    _copies: dict = field(default_factory=dict, repr=False)

    @property
    def num_pieces(self) -> torch.Tensor:
        """Pieces per neuron, shape (P,)."""
        return torch.isfinite(self.breakpoints).sum(1) + 1

    def _on(self, device: torch.device, dtype: torch.dtype):
        key = (device, dtype)
        if key not in self._copies:
            self._copies[key] = tuple(t.to(device, dtype) for t in (self.breakpoints, self.levels, self.spikes))
        return self._copies[key]

    def evaluate(self, x: torch.Tensor, neuron_dim: int | None = None, want_count: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Output and spike count (None unless ``want_count``) for ``x``, shaped like ``x``.

        With one neuron any shape works; with P neurons, ``x.shape[neuron_dim] == P``. A
        single neuron on CPU runs the fused kernel of :mod:`fs_neurons.kernels`.
        """
        work = torch.promote_types(x.dtype, torch.float32)
        bp, lv, sp = self._on(x.device, work)
        xw = x.to(work)
        P = bp.shape[0]
        if P == 1 and x.device.type == "cpu" and kernels.available():
            grid = self._grid()
            if grid is not None:
                out, count = kernels.grid_lookup(xw.reshape(-1).contiguous(), grid.cast(work), lv[0], sp[0], want_count)
                return out.reshape(x.shape).to(x.dtype), (count.reshape(x.shape).to(x.dtype) if want_count else None)
        if neuron_dim is None:
            if P != 1:
                raise ValueError(f"{P} neurons need a neuron_dim to say which input dim indexes them")
            flat = xw.reshape(1, -1)
        else:
            if xw.shape[neuron_dim] != P:
                raise ValueError(f"input has {xw.shape[neuron_dim]} entries along dim {neuron_dim}, neurons: {P}")
            flat = xw.movedim(neuron_dim, 0).reshape(P, -1)
        idx = torch.searchsorted(bp, flat.contiguous())
        out, count = lv.gather(1, idx), (sp.gather(1, idx) if want_count else None)
        shape = xw.shape if neuron_dim is None else xw.movedim(neuron_dim, 0).shape

        def back(t: torch.Tensor) -> torch.Tensor:
            t = t.reshape(shape)
            return (t if neuron_dim is None else t.movedim(0, neuron_dim)).to(x.dtype)

        out = torch.where(torch.isnan(xw), xw, back(out).to(work))
        return out.to(x.dtype), (back(count) if want_count else None)

    def send_change(self, sent: torch.Tensor, v: torch.Tensor, want_count: bool
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One sigma-delta step of a single neuron: ``sent += sign(v - sent) * out(|v - sent|)``
        in place (``sent``, ``v``: float32, one shape); a copy of the new ``sent`` and (with
        ``want_count``) the spike count of each change. Contiguous CPU inputs run the fused
        kernel of :mod:`fs_neurons.kernels` (the same values)."""
        grid = self._grid() if sent.device.type == "cpu" and kernels.available() else None
        if grid is not None and sent.is_contiguous():
            _, lv, sp = self._on(sent.device, torch.float32)
            out, count = kernels.grid_delta(v.contiguous().reshape(-1), sent.view(-1), grid.cast(torch.float32),
                                            lv[0], sp[0], want_count)
            return out.view(sent.shape), (count.view(sent.shape) if want_count else None)
        delta = v - sent
        magnitude, count = self.evaluate(delta.abs(), None, want_count=want_count)
        sent.add_(torch.sign(delta) * magnitude)
        return sent.clone(), count

    def _grid(self) -> "_Grid | None":
        if "grid" not in self._copies:
            self._copies["grid"] = _Grid.build(self.breakpoints[0]) if self.breakpoints.shape[0] == 1 else None
        return self._copies["grid"]


def fs_piecewise(h: torch.Tensor, d: torch.Tensor, T: torch.Tensor) -> PiecewiseFS:
    """Tables of the neurons with parameters of shape (K,) or (P, K)."""
    h, d, T = (torch.as_tensor(t).detach().to("cpu", torch.float64) for t in (h, d, T))
    if h.ndim == 1:
        h, d, T = h[None], d[None], T[None]
    P, K = h.shape
    neuron = torch.arange(P)
    lo = torch.full((P,), -torch.inf, dtype=torch.float64)
    hi = torch.full((P,), torch.inf, dtype=torch.float64)
    c = torch.zeros(P, dtype=torch.float64)
    level = torch.zeros(P, dtype=torch.float64)
    count = torch.zeros(P, dtype=torch.float64)
    for t in range(K):
        s = T[neuron, t] + c
        split = (s > lo) & (s < hi)
        n_children = 1 + split.long()
        parent = torch.repeat_interleave(torch.arange(neuron.numel()), n_children)
        first = torch.cumsum(n_children, 0) - n_children
        right = (torch.arange(parent.numel()) - first[parent]) == 1
        sp, lop, hip = s[parent], lo[parent], hi[parent]
        is_split = split[parent]
        z = torch.where(is_split, right, sp <= lop).to(torch.float64)
        lo = torch.where(is_split & right, sp, lop)
        hi = torch.where(is_split & ~right, sp, hip)
        neuron = neuron[parent]
        c = c[parent] + h[neuron, t] * z
        level = level[parent] + d[neuron, t] * z
        count = count[parent] + z
    # Merge neighbours of one neuron with equal output and spike count.
    same = (neuron[1:] == neuron[:-1]) & (level[1:] == level[:-1]) & (count[1:] == count[:-1])
    keep = torch.cat([~same, torch.ones(1, dtype=torch.bool)])  # keep a piece unless its right neighbour continues it
    neuron, hi, level, count = neuron[keep], hi[keep], level[keep], count[keep]
    sizes = torch.bincount(neuron, minlength=P)
    width = int(sizes.max())
    slot = torch.arange(neuron.numel()) - (torch.cumsum(sizes, 0) - sizes)[neuron]
    bp = torch.full((P, width), torch.inf, dtype=torch.float64)
    lv = torch.zeros(P, width, dtype=torch.float64)
    sc = torch.zeros(P, width, dtype=torch.float64)
    bp[neuron, slot], lv[neuron, slot], sc[neuron, slot] = hi, level, count
    # Pad levels with each neuron's last level so padded slots are never wrong.
    last = lv[torch.arange(P), sizes - 1]
    pad = torch.arange(width)[None] >= sizes[:, None]
    lv = torch.where(pad, last[:, None], lv)
    sc = torch.where(pad, sc[torch.arange(P), sizes - 1][:, None], sc)
    return PiecewiseFS(bp[:, :-1] if width > 1 else bp[:, :0], lv, sc)


@dataclass
class _Grid:
    """Uniform cells over one neuron's breakpoints b, for lookups without a binary search
    (used by the fused kernel).

    Cell c of width w starting at lo + c*w stores ``first[c]``, the number of breakpoints
    below its (slightly widened) start; at most ``m`` breakpoints fall in a widened cell.
    For x in cell c the piece index, #{b < x}, is ``first[c]`` plus m comparisons, which
    equals ``searchsorted(b, x)`` exactly: the widening absorbs rounding of the cell index.
    """

    lo: float
    inv_width: float
    cells: int
    m: int
    first: torch.Tensor  # (cells,) long
    padded: torch.Tensor  # breakpoints followed by m + 1 copies of +inf

    MAX_CELLS = 1 << 16  # keeps float32 cell-index rounding below 0.02 cells
    MAX_PER_CELL = 4

    @classmethod
    def build(cls, breakpoints: torch.Tensor) -> "_Grid | None":
        b = breakpoints[torch.isfinite(breakpoints)].to(torch.float64)
        if b.numel() == 0:
            return None
        lo, span = float(b[0]), float(b[-1] - b[0])
        cells = 1 << max(0, math.ceil(math.log2(4 * b.numel())))
        while cells <= cls.MAX_CELLS:
            width = span / cells if span > 0 else 1.0
            start = lo + torch.arange(cells, dtype=torch.float64) * width
            first = torch.searchsorted(b, start - 0.1 * width)
            last = torch.searchsorted(b, start + 1.1 * width, right=True)
            m = int((last - first).max())
            if m <= cls.MAX_PER_CELL:
                padded = torch.cat([b, torch.full((m + 1,), math.inf, dtype=torch.float64)])
                return cls(lo, 1.0 / width, cells, m, first, padded)
            cells *= 2
        return None  # breakpoints too clustered: fall back to searchsorted

    def cast(self, dtype: torch.dtype) -> "_Grid":
        """This grid with breakpoints in ``dtype`` (the input's working precision), cached."""
        if self.padded.dtype != dtype:
            key = f"_as_{dtype}"
            if key not in self.__dict__:
                self.__dict__[key] = _Grid(self.lo, self.inv_width, self.cells, self.m, self.first, self.padded.to(dtype))
            return self.__dict__[key]
        return self
