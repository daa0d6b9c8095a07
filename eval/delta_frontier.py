#!/usr/bin/env python
"""Per-step against delta coding on an embedded DDIM: quality, spikes and energy.

Each point converts the embedded digits DDIM (or ``--model embedded:photos``; ``ours-unet``
bank, no calibration) with one coding at one K: ``step:K`` (every site sends its full K-step
code at every denoising step) or ``delta:K:W`` (a run's first step sends the K-step code and
its correction, later steps signed codes of the change in min(K, 8) steps, the encoders
fitted to 16 images' changes with spike weight W), or ``if:K``, the rate-coded IF baseline
(every site an integrate-and-fire neuron of T = K steps, thresholds balanced on 16 images).
The grammar is :mod:`spiking_ddim.benchmarks.points`'; every model is made by the package's
recipe (:func:`spiking_ddim.recipe.prepare`: convert, calibrate, fit encoders). It samples
``--num-images`` images (``--steps`` DDIM steps, seeds SEED..SEED+N-1) and records the PSNR
against the original from the same noise with its per-image spread, the KID (in the model's
own feature space) against its held-out real images, spikes per neuron, and the energy per
image and per step (:mod:`spiking_ddim.benchmarks.rows`' keys): SNN / ANN (45 nm operation
count, the headline), SNN / INT8 ANN, and both under the memory-aware estimate. ``--scan-steps`` then
prices one image at each number of denoising steps for the ANN and the scanned points
(PSNR on ``--scan-images`` images; delta encoders refitted at each number of steps, a fully
spiking model's calibration kept from ``--steps``).

Writes delta_frontier.{json,md,png} in ``--out-dir`` (eval/results), the JSON after every
point, so a long run leaves what it measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from fs_neurons.utils.files import atomic_write_text
from spiking_ddim.benchmarks import frontier
from spiking_ddim.benchmarks.args import add_run_args, existing_results
from spiking_ddim.benchmarks.noise import floor_line, load_floor
from spiking_ddim.benchmarks.points import GRAMMAR, parse_point, point_key, point_name, point_text
from spiking_ddim.benchmarks.rows import measure, merge_rows, original_run, sample_metered
from spiking_ddim.embedded import results_model
from spiking_ddim.pipelines import SamplingOptions

RESULTS = Path(__file__).resolve().parent / "results"
POINTS = ["step:8", "step:16", "delta:16:0.003", "delta:16:0.01", "delta:16:0.03", "delta:16:0.1",
          "delta:8:0.01", "delta:8:0.1", "delta:4:0.01", "delta:4:0.1"]
# The operating points the README names, labelled on the plot.
NAMED = ["step:8", "step:16", "delta:8:0.0002:value:acs", "delta:4:0.003:value:acs:8",
         "delta+all:8:0.001:value:acs", "delta+all:4:0.002:value:acs:8", "if:8"]
# Each model's targets (its issue's): coding, spiking, PSNR at least, 45 nm energy at most.
TARGETS = {"embedded:digits-ddim": [("delta", "swish", 40.0, 0.40), ("delta", "swish", 35.0, 0.33),
                                    ("delta", "all", 35.0, 0.15)],
           "embedded:photos-ddim": [("delta", "swish", 40.0, 0.40), ("delta", "all", 35.0, 0.20)]}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", nargs="*", default=POINTS, metavar="CODING:K[:W]",
                   help=f"points to measure: {GRAMMAR} (W's price and what it counts, default change, spikes; DK: "
                        "steps of a change's code, default min(K, 8)); +all: fully spiking, calibrated; +cal: Swish "
                        "sites only, calibrated (default: %(default)s)")
    add_run_args(p, RESULTS, "point")
    p.add_argument("--eta", type=float, default=0.0,
                   help="DDIM eta of every run, the original's included: above 0 each step adds fresh noise, "
                        "so consecutive steps differ more (default: %(default)s)")
    p.add_argument("--scan-steps", type=int, nargs="*", default=[10, 20, 50],
                   help="denoising steps of the energy-per-step scan; none to skip it (default: %(default)s)")
    p.add_argument("--scan-points", nargs="*", default=["step:16", "delta:16:0.01"], metavar="CODING:K[:W]",
                   help="points priced at every --scan-steps (default: %(default)s)")
    p.add_argument("--scan-images", type=int, default=100, help="images per scan point (default: %(default)s)")
    p.add_argument("--add", action="store_true",
                   help="measure --points and add them to the existing .json (replacing points of the same coding, "
                        "spiking, K and W) with its settings; then the steps scan, unless --scan-steps is given empty")
    p.add_argument("--remeasure", action="store_true",
                   help="with --add: measure every point of the existing .json again, in its order (after a change "
                        "that can move them), instead of --points")
    args = p.parse_args(argv)
    if args.remeasure and not args.add:
        p.error("--remeasure re-measures the points of an existing .json: use it with --add")
    try:
        args.parsed = [parse_point(s) for s in args.points]
        args.scan_parsed = [parse_point(s) for s in args.scan_points]
    except ValueError as e:
        p.error(str(e))
    args.existing = None if args.replot else existing_results(p, args, args.out_dir / "delta_frontier.json")
    return args


def write(args, data: dict) -> None:
    """The .json, .md and .png of ``data``."""
    targets = TARGETS[results_model(data).name]
    atomic_write_text(args.out_dir / "delta_frontier.json", json.dumps(data, indent=1) + "\n")
    atomic_write_text(args.out_dir / "delta_frontier.md",
                      frontier.markdown(data, targets, floor_line(load_floor(args.out_dir))))
    frontier.plot(data, args.out_dir / "delta_frontier.png", NAMED, targets)


def measure_points(args, models: frontier.PointModels, run, data: dict) -> None:
    """Measure every point of ``args.parsed`` into ``data`` (replacing one of the same key), writing after each."""
    for spec in tqdm(args.parsed, desc="points", unit="point", dynamic_ncols=True):
        fs, seconds = models.get(spec, run.options)
        new = {**spec, "fit_seconds": seconds, **measure(fs, run.images, run.real, run.options, args.num_images,
                                                         args.batch_size, args.seed)}
        data["points"] = merge_rows(data["points"], [new], point_key, sort=False)
        write(args, data)


def scan(args, models: frontier.PointModels, data: dict) -> None:
    """Energy per image at each of --scan-steps for the ANN and the --scan-points."""
    rows = {"ANN": []} | {point_name(s): [] for s in args.scan_parsed}
    kept = [row for row in data.get("scan") or [] if row["model"] not in rows  # --add: complete rows of others
            and [e["steps"] for e in row["by_steps"]] == args.scan_steps]
    for steps in tqdm(args.scan_steps, desc="steps scan", unit="setting", dynamic_ncols=True):
        options = SamplingOptions(steps=steps, eta=args.eta)
        reference, ann, _ = sample_metered(models.plain, options, args.scan_images, args.batch_size, args.seed)
        rows["ANN"].append({"steps": steps, "snn_joules_per_image": ann.ann_joules_per_image})
        for spec in args.scan_parsed:
            fs, _ = models.get(spec, options)
            rows[point_name(spec)].append({"steps": steps, **measure(fs, reference, None, options, args.scan_images,
                                                                    args.batch_size, args.seed)})
        data["scan"] = [{"model": m, "by_steps": r} for m, r in rows.items()] + kept
        data["scan_steps"] = args.scan_steps[:len(rows["ANN"])]
        write(args, data)


def main(argv=None) -> int:
    args = parse_args(argv)
    path = args.out_dir / "delta_frontier.json"
    if args.replot:
        write(args, json.loads(path.read_text()))
    else:
        if args.add:
            data = args.existing
            args.eta = data["eta"]
            if args.remeasure:
                args.parsed = [parse_point(point_text(p)) for p in data["points"]]
        elif any((args.out_dir / f"delta_frontier.{x}").exists() for x in ("json", "md", "png")) and not args.overwrite:
            print(f"error: {args.out_dir}/delta_frontier.* exist; pass --overwrite to replace them", file=sys.stderr)
            return 2
        run = original_run(SamplingOptions(steps=args.steps, eta=args.eta), args.num_images, args.batch_size, args.seed,
                           args.model)
        if not args.add:
            data = {"model": args.model, "num_images": args.num_images, "steps": args.steps, "eta": args.eta, "seed": args.seed,
                    "original_kid": run.kid_mean, "scan_images": args.scan_images, "points": []}
        models = frontier.PointModels(run.pipe)
        measure_points(args, models, run, data)
        if args.scan_steps:
            scan(args, models, data)
    print((args.out_dir / "delta_frontier.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
