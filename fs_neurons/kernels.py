"""A fused CPU kernel for the exact FS lookup (numba), one pass over the input.

For each element: its grid cell, the count of breakpoints below the cell, at most ``m``
comparisons, then the level (and spike count) of its piece. Same result as the torch
path of :class:`fs_neurons.piecewise.PiecewiseFS`, at the cost of a few nanoseconds per
element instead of a chain of gathers. Used for contiguous CPU inputs when numba is
installed; everything else takes the torch path.
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

    @njit(parallel=True, cache=True)
    def _grid_lookup(x, lo, inv_width, cells, first, padded, m, levels, spikes, out, count, want_count):
        for i in prange(x.shape[0]):
            v = x[i]
            if v != v:  # NaN propagates, as through any activation
                out[i] = v
                if want_count:
                    count[i] = 0.0
                continue
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
            out[i] = levels[idx]
            if want_count:
                count[i] = spikes[idx]


    # The same kernel compiled without threads, for single-thread processes: a parallel kernel
    # starts OpenMP workers that spin between calls, taking half a core from a neighbouring
    # process (two torchrun workers on two cores). Not cached: a second dispatcher of one
    # function would share the parallel kernel's cache entry.
    _grid_lookup_serial = njit(cache=False)(_grid_lookup.py_func)


def available() -> bool:
    return numba is not None


def grid_lookup(x: torch.Tensor, grid, levels: torch.Tensor, spikes: torch.Tensor, want_count: bool):
    """Output and spike count of a 1-D contiguous CPU float tensor through one neuron's grid
    (``levels``/``spikes``/``grid.padded`` in ``x``'s dtype)."""
    torch_threads = torch.get_num_threads()
    threads = max(1, min(torch_threads, numba.config.NUMBA_NUM_THREADS))
    if threads > 1:
        numba.set_num_threads(threads)
    xn = x.detach().numpy()
    out = np.empty_like(xn)
    count = np.empty_like(xn) if want_count else np.empty(0, dtype=xn.dtype)
    kernel = _grid_lookup if threads > 1 else _grid_lookup_serial
    kernel(xn, grid.lo, grid.inv_width, grid.cells, grid.first.numpy(), grid.padded.numpy(), grid.m,
           levels.numpy(), spikes.numpy(), out, count, want_count)
    if torch.get_num_threads() != torch_threads:  # numba's OpenMP layer shares (and sets) torch's thread count
        torch.set_num_threads(torch_threads)
    return torch.from_numpy(out), (torch.from_numpy(count) if want_count else None)
