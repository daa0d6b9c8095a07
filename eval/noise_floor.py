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

Writes eval/results/noise_floor.{json,md}.
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

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
ORDER, CPU = "arithmetic order", "another CPU"
DEFAULT = "batch 100, 2 threads"
ISA_ENV = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
           "sse4.1": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                      "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}}
# name: (batch size, threads per process, processes, environment, the CPU flag it needs or None)
VARIANTS = {
    DEFAULT: (100, 2, 1, {}, None),
    "batch 50, 2 threads": (50, 2, 1, {}, None),
    "batch 100, 1 thread": (100, 1, 1, {}, None),
    "2 processes x 1 thread": (100, 1, 2, {}, None),
    "ATen avx2": (100, 2, 1, {"ATEN_CPU_CAPABILITY": "avx2"}, "avx2"),
    "ATen default": (100, 2, 1, {"ATEN_CPU_CAPABILITY": "default"}, None),
    "AVX2 machine (ATen, oneDNN, MKL)": (100, 2, 1, ISA_ENV["avx2"], "avx2"),
    "SSE4.1 machine (ATen, oneDNN, MKL)": (100, 2, 1, ISA_ENV["sse4.1"], "sse4_1"),
}
# The spread of each group is over its variants; both hold the default run.
GROUPS = {ORDER: [DEFAULT, "batch 50, 2 threads", "batch 100, 1 thread", "2 processes x 1 thread"],
          CPU: [DEFAULT, "ATen avx2", "ATen default", "AVX2 machine (ATen, oneDNN, MKL)",
                "SSE4.1 machine (ATen, oneDNN, MKL)"]}
FIGURES = {"psnr": "PSNR (dB, mean MSE)", "psnr_median": "median PSNR", "psnr_p5": "5th pct PSNR",
           "share_below_30db": "< 30 dB", "mse": "MSE", "fid": "FID (fs)", "kid": "KID (fs)",
           "energy_ratio": "energy SNN/ANN", "spikes": "spikes/neuron"}


def cpu_flags() -> set[str]:
    """The instruction-set flags of this CPU (``/proc/cpuinfo``; empty where it is not there)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--K", type=int, nargs="+", default=[8, 16], help="time steps (default: %(default)s)")
    p.add_argument("--num-images", type=int, default=1000, help="images per run (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps (default: %(default)s)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), metavar="NAME",
                   help=f"variants to run (default: all of {', '.join(VARIANTS)})")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory (default: eval/results)")
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
    return {"psnr": m["psnr"], "psnr_median": m["psnr_median"], "psnr_p5": m["psnr_p5"],
            "share_below_30db": m["share_below_30db"], "mse": m["mse"], "fid": m["fid"]["fs"]["value"],
            "kid": m["kid"]["fs"]["mean"], "energy_ratio": m["energy"]["ratio"],
            "spikes": m["spikes_per_neuron_per_call"], "threads_per_process": m["threads_per_process"],
            "processes": m["processes"], "environment": extra, "seconds": round(time.perf_counter() - t0, 1)}


def spreads(rows: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Per group, per figure: max - min over the group's variants that ran."""
    out = {}
    for group, names in GROUPS.items():
        ran = [rows[n] for n in names if n in rows]
        if len(ran) > 1:
            out[group] = {k: max(r[k] for r in ran) - min(r[k] for r in ran) for k in FIGURES}
    return out


def load_floor(folder: Path = RESULTS) -> dict | None:
    """The last measurement (noise_floor.json), or None."""
    path = folder / "noise_floor.json"
    return json.loads(path.read_text()) if path.is_file() else None


def floor_line(data: dict | None) -> str:
    """One sentence for a ranked table: how far its figures move with the arithmetic's order
    and with the CPU, for the PSNR of the mean MSE, the median per-image PSNR and KID."""
    if not data:
        return "Noise floor: not measured yet (`python eval/noise_floor.py`); rows that differ little are not ranked."
    per_k = sorted(data["spread"].items(), key=lambda kv: int(kv[0]))

    def moves(group: str) -> str:
        have = [(K, s[group]) for K, s in per_k if group in s]
        if not have:
            return "not measured"
        fig = lambda key, unit="": " / ".join(f"{s[key]:.2g}" for _, s in have) + unit  # noqa: E731
        return (f"PSNR by up to {fig('psnr', ' dB')} (K={' / '.join(K for K, _ in have)}), the median per-image "
                f"PSNR by {fig('psnr_median', ' dB')}, KID by {fig('kid')}")

    return (f"Noise floor (`eval/noise_floor.py`, {data['num_images']} images, {data['steps']} steps): another "
            f"batch size, thread count or process count moves {moves(ORDER)}; another CPU (the instruction sets "
            f"{', '.join(data.get('cpu_capabilities', [])) or 'of this machine'} played on one machine) moves "
            f"{moves(CPU)}. Rows closer than that are not ordered by these figures (docs/trust.md).")


def markdown(data: dict) -> str:
    lines = ["# Noise floor of the main job", "",
             f"`spiking-ddim sample` on the embedded digits DDIM, {data['num_images']} images, {data['steps']} DDIM "
             "steps, default conversion (ours-unet), run once per variant. Arithmetic order: only the batch size, the "
             "threads per process or the number of processes change. Another CPU: the instruction sets ATen, oneDNN "
             "and MKL may use are capped by environment variables (the `environment` of each run in the JSON), "
             f"so this machine ({data.get('cpu', 'unknown')}; PyTorch's own capability "
             f"{data.get('torch_capability', '?')}; instruction sets run: "
             f"{', '.join(data.get('cpu_capabilities', [])) or '?'}) computes as an older CPU would. Every difference "
             "below is arithmetic through discontinuous neurons. Written by `python eval/noise_floor.py`.", ""]
    for K, rows in data["runs"].items():
        lines += [f"## K={K}", "", "| variant | " + " | ".join(FIGURES.values()) + " | seconds |",
                  "|---" * (len(FIGURES) + 2) + "|"]
        for name, r in rows.items():
            lines.append(f"| {name} | " + " | ".join(f"{r[k]:.5g}" for k in FIGURES) + f" | {r['seconds']} |")
        for group, spread in data["spread"][K].items():
            lines.append(f"| **spread, {group}** | " + " | ".join(f"**{spread[k]:.3g}**" for k in FIGURES) + " | |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    import platform

    import torch

    from fs_neurons.utils.files import atomic_write_text

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
