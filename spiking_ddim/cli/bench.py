"""``spiking-ddim bench``: check a device (a GPU) with what users run there.

    spiking-ddim bench --device cuda --out eval/results/gpu_check.json

Five checks on the embedded digits DDIM, each recorded with its seconds, its figures
and, if it fails, the error (the run goes on to the next check): environment, sample
(float32 and autocast to --dtype), calibrate, train (train snn in --dtype mixed
precision), speed (see spiking_ddim.device_check).

Exit status 1 when a check failed. The results file is written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .flags import add_device_arg, help_text


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="check a device (GPU): sample, calibrate, train in mixed precision, speed",
                       description=help_text(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_device_arg(p)
    p.add_argument("--dtype", choices=["bf16", "fp16"], default="bf16",
                   help="reduced precision of the sample and train checks (default: %(default)s)")
    p.add_argument("--K", type=int, default=8, help="FS time steps (default: %(default)s)")
    p.add_argument("--num-images", type=int, default=256, help="images of the sample check (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps of sampling and calibration (default: %(default)s)")
    p.add_argument("--calibration-images", type=int, default=16,
                   help="images recorded for calibration (default: %(default)s)")
    p.add_argument("--train-steps", type=int, default=20, help="optimizer steps of the train check (default: %(default)s)")
    p.add_argument("--batch", type=int, default=256, help="batch of the speed check (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=10, help="timed forward passes per model (default: %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="results JSON file (e.g. eval/results/gpu_check.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing results file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from fs_neurons.utils.files import atomic_write_text

    from ..device_check import CheckSettings, run_checks
    from .common import require_positive, resolve_device

    if args.out.exists() and not args.overwrite:
        raise SystemExit(f"error: {args.out} exists; pass --overwrite to replace it")
    device = resolve_device(args.device)
    require_positive(args, "K", "num_images", "steps", "calibration_images", "train_steps", "batch", "repeats")
    settings = CheckSettings(args.dtype, args.K, args.num_images, args.steps, args.calibration_images,
                             args.train_steps, args.batch, args.repeats)
    results = run_checks(settings, device, lambda name: print(f"bench: {name} ...", file=sys.stderr, flush=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(results, indent=1) + "\n")
    for name, r in results["checks"].items():
        shown = {k: v for k, v in r.items() if k not in ("ok", "traceback")}
        print(f"{name:<12} {'ok ' if r['ok'] else 'FAILED'} {json.dumps(shown)}")
    print(f"wrote {args.out}")
    return 0 if all(r["ok"] for r in results["checks"].values()) else 1
