"""The flags every benchmark driver that samples the embedded model shares."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional

from ..embedded import EMBEDDED_MODELS, PREFIX, embedded_model, results_model

# what rows added to a results file must share, and their defaults for a new file
RUN_DEFAULTS = {"model": PREFIX + "digits", "num_images": 1000, "steps": 20, "seed": 0}


def add_run_args(p: argparse.ArgumentParser, results: Path, what: str = "row") -> None:
    """--model, --num-images, --steps, --batch-size, --seed, --out-dir (default ``results``), --overwrite, --replot."""
    given = "; with --add, the existing results' unless given"
    p.add_argument("--model", choices=[PREFIX + key for key in EMBEDDED_MODELS],
                   help=f"the shipped model to measure (default: {RUN_DEFAULTS['model']}{given})")
    p.add_argument("--num-images", type=int, help=f"images per {what} (default: {RUN_DEFAULTS['num_images']}{given})")
    p.add_argument("--steps", type=int, help=f"DDIM steps (default: {RUN_DEFAULTS['steps']}{given})")
    p.add_argument("--batch-size", type=int, default=100, help="sampling batch size (default: %(default)s)")
    p.add_argument("--seed", type=int, help=f"image i uses seed SEED+i (default: {RUN_DEFAULTS['seed']}{given})")
    p.add_argument("--out-dir", type=Path, default=results, help="where the results go (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing result files")
    p.add_argument("--replot", action="store_true", help="rewrite the tables and plots from the existing .json")


def existing_results(p: argparse.ArgumentParser, args: argparse.Namespace, path: Path) -> Optional[dict]:
    """Settle ``args``' model, image count, DDIM steps and seed. With ``--add``: the results at
    ``path``, whose settings those flags take, so new rows are measured as the old ones were;
    a parser error when there is no file or one of the flags was given with another value
    (rows measured differently are never mixed). Without: None, the flags not given taking
    :data:`RUN_DEFAULTS`."""
    if not args.add:
        for key, value in RUN_DEFAULTS.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
        return None
    if not path.is_file():
        p.error(f"--add: there is no {path} to add to; run without --add first")
    data = json.loads(path.read_text())
    recorded = {"model": results_model(data).name, **{key: data[key] for key in list(RUN_DEFAULTS)[1:]}}
    for key, value in recorded.items():
        given = getattr(args, key)
        same = given is None or (embedded_model(given) == results_model(data) if key == "model" else given == value)
        if not same:
            flag = "--" + key.replace("_", "-")
            p.error(f"--add: {path} was measured with {flag} {value}, not {given}; drop {flag} to add rows to it, "
                    "or write new results elsewhere with --out-dir")
        setattr(args, key, value)
    return data
