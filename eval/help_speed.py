#!/usr/bin/env python
"""How long ``spiking-ddim --help`` and every subcommand's ``--help`` take, as a user sees it.

Each is run ``--repeats`` times as a new process (``python -m spiking_ddim.cli ...``, what
the installed ``spiking-ddim`` script runs) and the median wall time is kept. The target
is under 2 s each; the command line imports torch, diffusers and the rest only when a
command runs. Writes eval/results/help_speed.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
COMMANDS = [[], ["sample"], ["convert"], ["calibrate"], ["metrics"], ["bench"], ["train"], ["train", "fs"],
            ["train", "bank"], ["train", "ann"], ["train", "snn"]]
TARGET_SECONDS = 2.0


def seconds(command: list[str], repeats: int) -> float:
    """Median wall seconds of ``spiking-ddim COMMAND --help`` in a new process."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "spiking_ddim.cli", *command, "--help"], capture_output=True,
                           text=True)
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise RuntimeError(f"spiking-ddim {' '.join(command)} --help failed: {r.stderr[-1000:]}")
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="runs per command (default: %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory (default: eval/results)")
    args = p.parse_args(argv)
    from fs_neurons.utils.files import atomic_write_text

    rows = {" ".join(["spiking-ddim", *c, "--help"]): round(seconds(c, args.repeats), 3) for c in COMMANDS}
    data = {"repeats": args.repeats, "target_seconds": TARGET_SECONDS, "median_seconds": rows,
            "met": all(v < TARGET_SECONDS for v in rows.values())}
    atomic_write_text(args.out / "help_speed.json", json.dumps(data, indent=1) + "\n")
    for name, value in rows.items():
        print(f"{value:6.3f} s  {name}")
    print(f"target < {TARGET_SECONDS} s: {'met' if data['met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
