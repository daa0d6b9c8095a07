#!/usr/bin/env python
"""Quality against energy at matched precision: the ANN family beside SNN points, per estimate.

Each point is a set of ``spiking-ddim sample`` conversion flags, made by the package's
recipe from the embedded digits DDIM and sampled from the same noise as the float32
original (``--num-images`` images, ``--steps`` DDIM steps): PSNR with its per-image spread,
KID against the held-out digits, spikes, and the energy per image under the three
estimates of :mod:`spiking_ddim.energy.matched` (45 nm operations, Lemaire's memory-aware
dataflow, output-stationary), every network at its own weight widths, with each point's
break-even. The ANN family's rows (fp32, W8A8, W8A16, W8A32, W4A8) are
``eval/results/quantized_ann.json``'s (run ``eval/quantized_ann.py`` first).
:mod:`spiking_ddim.benchmarks.plane` holds the table, the plot and the dominance statement.

Writes eval/results/precision_plane.{json,md,png}, the JSON after every point;
``--replot`` rewrites the .md and .png from the .json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from tqdm import tqdm

from fs_neurons.utils.files import atomic_write_text
from spiking_ddim.benchmarks import plane
from spiking_ddim.benchmarks.args import add_run_args, existing_results
from spiking_ddim.benchmarks.rows import merge_rows, original_run
from spiking_ddim.cli.common import spec_from_flags
from spiking_ddim.cli.flags import add_conversion_args
from spiking_ddim.pipelines import SamplingOptions
from spiking_ddim.spec import ConversionSpec

RESULTS = Path(__file__).resolve().parent / "results"
POINTS = {  # the 8-bit points first: a long run that stops early leaves the ones the targets name
    "delta+all K=8, 8-bit": "--K 8 --coding delta --spiking all --calibrate --weight-bits 8 --narrow-widths",
    "delta K=8, 8-bit": "--K 8 --coding delta --weight-bits 8 --narrow-widths",
    "delta+all K=8, 8-bit, conv_out 16": "--K 8 --coding delta --spiking all --calibrate --weight-bits 8 "
                                         "--layer-bits conv_out=16 --narrow-widths",
    "delta K=8, 8-bit, conv_out 16": "--K 8 --coding delta --weight-bits 8 --layer-bits conv_out=16 --narrow-widths",
    "graded+all K=8, 8-bit": "--K 8 --coding graded --spiking all --calibrate --weight-bits 8 --narrow-widths",
    "graded K=8, 8-bit": "--K 8 --coding graded --weight-bits 8 --narrow-widths",
    "delta+all K=8": "--K 8 --coding delta --spiking all --calibrate",
    "delta K=8": "--K 8 --coding delta",
    "step K=8 +cal": "--K 8 --calibrate",
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", nargs="*", metavar="LABEL=FLAGS",
                   help="points to measure, each a label and the conversion flags of spiking-ddim sample, e.g. "
                        "'delta K=8=--K 8 --coding delta' (default: " + "; ".join(POINTS) + ")")
    add_run_args(p, RESULTS, "point")
    p.add_argument("--add", action="store_true",
                   help="measure --points with the existing .json's settings and add them to it (replacing points "
                        "of the same label); the ANN rows are read again")
    args = p.parse_args(argv)
    points = POINTS
    if args.points is not None:
        if not all("=--" in t for t in args.points):
            p.error("--points: each point is LABEL=FLAGS, the flags starting with --, e.g. 'delta K=8=--K 8 --coding delta'")
        points = {label: "--" + flags for label, _, flags in (t.partition("=--") for t in args.points)}
    try:
        args.parsed = {label: (flags, point_spec(flags)) for label, flags in points.items()}
    except ValueError as e:
        p.error(str(e))
    args.existing = existing_results(p, args, args.out_dir / "precision_plane.json")
    return args


def point_spec(flags: str) -> ConversionSpec:
    """The conversion ``flags`` name (those of ``spiking-ddim sample``), by the command line's
    own parser; ``ValueError`` naming a bad flag."""
    p = argparse.ArgumentParser(prog="point", add_help=False, exit_on_error=False)
    add_conversion_args(p)
    p.add_argument("--calibrate", action="store_true", default=None)
    p.add_argument("--calibration-images", type=int)
    try:
        return spec_from_flags(p.parse_args(shlex.split(flags)))
    except (argparse.ArgumentError, SystemExit) as e:
        raise ValueError(f"point {flags!r}: {e}") from None


def ann_rows(out_dir: Path, data: dict) -> list[dict]:
    """The ANN family's rows from quantized_ann.json (measured with the same settings), fp32 first."""
    q = json.loads((out_dir / "quantized_ann.json").read_text())
    for k in ("num_images", "steps", "seed"):
        if q[k] != data[k]:
            raise SystemExit(f"error: quantized_ann.json has {k}={q[k]}, this run {data[k]}: run eval/quantized_ann.py "
                             "with the same settings")
    fp32 = {"precision": "fp32", "psnr": None, "kid_mean": q["original_kid"],
            **{f"joules_per_image_{k}": v for k, v in q["fp32_joules_per_image"].items()}}
    return [fp32] + q["rows"]


def write(out_dir: Path, data: dict) -> None:
    atomic_write_text(out_dir / "precision_plane.json", json.dumps(data, indent=1) + "\n")
    atomic_write_text(out_dir / "precision_plane.md", plane.markdown(data))
    plane.plot(data, out_dir / "precision_plane.png")


def main(argv=None) -> int:
    args = parse_args(argv)
    path = args.out_dir / "precision_plane.json"
    if args.replot:
        write(args.out_dir, json.loads(path.read_text()))
    else:
        exists = any((args.out_dir / f"precision_plane.{x}").exists() for x in ("json", "md", "png"))
        if exists and not (args.overwrite or args.add):
            print(f"error: {args.out_dir}/precision_plane.* exist; pass --overwrite to replace them or --add to add "
                  f"points", file=sys.stderr)
            return 2
        data = args.existing or {"model": args.model, "num_images": args.num_images, "steps": args.steps,
                                 "seed": args.seed, "points": []}
        data["ann"] = ann_rows(args.out_dir, data)
        run = original_run(SamplingOptions(steps=args.steps), args.num_images, args.batch_size, args.seed,
                           args.model)
        data["original_kid"] = run.kid_mean
        for label, (flags, spec) in tqdm(args.parsed.items(), desc="points", unit="point", dynamic_ncols=True):
            row = plane.snn_row(run, label, flags, spec, args.num_images, args.batch_size, args.seed)
            data["points"] = merge_rows(data["points"], [row], lambda r: r["label"], sort=False)
            args.out_dir.mkdir(parents=True, exist_ok=True)
            write(args.out_dir, data)
    print((args.out_dir / "precision_plane.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
