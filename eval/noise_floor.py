#!/usr/bin/env python
"""The noise floor of the main job's figures: how much they move when nothing but the
arithmetic changes.

FS neurons are discontinuous: a float difference of one ulp before a threshold flips a
spike, and the flip propagates through the sampling run. A different batch size (other
convolution kernels), thread count (other reduction order), process count (other batches
per process) or CPU (other vector instructions in oneDNN's convolutions, MKL's matrix
products and ATen's element-wise kernels) therefore changes FS images slightly, and the
same job on two machines prints different figures. This script runs ``spiking-ddim
sample`` (the main job: embedded digits DDIM, default conversion, --num-images images,
--steps DDIM steps) once per variant and K, in two groups:

* arithmetic order on this CPU: ``batch 100, 2 threads`` (the default), ``batch 50, 2
  threads``, ``batch 100, 1 thread``, ``2 processes x 1 thread`` (torchrun, batch 100);
* another CPU, played on this one: each instruction set PyTorch can use here, set for
  ATen alone (``ATEN_CPU_CAPABILITY``) and for ATen, oneDNN and MKL together
  (``ONEDNN_MAX_CPU_ISA``, ``MKL_ENABLE_INSTRUCTIONS``): the code paths an AVX2-only or an
  SSE4.1-only machine runs. Only the instruction sets this CPU has are run (the JSON
  records which exist).

and reports, per K and figure (PSNR of the mean MSE, median and 5th-percentile per-image
PSNR, the share of images below 30 dB, MSE, FID, KID of the FS images, the SNN/ANN energy
ratio, spikes per neuron), the values and their spread (max - min) within each group. Two
rows of a ranked table that differ by less than the spread are not ordered by that figure.

The variants, groups and figures are :mod:`spiking_ddim.benchmarks.noise`'s. Writes
eval/results/noise_floor.{json,md}; ``--replot`` rewrites the .md from the .json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from spiking_ddim.benchmarks.noise import GROUPS, VARIANTS, cpu_flags, figures_of, markdown, spreads

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--K", type=int, nargs="+", default=[8, 16], help="time steps (default: %(default)s)")
    p.add_argument("--num-images", type=int, default=1000, help="images per run (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps (default: %(default)s)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="NAME",
                   help=f"variants to run (default: all of {', '.join(VARIANTS)})")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory (default: eval/results)")
    p.add_argument("--replot", action="store_true", help="rewrite noise_floor.md from the existing noise_floor.json")
    return p.parse_args(argv)


def run_variant(K: int, name: str, args, out: Path) -> dict:
    """One ``sample`` run of variant ``name``; the figures of its metrics.json."""
    batch, threads, processes, extra, _ = VARIANTS[name]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads), **extra}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
                if processes > 1 else [sys.executable])
    cmd = [*launcher, str(ROOT / "sample.py"), "--K", str(K), "--num-images", str(args.num_images), "--steps",
           str(args.steps), "--batch-size", str(batch), "--out", str(out)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    m = json.loads((out / "metrics.json").read_text())
    return {**figures_of(m), "threads_per_process": m["threads_per_process"], "processes": m["processes"],
            "environment": extra, "seconds": round(time.perf_counter() - t0, 1)}


def main(argv=None) -> int:
    args = parse_args(argv)
    import platform

    import torch

    from fs_neurons.utils.files import atomic_write_text

    if args.replot:
        md = markdown(json.loads((args.out / "noise_floor.json").read_text()))
        atomic_write_text(args.out / "noise_floor.md", md)
        print(md)
        return 0
    flags = cpu_flags()
    names = [n for n in args.variants if VARIANTS[n][4] is None or VARIANTS[n][4] in flags]
    skipped = sorted(set(args.variants) - set(names))
    if skipped:
        print(f"note: this CPU lacks the instruction set of {', '.join(skipped)}; not run", file=sys.stderr)
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for K in args.K:
            runs[str(K)] = {}
            for i, name in enumerate(names):
                print(f"K={K}, {name} ...", file=sys.stderr, flush=True)
                runs[str(K)][name] = run_variant(K, name, args, Path(tmp) / f"K{K}-{i}")
    capabilities = [isa for isa, flag in (("avx512", "avx512f"), ("avx2", "avx2"), ("sse4.1", "sse4_1"))
                    if flag in flags]
    data = {"num_images": args.num_images, "steps": args.steps, "cpu": platform.processor() or platform.machine(),
            "torch_capability": torch.backends.cpu.get_cpu_capability(), "cpu_capabilities": capabilities,
            "variants": {n: VARIANTS[n][:4] for n in names}, "groups": GROUPS, "runs": runs,
            "spread": {K: spreads(rows) for K, rows in runs.items()}}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "noise_floor.json", json.dumps(data, indent=1) + "\n")
    md = markdown(data)
    atomic_write_text(args.out / "noise_floor.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
