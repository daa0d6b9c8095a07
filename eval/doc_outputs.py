#!/usr/bin/env python
"""The output block of a Python block of the docs, as every CPU prints it.

Runs block INDEX of PAGE (README.md or docs/*.md; counting its ```python blocks from 0)
once per CPU code path that ``eval/noise_floor.py`` plays on this machine (this CPU's own,
an AVX2 machine's, an SSE4.1 machine's: the instruction sets ATen, oneDNN and MKL may use),
in a scratch folder, and prints the ```text block to paste after it: each line as printed,
every number that differs between the runs written as its range ``LO..HI``. The docs
test (``tests/test_docs.py``) then checks that the block still prints within those ranges.
Prints the run times too (to stderr).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from noise_floor import ISA_ENV, cpu_flags

ROOT = Path(__file__).resolve().parents[1]
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
CPUS = {"this CPU": ({}, None), "AVX2 machine": (ISA_ENV["avx2"], "avx2"),
        "SSE4.1 machine": (ISA_ENV["sse4.1"], "sse4_1")}


def merge(outputs: list[str]) -> list[str]:
    """The lines of ``outputs`` (one per run), numbers that differ written as LO..HI; the
    first run's text where the runs print different words."""
    runs = [o.splitlines() for o in outputs]
    merged = []
    for i, line in enumerate(runs[0]):
        others = [r[i] for r in runs[1:] if i < len(r) and NUMBER.sub("#", r[i]) == NUMBER.sub("#", line)]
        columns = list(zip(*(NUMBER.findall(x) for x in [line, *others])))
        texts = iter(f"{min(c, key=float)}..{max(c, key=float)}" if len(set(map(float, c))) > 1 else c[0]
                     for c in columns)
        merged.append(NUMBER.sub(lambda _m, t=texts: next(t), line))
    return merged


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("page", type=Path, help="README.md or docs/PAGE.md")
    p.add_argument("index", type=int, help="which ```python block of the page, from 0")
    args = p.parse_args(argv)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / args.page).read_text(), re.S)
    if not 0 <= args.index < len(blocks):
        print(f"error: {args.page} has {len(blocks)} python blocks, no block {args.index}", file=sys.stderr)
        return 2
    flags, outputs = cpu_flags(), []
    for name, (env, needs) in CPUS.items():
        if needs is not None and needs not in flags:
            print(f"note: this CPU lacks {needs}: no {name} run", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", blocks[args.index]], capture_output=True, text=True, cwd=tmp,
                               env={**os.environ, **env})
            if r.returncode != 0:
                print(f"error: the block failed as a {name}:\n{r.stderr[-3000:]}", file=sys.stderr)
                return 1
            print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            outputs.append(r.stdout)
    print("```text\n# prints" + (" (a range: what the CPUs print)" if len(outputs) > 1 else "") + ":")
    print("\n".join(merge(outputs)))
    print("```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
