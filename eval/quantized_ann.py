#!/usr/bin/env python
"""Quantised ANN baselines of the embedded digits DDIM: W8A8, W8A16, W8A32 (8-bit weights alone), W4A8.

The original UNet with every conv / linear layer fake-quantised (brevitas; weights per
output channel, inputs per tensor, scales calibrated on 16 images of the calibration
stream: :mod:`spiking_ddim.quantization`), sampled from the same noise as the 32-bit
original: PSNR with its per-image spread, KID against held-out digits, and the energy of
the quantised network under every estimate of :mod:`spiking_ddim.energy.matched`
(:mod:`spiking_ddim.benchmarks.baselines`).

Writes eval/results/quantized_ann.{json,md}; ``--replot`` rewrites the .md from the .json;
``--reprice`` prices the rows of the .json again (an ANN's operation counts do not depend on
its images: one image of the original is counted) and rewrites both.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from fs_neurons.utils.files import atomic_write_text
from spiking_ddim.benchmarks.args import add_run_args, existing_results
from spiking_ddim.benchmarks.baselines import ann_row, cost_of, markdown, reprice
from spiking_ddim.benchmarks.rows import merge_rows, original_run
from spiking_ddim.embedded import results_model
from spiking_ddim.errors import SettingError
from spiking_ddim.pipelines import SamplingOptions, load_pipeline
from spiking_ddim.quantization import Precision

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--precisions", nargs="+", default=["W8A8", "W8A16", "W8A32", "W4A8"],
                   help="precisions W<bits>A<bits> (A32: float activations), each optionally with :LAYER=BITS "
                        "for a layer at its own weight width (W8A8:conv_out=16) (default: %(default)s)")
    add_run_args(p, RESULTS, "row")
    p.add_argument("--reprice", action="store_true",
                   help="price the existing .json's rows again under every estimate and rewrite both files")
    p.add_argument("--add", action="store_true",
                   help="measure --precisions with the existing .json's settings and add them to it (replacing rows "
                        "of the same precision)")
    args = p.parse_args(argv)
    out = args.out_dir / "quantized_ann.json"
    if args.replot:
        data = json.loads(out.read_text())
    elif args.reprice:
        data = json.loads(out.read_text())
        data = reprice(data, cost_of(load_pipeline(results_model(data).directory), SamplingOptions(steps=data["steps"])))
        atomic_write_text(out, json.dumps(data, indent=1) + "\n")
    else:
        try:
            precisions = [Precision.parse(t) for t in args.precisions]
        except SettingError as e:
            p.error(f"--precisions: {e}")
        if out.exists() and not (args.overwrite or args.add):
            print(f"error: {out} exists; pass --overwrite to replace it or --add to add rows", file=sys.stderr)
            return 2
        data = existing_results(p, args, out)
        run = original_run(SamplingOptions(steps=args.steps), args.num_images, args.batch_size, args.seed,
                           args.model)
        data = data or {"model": args.model, "num_images": args.num_images, "steps": args.steps, "seed": args.seed,
                        "original_kid": run.kid_mean, "rows": []}
        cost = cost_of(run.pipe, run.options)  # the ANN's counts, the same at every precision
        for precision in tqdm(precisions, desc="quantised ANNs", unit="row", dynamic_ncols=True):
            new = ann_row(run, precision, args.num_images, args.batch_size, args.seed)
            data["rows"] = merge_rows(data["rows"], [new], lambda r: r["precision"], sort=False)
            data = reprice(data, cost)
            args.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out, json.dumps(data, indent=1) + "\n")
    atomic_write_text(args.out_dir / "quantized_ann.md", markdown(data))
    print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
