#!/usr/bin/env python
"""The quality-per-energy frontier of budgeted calibration on the embedded digits DDIM.

For each K: convert (``ours-unet``, :func:`spiking_ddim.recipe.prepare`), fit every site's
options once (:func:`spiking_ddim.calibration.fit_site_options`), then for the plain
calibration and each SNN/ANN energy budget choose the sites' options (:func:`apply_budget`)
and sample ``--num-images`` images (``--steps`` DDIM steps, seeds SEED..SEED+N-1): PSNR
against the original from the same noise, KID against the held-out digits, energy per
image (:mod:`spiking_ddim.benchmarks.rows`' keys). The plain calibrated rows of
``ddim_table.json`` (``ours-unet+cal``, every K) are the baseline every budgeted point
must dominate (:mod:`spiking_ddim.benchmarks.budgets`). ``--finetuned DIR ...`` adds points
of budgeted models fine-tuned since (``train snn --calibrate --energy-budget R``). Every
point is per-step, Swish-only (``eval/delta_frontier.py`` has the other codings).

Writes eval/results/energy_frontier.{json,md,png}.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from fs_neurons.utils.files import atomic_write_text
from spiking_ddim.benchmarks import budgets
from spiking_ddim.benchmarks.noise import floor_line, load_floor
from spiking_ddim.benchmarks.rows import measure, original_run
from spiking_ddim.calibration import SpikeBudget, apply_budget, fit_site_options
from spiking_ddim.cli.common import StageBars
from spiking_ddim.pipelines import SamplingOptions, load_pipeline
from spiking_ddim.recipe import ConversionSpec, prepare

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {8: (0.40, 30.0), 16: (0.60, 34.0)}  # K: (energy ratio at most, at PSNR at least)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--K", type=int, nargs="+", default=[8, 16], help="time steps (default: %(default)s)")
    p.add_argument("--budgets", type=float, nargs="+", default=[0.6, 0.5, 0.45, 0.4],
                   help="SNN/ANN energy budgets of the sweep, for every K (default: %(default)s)")
    p.add_argument("--num-images", type=int, default=1000, help="images per point (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=100, help="sampling batch size (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed SEED+i (default: %(default)s)")
    p.add_argument("--table", type=Path, default=RESULTS / "ddim_table.json",
                   help="the network table whose ours-unet+cal rows are the baseline (default: %(default)s)")
    p.add_argument("--out-dir", type=Path, default=RESULTS, help="where the results go (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing result files")
    p.add_argument("--finetuned", type=Path, nargs="+", metavar="DIR",
                   help="converted pipelines fine-tuned under a budget: sample each and add its point to the "
                        "existing energy_frontier.json (replacing one of the same K, budget and run name)")
    p.add_argument("--keep-finetuned", action="store_true",
                   help="with --overwrite: keep the fine-tuned points of the existing energy_frontier.json as they "
                        "were measured (their models are not sampled again)")
    p.add_argument("--replot", action="store_true",
                   help="rewrite the .md and .png from the existing energy_frontier.json (no sampling)")
    return p.parse_args(argv)


def point(pipe, run, args, K: int, budget, finetuned: str = None) -> dict:
    record = pipe.unet.fs_config
    return {"K": K, "budget": budget, "finetuned": finetuned, "coding": record.coding.name, "spiking": record.spiking,
            **measure(pipe, run.images, run.real, run.options, args.num_images, args.batch_size, args.seed),
            "num_images": args.num_images}


def write(args, data: dict) -> None:
    data["dominance"] = budgets.dominance(data["points"], data["baseline"])
    atomic_write_text(args.out_dir / "energy_frontier.json", json.dumps(data, indent=1) + "\n")
    atomic_write_text(args.out_dir / "energy_frontier.md",
                      budgets.markdown(data, TARGETS, floor_line(load_floor(args.out_dir))))
    budgets.plot(data, TARGETS, args.out_dir / "energy_frontier.png")


def add_finetuned(args) -> int:
    """Sample each fine-tuned model of ``args.finetuned`` and add its point to the results."""
    try:
        data = json.loads((args.out_dir / "energy_frontier.json").read_text())
        models = {path: budgets.check_finetuned(load_pipeline(path), path) for path in args.finetuned}
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.num_images, args.steps, args.seed = data["num_images"], data["steps"], data["seed"]
    run = original_run(SamplingOptions(steps=args.steps), args.num_images, args.batch_size, args.seed)
    for path, model in models.items():
        record = model.unet.fs_config
        new = point(model, run, args, record.K, record.budget["value"], budgets.run_name(path))
        data["points"] = [p for p in data["points"] if budgets.identity(p) != budgets.identity(new)] + [new]
    data["points"].sort(key=lambda p: p["K"])  # stable: a K's fine-tuned points after its budgets
    write(args, data)
    return 0


def sweep(args, data: dict, kept: list[dict]) -> None:
    """Every K's plain calibration and budgets, written after every K (a long run leaves its results)."""
    run = original_run(SamplingOptions(steps=args.steps), args.num_images, args.batch_size, args.seed)
    data["original_kid"], points = run.kid_mean, []
    for K in args.K:
        fs = copy.deepcopy(run.pipe)
        prepare(fs, ConversionSpec(K=K), run.options)
        t0 = time.perf_counter()
        with StageBars(f"K={K}: site options: ") as bars:
            found = fit_site_options(fs, run.options, progress=bars)
        data["fit_seconds"][str(K)] = round(time.perf_counter() - t0, 1)
        for budget in tqdm([None, *args.budget_objects], desc=f"K={K}: budgets", unit="point", dynamic_ncols=True):
            try:
                apply_budget(fs, found, budget)
            except ValueError as e:
                print(f"K={K}, budget {budget.value}: {e}", file=sys.stderr)
                continue
            points.append(point(fs, run, args, K, None if budget is None else budget.value))
        data["points"] = points + kept
        write(args, data)
    data["points"] = sorted(points + kept, key=lambda p: p["K"])
    write(args, data)


def main(argv=None) -> int:
    args = parse_args(argv)
    outs = [args.out_dir / f"energy_frontier.{x}" for x in ("json", "md", "png")]
    if args.replot:
        write(args, json.loads(outs[0].read_text()))
    elif args.finetuned:
        if add_finetuned(args):
            return 2
    else:
        if any(o.exists() for o in outs) and not args.overwrite:
            print(f"error: {args.out_dir}/energy_frontier.* exist; pass --overwrite to replace them", file=sys.stderr)
            return 2
        if args.keep_finetuned and not outs[0].is_file():
            print(f"error: --keep-finetuned needs an existing {outs[0]}", file=sys.stderr)
            return 2
        try:
            args.budget_objects = [SpikeBudget("energy", b) for b in args.budgets]
            table = json.loads(args.table.read_text())
        except (ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        kept = [p for p in json.loads(outs[0].read_text())["points"] if p.get("finetuned")] if args.keep_finetuned \
            else []
        sweep(args, {"num_images": args.num_images, "steps": args.steps, "seed": args.seed, "original_kid": None,
                     "fit_seconds": {}, "points": [], "baseline": budgets.baseline_of(
                         table["rows"] if isinstance(table, dict) else table)}, kept)
    print(outs[1].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
