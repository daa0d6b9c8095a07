#!/usr/bin/env python
"""Network-level benchmark: a diffusion pipeline with its Swish replaced by FS neurons, per K, method and coding.

For the embedded digits DDIM (or ``--model``, any pipeline ``sample.py`` takes, with
``--convert``, ``--prompts`` and ``--guidance-scale`` as there): the original network's row,
then for each K, method (random, gaussian, tbpi, ours: the bank's paper-protocol entries;
ours-unet, the default, fitted to UNets' Swish inputs; ``+cal``: calibrated to each site's
inputs) and coding (``--codings``: step, delta, and ``+all`` for fully spiking, with +cal
methods only) the FS model's row, made by the package's recipe
(:func:`spiking_ddim.recipe.prepare`): PSNR and its per-image spread against the original
from identical noise, the paper's x0-MAE, FID and KID against held-out real images (digits
for the embedded model), and the cost per image (:mod:`spiking_ddim.benchmarks.rows`' and
:mod:`spiking_ddim.benchmarks.table`'s keys): spikes, ACs, MACs, SNN / ANN energy (45 nm
operation count; ``--energy`` other prices), against an INT8 ANN, memory-aware, and the
seconds of the fits and of sampling. ``--finetuned DIR`` adds rows for fine-tuned converted
models (``train snn`` outputs).

Writes eval/results/ddim_table.{json,md,png}, ddim_frontier.png (PSNR and KID against SNN
energy per image), ddim_firing_rates.png and ddim_energy.png (firing rate per site and
energy by operation type of ours+cal at every K).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from fs_neurons.utils.files import atomic_write_text
from spiking_ddim.benchmarks import table
from spiking_ddim.benchmarks.noise import floor_line, load_floor
from spiking_ddim.benchmarks.rows import settings_conflict
from spiking_ddim.cli.common import coding_of_flags
from spiking_ddim.cli.flags import add_coding_args
from spiking_ddim.codings import coding_names
from spiking_ddim.defaults import DEFAULT_MODEL, FEATURE_SPACES
from spiking_ddim.embedded import embedded_model
from spiking_ddim.energy import EnergyConstants
from spiking_ddim.provenance import source_name

RESULTS = Path(__file__).resolve().parent / "results"
FILES = ["table.json", "table.md", "table.png", "frontier.png", "firing_rates.png", "energy.png"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL),
                   help="diffusers pipeline or UNet directory, hub id, or embedded:digits / embedded:photos "
                        "(default: the embedded digits DDIM)")
    p.add_argument("--convert", default="unet", metavar="NAMES",
                   help="comma-separated components to convert: unet, vae / vqvae (default: %(default)s)")
    p.add_argument("--prompts", type=Path, metavar="FILE",
                   help="text-conditional pipelines: prompts, one per line (default: built-in prompts)")
    p.add_argument("--guidance-scale", type=float, help="classifier-free guidance scale >= 1 (default: the pipeline's)")
    p.add_argument("--K", type=int, nargs="+", default=[4, 8, 12, 16], help="time steps (default: %(default)s)")
    p.add_argument("--methods", nargs="*", choices=table.METHODS, default=table.METHODS,
                   help="FS methods (default: all)")
    p.add_argument("--codings", nargs="+", choices=table.CODINGS, default=["step"],
                   help="codings of the FS rows; +all: fully spiking, only with +cal methods (default: %(default)s)")
    for name in coding_names():
        add_coding_args(p, name)
    p.add_argument("--finetuned", type=Path, nargs="*", default=[],
                   help="fine-tuned converted model directories (train snn outputs) to add as rows")
    p.add_argument("--update", action="store_true",
                   help="keep the existing table's rows and replace only those this run computes (same K, method, "
                        "coding and fine-tuned flag); the original network's row is always recomputed")
    p.add_argument("--num-images", type=int, default=1000, help="samples per row (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=100, help="sampling batch size (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed SEED+i (default: %(default)s)")
    p.add_argument("--real", help="held-out real images: 'digits', 'photos' or a folder (default: an embedded model's "
                                  "own set, none otherwise: no FID, KID or x0-MAE)")
    p.add_argument("--feature-extractor", choices=FEATURE_SPACES, default="auto",
                   help="feature space of FID and KID (default: %(default)s)")
    p.add_argument("--inception-weights", help="Inception weights file for offline FID / KID")
    p.add_argument("--energy", action="append", default=[], metavar="NAME=PJ",
                   help="energy per operation in picojoules (default mac=4.6, ac=0.9); repeatable")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory (default: eval/results)")
    p.add_argument("--overwrite", action="store_true", help="replace existing result files")
    p.add_argument("--replot", action="store_true",
                   help="rewrite ddim_table.md and redraw the plots from the existing ddim_table.json only")
    return p.parse_args(argv)


def write(args, rows: list[dict], constants: EnergyConstants) -> str:
    """Every results file of ``rows``; the markdown table."""
    files = [args.out / f"ddim_{name}" for name in FILES]
    settings = rows[0].get("settings", {})
    model = settings.get("model", args.model)
    embedded = embedded_model(model)
    words = embedded.words if embedded is not None else f"`{model}`"
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(files[0], json.dumps(rows, indent=1) + "\n")
    md = table.markdown(rows, words, settings.get("pipeline", "DDIMPipeline"), settings.get("convert", args.convert),
                        constants, floor_line(load_floor(args.out)))
    atomic_write_text(files[1], md)
    table.plot(rows, files[2])
    table.plot_frontier(rows, files[3])
    table.plot_costs(rows, files[4], files[5], constants)
    return md


def plan(args, pipe, constants: EnergyConstants) -> table.Scoring:
    """The jobs (method label, conversion spec) into ``args.jobs`` and the table's scoring;
    ValueError for a bad job."""
    from spiking_ddim.pipelines import check_components

    jobs, skipped = table.plan_jobs(args.K, args.methods, args.codings)
    if skipped:
        print(f"note: fully spiking codings need a calibrated method (+cal); skipped: {', '.join(skipped)}",
              file=sys.stderr)
    if not jobs and not args.finetuned:
        raise ValueError("no row to compute: the fully spiking codings need a +cal method")
    components = [c.strip() for c in args.convert.split(",") if c.strip()]
    check_components(pipe, components)
    codings = {name: coding_of_flags(args, name) for name in coding_names()}
    args.jobs = [(m, table.job_spec(K, m, c, components, codings, args.seed)) for K, m, c in jobs]
    embedded = embedded_model(args.model)
    settings = {"model": source_name(args.model),
                "convert": args.convert, "num_images": args.num_images, "steps": args.steps, "seed": args.seed,
                "real": args.real, "feature_extractor": args.feature_extractor,
                "energy": [constants.mac_pj, constants.ac_pj], "pipeline": type(pipe).__name__}
    real = args.real or (embedded.real if embedded else None)
    return table.Scoring(args.options, settings, args.batch_size, constants, *table.real_images(
        pipe, real, args.feature_extractor, args.inception_weights), args.feature_extractor, args.inception_weights)


def main(argv=None) -> int:
    args = parse_args(argv)
    from spiking_ddim.pipelines import SamplingOptions, load_pipeline, read_prompts

    files = [args.out / f"ddim_{name}" for name in FILES]
    try:
        constants = EnergyConstants.parse(args.energy)
        if args.replot:
            print(write(args, json.loads(files[0].read_text()), constants))
            return 0
        pipe = load_pipeline(args.model)
        args.options = SamplingOptions(args.steps, 0.0, read_prompts(args.prompts) if args.prompts else None,
                                       args.guidance_scale).resolve(pipe)
        scoring = plan(args, pipe, constants)
        finetuned = [load_pipeline(path) for path in args.finetuned]
    except (FileNotFoundError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if any(f.exists() for f in files) and not (args.overwrite or args.update):
        print(f"error: results exist in {args.out}; pass --overwrite to replace them or --update to add rows",
              file=sys.stderr)
        return 2
    old = json.loads(files[0].read_text()) if args.update and files[0].is_file() else None
    if args.update and old is None:
        print(f"error: --update needs an existing {files[0]}", file=sys.stderr)
        return 2
    conflict = old and settings_conflict(old, scoring.settings)
    if conflict:
        print(f"error: --update would mix settings in one table: {conflict}; rerun with the table's settings, "
              "or --overwrite", file=sys.stderr)
        return 2
    with tqdm(total=1 + len(args.jobs) + len(finetuned), desc="ddim_table", unit="row", dynamic_ncols=True) as bar:
        rows = table.table_rows(pipe, args.jobs, finetuned, scoring, lambda label: (bar.set_postfix_str(label),
                                                                                    bar.update()))
    print(write(args, table.merge(old, rows) if old else rows, constants))
    return 0


if __name__ == "__main__":
    sys.exit(main())
