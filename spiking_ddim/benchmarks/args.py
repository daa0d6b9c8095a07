"""The flags every benchmark driver that samples the embedded model shares."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..embedded import EMBEDDED_MODELS, PREFIX


def add_run_args(p: argparse.ArgumentParser, results: Path, what: str = "row") -> None:
    """--model, --num-images, --steps, --batch-size, --seed, --out-dir (default ``results``), --overwrite, --replot."""
    p.add_argument("--model", choices=[PREFIX + key for key in EMBEDDED_MODELS], default=PREFIX + "digits",
                   help="the shipped model to measure (default: %(default)s)")
    p.add_argument("--num-images", type=int, default=1000, help=f"images per {what} (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=100, help="sampling batch size (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed SEED+i (default: %(default)s)")
    p.add_argument("--out-dir", type=Path, default=results, help="where the results go (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing result files")
    p.add_argument("--replot", action="store_true", help="rewrite the tables and plots from the existing .json")
