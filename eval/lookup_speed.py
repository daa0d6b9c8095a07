#!/usr/bin/env python
"""The FS lookup on the CPU: the fused numba kernel (fs_neurons.kernels) against the pure
torch path (``torch.searchsorted`` + gather), which the GPU always uses.

For K in --K and N inputs in --sizes (float32, N(0, 2^2), one neuron, outputs and spike
counts), the median of --repeats calls of ``PiecewiseFS.evaluate`` each way, after two
warm-up calls, on the threads torch has; the two must agree exactly. The kernel stays
where it is clearly faster (a ratio well above 1). Writes eval/results/lookup_speed.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import torch

from fs_neurons import FSNeuron, kernels
from fs_neurons.utils.files import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


def seconds(fn, repeats: int) -> float:
    times = []
    for n in range(repeats + 2):
        t0 = time.perf_counter()
        fn()
        if n >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--K", type=int, nargs="+", default=[8, 16], help="time steps (default: %(default)s)")
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                   help="inputs per call (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per case (default: %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory (default: eval/results)")
    args = p.parse_args(argv)
    if not kernels.available():
        print("error: numba is not installed, so there is no kernel to measure", file=sys.stderr)
        return 2
    rows = []
    g = torch.Generator().manual_seed(0)
    for K in args.K:
        table = FSNeuron.from_bank("swish", K, "ours-unet").table()
        for n in args.sizes:
            x = torch.randn(n, generator=g) * 2
            fused = table.evaluate(x, want_count=True)
            with mock.patch.object(kernels, "available", lambda: False):
                plain = table.evaluate(x, want_count=True)
                torch_s = seconds(lambda table=table, x=x: table.evaluate(x, want_count=True), args.repeats)
            numba_s = seconds(lambda table=table, x=x: table.evaluate(x, want_count=True), args.repeats)
            rows.append({"K": K, "inputs": n, "numba_seconds": numba_s, "torch_seconds": torch_s,
                         "torch_over_numba": torch_s / numba_s,
                         "identical": bool(torch.equal(fused[0], plain[0]) and torch.equal(fused[1], plain[1]))})
            r = rows[-1]
            print(f"K={K:<3} {n:>9} inputs  numba {numba_s * 1e3:8.3f} ms  torch {torch_s * 1e3:8.3f} ms  "
                  f"torch / numba {r['torch_over_numba']:5.2f}  identical {r['identical']}")
    data = {"threads": torch.get_num_threads(), "repeats": args.repeats, "rows": rows}
    atomic_write_text(args.out / "lookup_speed.json", json.dumps(data, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
