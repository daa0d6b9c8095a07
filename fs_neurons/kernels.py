"""A fused CPU kernel for the exact FS lookup (numba), one pass over the input.

For each element: its grid cell, the count of breakpoints below the cell, at most ``m``
comparisons, then the level (and spike count) of its piece. Same result as the torch
path of :class:`fs_neurons.piecewise.PiecewiseFS`, at the cost of a few nanoseconds per
element instead of a chain of gathers. Used for contiguous CPU inputs when numba is
installed; everything else takes the torch path.

:func:`grid_delta` is the sigma-delta step of :class:`fs_neurons.delta.DeltaFSNeuron` in the
same pass: the change ``v - sent``, the lookup of its magnitude, ``sent`` moved by the signed
level in place and a copy of it written out (one read of each input, instead of seven
elementwise torch operations).
"""

from __future__ import annotations

import numpy as np
import torch

try:
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - numba is a dependency, but stay usable without it
    numba = None


if numba is not None:

    @njit(inline="always", cache=True)
    def _piece(v, lo, inv_width, cells, first, padded, m):
        """The index of v's piece, #{breakpoints < v}: its grid cell's count, then m comparisons."""
        p = (v - lo) * inv_width
        c = 0
        if p >= cells - 1:
            c = cells - 1
        elif p > 0:
            c = int(p)
        base = first[c]
        idx = base
        for j in range(m):
            if v > padded[base + j]:
                idx += 1
        return idx

    @njit(parallel=True, cache=True)
    def _grid_lookup(x, lo, inv_width, cells, first, padded, m, levels, spikes, out, count, want_count):
        for i in prange(x.shape[0]):
            v = x[i]
            if v != v:  # NaN propagates, as through any activation
                out[i] = v
                if want_count:
                    count[i] = 0.0
                continue
            idx = _piece(v, lo, inv_width, cells, first, padded, m)
            out[i] = levels[idx]
            if want_count:
                count[i] = spikes[idx]


    @njit(parallel=True, cache=True)
    def _grid_delta(v, sent, lo, inv_width, cells, first, padded, m, levels, spikes, out, count, want_count):
        for i in prange(v.shape[0]):
            d = v[i] - sent[i]
            if d != d:  # NaN propagates into the state, as sign(NaN) * level does
                sent[i] = d
                out[i] = d
                if want_count:
                    count[i] = 0.0
                continue
            idx = _piece(abs(d), lo, inv_width, cells, first, padded, m)
            if d > 0:
                sent[i] = sent[i] + levels[idx]
            elif d < 0:
                sent[i] = sent[i] - levels[idx]
            out[i] = sent[i]
            if want_count:
                count[i] = spikes[idx]


    # The same kernels compiled without threads, for single-thread processes: a parallel kernel
    # starts OpenMP workers that spin between calls, taking half a core from a neighbouring
    # process (two torchrun workers on two cores). Not cached: a second dispatcher of one
    # function would share the parallel kernel's cache entry.
    _grid_lookup_serial = njit(cache=False)(_grid_lookup.py_func)
    _grid_delta_serial = njit(cache=False)(_grid_delta.py_func)


def available() -> bool:
    return numba is not None


def _run(parallel, serial, *args) -> None:
    """Run a kernel on as many threads as torch uses (the serial build for one), leaving
    torch's thread count as it was."""
    torch_threads = torch.get_num_threads()
    threads = max(1, min(torch_threads, numba.config.NUMBA_NUM_THREADS))
    if threads > 1:
        numba.set_num_threads(threads)
    (parallel if threads > 1 else serial)(*args)
    if torch.get_num_threads() != torch_threads:  # numba's OpenMP layer shares (and sets) torch's thread count
        torch.set_num_threads(torch_threads)


def _grid_args(grid) -> tuple:
    return grid.lo, grid.inv_width, grid.cells, grid.first.numpy(), grid.padded.numpy(), grid.m


def grid_lookup(x: torch.Tensor, grid, levels: torch.Tensor, spikes: torch.Tensor, want_count: bool):
    """Output and spike count of a 1-D contiguous CPU float tensor through one neuron's grid
    (``levels``/``spikes``/``grid.padded`` in ``x``'s dtype)."""
    xn = x.detach().numpy()
    out = np.empty_like(xn)
    count = np.empty_like(xn) if want_count else np.empty(0, dtype=xn.dtype)
    _run(_grid_lookup, _grid_lookup_serial, xn, *_grid_args(grid), levels.numpy(), spikes.numpy(), out, count,
         want_count)
    return torch.from_numpy(out), (torch.from_numpy(count) if want_count else None)


def grid_delta(v: torch.Tensor, sent: torch.Tensor, grid, levels: torch.Tensor, spikes: torch.Tensor,
               want_count: bool):
    """One sigma-delta step through one neuron's grid: ``sent += sign(v - sent) * level(|v - sent|)``
    in place (``v``, ``sent``: 1-D contiguous CPU float32, the same length; ``levels``/``spikes``/
    ``grid.padded`` float32); returns a copy of the new ``sent`` and (with ``want_count``) the
    spike count of each change."""
    vn, sn = v.detach().numpy(), sent.detach().numpy()
    out = np.empty_like(sn)
    count = np.empty_like(sn) if want_count else np.empty(0, dtype=sn.dtype)
    _run(_grid_delta, _grid_delta_serial, vn, sn, *_grid_args(grid), levels.numpy(), spikes.numpy(), out, count,
         want_count)
    return torch.from_numpy(out), (torch.from_numpy(count) if want_count else None)
