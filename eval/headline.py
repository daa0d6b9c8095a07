#!/usr/bin/env python
"""The README's headline table, written from the results files it quotes.

Each row names a model in words and where its figures were measured: a row of
``eval/results/ddim_table.json`` (method, K, coding), a point of ``delta_frontier.json``
(its ``--points`` text), of ``energy_frontier.json`` (K, budget, fine-tuned run) or of
``quantized_ann.json`` (precision). The table carries the PSNR of the mean MSE, the
per-image median and 5th percentile where the row was measured with them, the KID (digits
features) and the energy per image over the 32-bit ANN's (45 nm count; a quantised ANN's
own, at its precision's MAC price). ``python eval/headline.py`` rewrites the table between the README's
``headline table`` markers; ``--check`` only says whether the README is current (the docs
test runs it, so a re-measured results file with a stale README fails CI).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fs_neurons.utils.files import atomic_write_text
from spiking_ddim.benchmarks.points import point_text
from spiking_ddim.benchmarks.table import coding_label

RESULTS = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN = "<!-- headline table: written by python eval/headline.py -->"
END = "<!-- end of headline table -->"

# (label, results file, selector): ddim_table rows by (method, K, coding as the table writes
# it, fine-tuned), delta_frontier points by their --points text, energy_frontier points by
# (K, budget, fine-tuned run).
ROWS = [
    ("original (ANN)", "ddim_table", ("original", None, "-", False)),
    ("K=8, ours-unet (the default entry, uncalibrated)", "ddim_table", ("ours-unet", 8, "step", False)),
    ("K=8, ours-unet, calibrated", "ddim_table", ("ours-unet+cal", 8, "step", False)),
    ("K=8, energy budget 0.4, weights fine-tuned", "energy_frontier", (8, 0.4, "ft8e40b")),
    ("K=16, ours-unet (the default conversion)", "ddim_table", ("ours-unet", 16, "step", False)),
    ("K=16, ours, calibrated", "ddim_table", ("ours+cal", 16, "step", False)),
    ("K=8, delta coding (`--coding delta`, its default spike price)", "ddim_table",
     ("ours-unet", 8, "delta", False)),
    ("K=4, delta coding, changes in 8 steps (`--delta-K 8`), spike weight 0.003", "delta_frontier",
     "delta:4:0.003:value:acs:8"),
    ("K=8, delta coding, fully spiking, calibrated (its default spike price)", "ddim_table",
     ("ours-unet+cal", 8, "delta+all", False)),
    ("K=8, delta coding, fully spiking, calibrated, spike weight 0.001", "delta_frontier",
     "delta+all:8:0.001:value:acs:8"),
    ("K=8, delta coding, fully spiking, calibrated, spike weight 0.002", "delta_frontier",
     "delta+all:8:0.002:value:acs:8"),
    ("K=4, delta coding, changes in 8 steps, fully spiking, calibrated, spike weight 0.002", "delta_frontier",
     "delta+all:4:0.002:value:acs:8"),
    ("K=8, rate-coded IF baseline (T=8)", "delta_frontier", "if:8"),
    ("W8A8 ANN (8-bit weights and activations, run; energy: 8-bit MACs)", "quantized_ann", "W8A8"),
]
HEADER = ["model", "PSNR (dB)", "median / 5th pct per image (dB)", "KID", "energy SNN / ANN"]


def load(name: str) -> list[dict]:
    """The rows (ddim_table) or points (the frontiers) of eval/results/NAME.json."""
    data = json.loads((RESULTS / f"{name}.json").read_text())
    return data if isinstance(data, list) else data.get("points", data.get("rows"))


def find(name: str, selector) -> dict:
    """The one results entry of file NAME that SELECTOR names; ValueError if none or several."""
    if name == "ddim_table":
        def hit(r):
            return (r["method"], r["K"], coding_label(r), bool(r["finetuned"])) == selector
    elif name == "delta_frontier":
        def hit(r):
            return point_text(r) == selector
    elif name == "quantized_ann":
        def hit(r):
            return r["precision"] == selector
    else:
        def hit(r):
            return (r["K"], r["budget"], r["finetuned"]) == selector
    found = [r for r in load(name) if hit(r)]
    if len(found) != 1:
        raise ValueError(f"{name}.json has {len(found)} entries for {selector!r}, not one")
    return found[0]


def cells(entry: dict) -> list[str]:
    """PSNR, spread, KID and energy ratio of one results entry, as the table prints them."""
    psnr = "-" if entry.get("psnr") is None else f"{entry['psnr']:.2f}"
    spread = "-" if entry.get("psnr_median") is None else f"{entry['psnr_median']:.2f} / {entry['psnr_p5']:.2f}"
    # a quantised ANN's row: its own energy over the 32-bit ANN's (None where unpriced: fails loudly)
    energy = entry["energy_vs_fp32"] if "energy_vs_fp32" in entry else entry["energy_ratio"]
    return [psnr, spread, f"{entry['kid_mean']:.4f}", f"{energy:.3f}"]


def table() -> str:
    """The headline table, markdown, from the results files."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for label, name, selector in ROWS:
        lines.append("| " + " | ".join([label] + cells(find(name, selector))) + " |")
    return "\n".join(lines)


def with_table(readme: str) -> str:
    """README text with the table between the markers replaced by the current one."""
    if readme.count(BEGIN) != 1 or readme.count(END) != 1:
        raise ValueError(f"README.md needs exactly one {BEGIN!r} and one {END!r}")
    head, rest = readme.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if the README's table differs from the results files")
    args = p.parse_args(argv)
    text = README.read_text()
    current = with_table(text)
    if args.check:
        if current != text:
            print("README.md's headline table is stale: run python eval/headline.py", file=sys.stderr)
            return 1
        return 0
    atomic_write_text(README, current)
    return 0


if __name__ == "__main__":
    sys.exit(main())
