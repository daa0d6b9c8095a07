#!/usr/bin/env python
"""Sampling speed and memory at the field's size: the ANN, its FS conversion (step coding,
the exact lookup on whole feature maps) and its delta-coded conversion (calibrated, encoders
fitted), sampling the same batch in turn on this machine's cores, for the embedded photos
DDIM and for google/ddpm-cifar10-32's architecture with random weights (its images mean
nothing; its times do).

Per model: the seconds of one sampling run of --batch images at --steps DDIM steps (median
of --repeats rounds, the three networks taken in turn), FS / ANN and delta / ANN; the
seconds of each conversion (convert, calibrate, fit the encoders; a stage's share is
approximate, the total exact); and the bytes of delta state per image (the values each
site sent so far, float32). Writes eval/results/sampling_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from fs_neurons.utils.files import atomic_write_text
from spiking_ddim.benchmarks.architectures import as_loaded, ddpm_cifar10
from spiking_ddim.pipelines import SamplingOptions, generate, load_pipeline
from spiking_ddim.provenance import package_version
from spiking_ddim.recipe import ConversionSpec, prepare
from spiking_ddim.speed import StageClock, sampling_seconds, state_bytes

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = ("embedded:photos", "ddpm-cifar10-random")


def pipeline(name: str):
    """The named model's pipeline with a DDIM scheduler; random weights seeded 0 for the CIFAR-10 architecture."""
    if name == "ddpm-cifar10-random":
        torch.manual_seed(0)
        return as_loaded(ddpm_cifar10()[0])
    return load_pipeline(name)


def measure(name: str, args: argparse.Namespace) -> dict:
    """One model's row: sampling seconds and ratios, conversion seconds, delta state per image."""
    options = SamplingOptions(steps=args.steps)
    ann = pipeline(name)
    fs, delta = copy.deepcopy(ann), copy.deepcopy(ann)
    prepared = {}
    for key, net, spec in (("fs", fs, ConversionSpec(K=args.K)),
                           ("delta", delta, ConversionSpec(K=args.K, coding="delta", calibrate=True))):
        clock = StageClock()
        prepare(net, spec, options, clock)
        prepared[key] = clock.seconds()
    nets = {"ann": ann, "fs": fs, "delta": delta}
    runs = {key: (lambda p=p: generate(p, range(args.batch), options)) for key, p in nets.items()}
    seconds = sampling_seconds(runs, args.repeats, torch.device("cpu"))  # delta's state: that of its last run
    return {"model": name, "parameters": sum(p.numel() for p in ann.unet.parameters()),
            "sample_seconds": seconds, "fs_ratio": seconds["fs"] / seconds["ann"],
            "delta_ratio": seconds["delta"] / seconds["ann"], "prepare_seconds": prepared,
            "delta_state_bytes_per_image": state_bytes(delta.unet) / args.batch}


def markdown(data: dict) -> str:
    lines = ["# Sampling speed and memory at 32x32 RGB", "",
             f"One sampling run of {data['batch']} images at {data['steps']} DDIM steps, median of {data['repeats']} "
             f"rounds taking the ANN, the FS network (K={data['K']}, step coding, exact lookup) and the delta-coded "
             f"one (K={data['K']}, calibrated) in turn, {data['threads']} CPU threads; conversion seconds: convert + "
             "calibrate + fit the encoders. Delta state: the float32 values each site sent so far, per image. "
             "Written by `python eval/sampling_speed.py`.", "",
             "| model | parameters | ANN (s) | FS (s) | FS / ANN | delta (s) | delta / ANN | FS prepare (s) | "
             "delta prepare (s) | delta state per image (MB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        s = r["sample_seconds"]
        lines.append(f"| {r['model']} | {r['parameters'] / 1e6:.2f} M | {s['ann']:.2f} | {s['fs']:.2f} | "
                     f"{r['fs_ratio']:.2f} | {s['delta']:.2f} | {r['delta_ratio']:.2f} | "
                     f"{r['prepare_seconds']['fs']['total']:.1f} | {r['prepare_seconds']['delta']['total']:.1f} | "
                     f"{r['delta_state_bytes_per_image'] / 1e6:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="models (default: both)")
    p.add_argument("--K", type=int, default=8, help="FS time steps (default: %(default)s)")
    p.add_argument("--batch", type=int, default=16, help="images per sampling run (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (default: %(default)s)")
    p.add_argument("--out-dir", type=Path, default=RESULTS, help="where the results go (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing result files")
    args = p.parse_args(argv)
    out = args.out_dir / "sampling_speed.json"
    if out.exists() and not args.overwrite:
        print(f"error: {out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    rows = [measure(name, args) for name in tqdm(args.models, desc="models", unit="model", dynamic_ncols=True)]
    data = {"K": args.K, "batch": args.batch, "steps": args.steps, "repeats": args.repeats,
            "threads": torch.get_num_threads(), "version": package_version(), "rows": rows}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(data, indent=1) + "\n")
    atomic_write_text(args.out_dir / "sampling_speed.md", markdown(data))
    print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
