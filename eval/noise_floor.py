#!/usr/bin/env python
"""The noise floor of the main job's figures: how much they move when nothing but the
arithmetic's order changes.

FS neurons are discontinuous: a float difference of one ulp before a threshold flips a
spike, and the flip propagates through the sampling run. A different batch size (other
convolution kernels), thread count (other reduction order) or process count (other
batches per process) therefore changes FS images slightly, and the same job on two
machines prints different figures. This script runs ``spiking-ddim sample`` (the main
job: embedded digits DDIM, default conversion, --num-images images, --steps DDIM steps)
once per variant and K:

* ``batch 100, 2 threads`` (the default), ``batch 50, 2 threads``, ``batch 100, 1 thread``,
  and ``2 processes x 1 thread`` (torchrun, batch 100);

and reports, per K and figure (PSNR, MSE, FID, KID of the FS images, the SNN/ANN energy
ratio, spikes per neuron), the values and their spread (max - min). Two rows of a ranked
table that differ by less than this spread are not ordered by it.

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
VARIANTS = {  # name: (batch size, threads per process, processes)
    "batch 100, 2 threads": (100, 2, 1),
    "batch 50, 2 threads": (50, 2, 1),
    "batch 100, 1 thread": (100, 1, 1),
    "2 processes x 1 thread": (100, 1, 2),
}
FIGURES = {"psnr": "PSNR (dB)", "mse": "MSE", "fid": "FID (fs)", "kid": "KID (fs)", "energy_ratio": "energy SNN/ANN",
           "spikes": "spikes/neuron"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--K", type=int, nargs="+", default=[8, 16], help="time steps (default: %(default)s)")
    p.add_argument("--num-images", type=int, default=1000, help="images per run (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps (default: %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory (default: eval/results)")
    return p.parse_args(argv)


def run_variant(K: int, batch: int, threads: int, processes: int, args, out: Path) -> dict:
    """One ``sample`` run; the figures of its metrics.json."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
                if processes > 1 else [sys.executable])
    cmd = [*launcher, str(ROOT / "sample.py"), "--K", str(K), "--num-images", str(args.num_images), "--steps",
           str(args.steps), "--batch-size", str(batch), "--out", str(out)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    m = json.loads((out / "metrics.json").read_text())
    return {"psnr": m["psnr"], "mse": m["mse"], "fid": m["fid"]["fs"]["value"], "kid": m["kid"]["fs"]["mean"],
            "energy_ratio": m["energy"]["ratio"], "spikes": m["spikes_per_neuron_per_call"],
            "threads_per_process": m["threads_per_process"], "processes": m["processes"],
            "seconds": round(time.perf_counter() - t0, 1)}


def load_floor(folder: Path = RESULTS) -> dict | None:
    """The last measurement (noise_floor.json), or None."""
    path = folder / "noise_floor.json"
    return json.loads(path.read_text()) if path.is_file() else None


def floor_line(data: dict | None) -> str:
    """One sentence for a ranked table: how far its figures move with the arithmetic's order."""
    if not data:
        return "Noise floor: not measured yet (`python eval/noise_floor.py`); rows that differ little are not ranked."
    per_k = sorted(data["spread"].items(), key=lambda kv: int(kv[0]))
    psnr = " / ".join(f"{s['psnr']:.2g} dB (K={K})" for K, s in per_k)
    kid = " / ".join(f"{s['kid']:.2g}" for _, s in per_k)
    return (f"Noise floor (`eval/noise_floor.py`, {data['num_images']} images, {data['steps']} steps, one machine): "
            f"the same job with another batch size, thread count or process count moves PSNR by up to {psnr} and "
            f"KID by up to {kid}; another machine can move them further (docs/trust.md). Rows closer than that are "
            "not ordered by these figures.")


def markdown(data: dict) -> str:
    lines = ["# Noise floor of the main job", "",
             f"`spiking-ddim sample` on the embedded digits DDIM, {data['num_images']} images, {data['steps']} DDIM "
             "steps, default conversion (ours-unet), run once per variant: only the batch size, the threads per "
             "process or the number of processes change, so every difference below is arithmetic order through "
             "discontinuous neurons. Written by `python eval/noise_floor.py`.", ""]
    for K, rows in data["runs"].items():
        lines += [f"## K={K}", "", "| variant | " + " | ".join(FIGURES.values()) + " | seconds |",
                  "|---" * (len(FIGURES) + 2) + "|"]
        for name, r in rows.items():
            lines.append(f"| {name} | " + " | ".join(f"{r[k]:.5g}" for k in FIGURES) + f" | {r['seconds']} |")
        spread = data["spread"][K]
        lines.append("| **spread (max - min)** | " + " | ".join(f"**{spread[k]:.3g}**" for k in FIGURES) + " | |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    from fs_neurons.files import atomic_write_text

    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for K in args.K:
            runs[str(K)] = {}
            for name, (batch, threads, processes) in VARIANTS.items():
                print(f"K={K}, {name} ...", file=sys.stderr, flush=True)
                runs[str(K)][name] = run_variant(K, batch, threads, processes, args,
                                                 Path(tmp) / f"K{K}-{batch}-{threads}-{processes}")
    spread = {K: {k: max(r[k] for r in rows.values()) - min(r[k] for r in rows.values()) for k in FIGURES}
              for K, rows in runs.items()}
    data = {"num_images": args.num_images, "steps": args.steps, "variants": VARIANTS, "runs": runs, "spread": spread}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "noise_floor.json", json.dumps(data, indent=1) + "\n")
    md = markdown(data)
    atomic_write_text(args.out / "noise_floor.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
