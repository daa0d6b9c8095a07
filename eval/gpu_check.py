#!/usr/bin/env python
"""The GPU check: ``spiking-ddim bench`` writing eval/results/gpu_check.json.

    python eval/gpu_check.py                 # on a machine with CUDA
    python eval/gpu_check.py --device cpu    # the same checks on the CPU

Every flag of ``spiking-ddim bench --help`` applies; --out defaults to the results file.
"""

import sys
from pathlib import Path

from spiking_ddim.cli import main

RESULTS = Path(__file__).resolve().parent / "results" / "gpu_check.json"

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--out" not in argv and not any(a.startswith("--out=") for a in argv):
        argv += ["--out", str(RESULTS)]
    sys.exit(main(["bench", *argv]))
