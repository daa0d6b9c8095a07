#!/usr/bin/env python
"""Forward-pass time of the converted default UNet against the original (CPU by default),
and what the spike and energy accounting adds to a sampling run.

Median of ``--repeats`` timed forward passes after warm-up, batch ``--batch``, K ``--K``,
for the FS model's exact lookup path (its eval mode) and for the spike simulation; then
``--sample-repeats`` DDIM sampling runs of the FS model (``--batch`` images,
``--sample-steps`` steps), alternately plain and inside ``measure_cost``.
Writes eval/results/unet_speed.json:
``{"K", "batch", "ann_seconds", "snn_seconds", "ratio", "simulate_seconds", "simulate_ratio",
"sample_seconds", "sample_metered_seconds", "metering_overhead", ...}``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

from fs_neurons.utils.files import atomic_write_text
from spiking_ddim.defaults import DEFAULT_MODEL
from spiking_ddim.energy import measure_cost
from spiking_ddim.pipelines import SamplingOptions, generate, load_pipeline
from spiking_ddim.recipe import ConversionSpec, prepare
from spiking_ddim.speed import sampling_seconds, unet_forward_seconds

RESULTS = Path(__file__).resolve().parent / "results"


def sampling_overhead(pipe, batch: int, steps: int, repeats: int, device: torch.device) -> tuple[float, float]:
    """Median seconds of a DDIM sampling run, plain and inside ``measure_cost``, run alternately."""
    images, options = range(batch), SamplingOptions(steps=steps)

    def metered():
        with measure_cost(pipe):
            generate(pipe, images, options)

    seconds = sampling_seconds({"plain": lambda: generate(pipe, images, options), "metered": metered}, repeats, device)
    return seconds["plain"], seconds["metered"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="model directory (default: embedded)")
    p.add_argument("--K", type=int, default=16, help="time steps (default: %(default)s)")
    p.add_argument("--method", default="ours", help="bank entry (default: %(default)s)")
    p.add_argument("--batch", type=int, default=64, help="batch size (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=10, help="timed passes per model (default: %(default)s)")
    p.add_argument("--sample-steps", type=int, default=20, help="DDIM steps of the timed sampling runs (default: %(default)s)")
    p.add_argument("--sample-repeats", type=int, default=5,
                   help="sampling runs with and without cost accounting (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="device (default: %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS / "unet_speed.json", help="results file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing results file")
    args = p.parse_args(argv)
    if args.out.exists() and not args.overwrite:
        print(f"error: {args.out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    pipe = load_pipeline(args.model).to(args.device)
    fs_pipe = copy.deepcopy(pipe)
    prepare(fs_pipe, ConversionSpec(K=args.K, method=args.method), SamplingOptions())
    times = unet_forward_seconds(pipe, fs_pipe, args.batch, args.repeats, torch.device(args.device),
                                 simulate_repeats=max(3, args.repeats // 3))
    ann, lookup, simulate = (times[k] for k in ("ann_seconds", "lookup_seconds", "simulate_seconds"))
    plain, metered = sampling_overhead(fs_pipe, args.batch, args.sample_steps, args.sample_repeats,
                                       torch.device(args.device))
    row = {"K": args.K, "batch": args.batch, "ann_seconds": ann, "snn_seconds": lookup, "ratio": lookup / ann,
           "simulate_seconds": simulate, "simulate_ratio": simulate / ann, "method": args.method,
           "sample_seconds": plain, "sample_metered_seconds": metered, "metering_overhead": metered / plain - 1,
           "sample_steps": args.sample_steps, "sample_repeats": args.sample_repeats,
           "device": args.device, "threads": torch.get_num_threads(), "repeats": args.repeats}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(row, indent=1) + "\n")
    print(json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
