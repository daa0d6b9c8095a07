"""One plane per estimate (``eval/precision_plane.py``): quality against energy per image
for the ANN family (fp32, W8A8, W8A16, W8A32, W4A8; ``eval/quantized_ann.py``'s rows) and
SNN points, each priced at matched weight widths (:mod:`spiking_ddim.energy.matched`).

A point is a :class:`~spiking_ddim.spec.ConversionSpec` with the conversion flags of
``spiking-ddim sample`` that name it (``--K 8 --coding delta --weight-bits 8``; the driver
parses them with the command line's parser); :func:`markdown` prints the command that
reproduces it. A row holds :mod:`.rows`' keys (PSNR and its spread, KID, the
matched-precision ratios and break-evens) and ``joules_per_image_E`` under every estimate E.
:func:`dominance` says, per estimate, which points dominate which (no worse in PSNR and
energy, better in one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..embedded import model_flag, results_model
from ..energy.matched import ESTIMATES
from ..spec import ConversionSpec
from .rows import OriginalRun, measure

KEYS = [e.replace("-", "_") for e in ESTIMATES]
TITLES = {"ops": "45 nm operations", "lemaire": "memory-aware, Lemaire's dataflow",
          "output_stationary": "memory-aware, output-stationary"}


def snn_row(run: OriginalRun, label: str, flags: str, spec: ConversionSpec, num_images: int, batch_size: int,
            seed: int) -> dict:
    """The row of the point ``spec`` (converted from ``run``'s pipeline by the recipe), scored
    against ``run``; ``flags``: the command-line flags that name it."""
    import copy
    import time

    from ..recipe import prepare

    fs = copy.deepcopy(run.pipe)
    t0 = time.perf_counter()
    prepare(fs, spec, run.options)
    fit = round(time.perf_counter() - t0, 1)
    row = {"label": label, "flags": flags, "fit_seconds": fit,
           **measure(fs, run.images, run.real, run.options, num_images, batch_size, seed)}
    return {**row, **{f"joules_per_image_{k}": row[f"matched_snn_joules_{k}"] for k in KEYS}}


def markdown(data: dict) -> str:
    """precision_plane.md: the ANN family and the SNN points per estimate, and who dominates whom."""
    model = results_model(data)
    named = model_flag(model)
    lines = ["# Quality against energy at matched precision", "",
             f"{model.words[0].upper()}{model.words[1:]}, {data['num_images']} images per row, {data['steps']} DDIM steps, seeds "
             f"{data['seed']}..; PSNR against the float32 original from the same noise, KID ({model.real} features) "
             f"against {model.real_words} (original {data['original_kid']:.5f}). Energy per image (uJ) under the three "
             "estimates "
             "of `spiking_ddim.energy.matched`, each network at its own weight widths (float32 or b-bit), the SNN's "
             "analog inputs at 16 bits, accumulators and state at their recorded widths (32 bits where none); the "
             "ANN rows are `eval/results/quantized_ann.json`'s. Break-even: spikes per neuron per call at which the "
             "point would cost what the ANN of its weight width costs (W8A8 for 8-bit synapses). Written by "
             f"`python eval/precision_plane.py{named}`.", "",
             "| network | PSNR (dB) | KID | spikes / neuron | " + " | ".join(
                 f"{TITLES[k]} (uJ) | break-even" for k in KEYS) + " | command |",
             "|---|---|---|---|" + "---|---|" * len(KEYS) + "---|"]
    for r in data["ann"]:
        psnr = "∞ (reference)" if r["psnr"] is None else f"{r['psnr']:.2f}"
        lines.append(f"| ANN {r['precision']} | {psnr} | {r['kid_mean']:.5f} | - | " + " | ".join(
            f"{r[f'joules_per_image_{k}'] * 1e6:.0f} | -" for k in KEYS) + f" | `python eval/quantized_ann.py{named}` |")
    for r in data["points"]:
        lines.append(f"| {r['label']} | {r['psnr']:.2f} | {r['kid_mean']:.5f} | {r['spikes_per_neuron']:.3f} | "
                     + " | ".join(f"{r[f'joules_per_image_{k}'] * 1e6:.0f} | {_even(r[f'break_even_{k}'])}"
                                  for k in KEYS) + f" | `spiking-ddim sample{named} {r['flags']}` |")
    lines += ["", "## Who dominates whom", ""] + [f"- {TITLES[k]}: {dominance(data, k)}" for k in KEYS]
    return "\n".join(lines) + "\n"


def _even(value: Optional[float]) -> str:
    return "never" if value is None else f"{value:.3f}"


def _points(data: dict, key: str) -> list[tuple[str, float, float]]:
    """(name, PSNR, uJ) of every row with a PSNR (the fp32 reference has none)."""
    rows = [(f"ANN {r['precision']}", r["psnr"], r[f"joules_per_image_{key}"]) for r in data["ann"]
            if r["psnr"] is not None]
    return rows + [(r["label"], r["psnr"], r[f"joules_per_image_{key}"]) for r in data["points"]]


def dominance(data: dict, key: str) -> str:
    """Which SNN points dominate the W8A8 ANN, and which ANN points dominate SNN points, under estimate ``key``."""
    rows = _points(data, key)
    w8a8 = next((r for r in rows if r[0] == "ANN W8A8"), None)
    beats = [n for n, p, e in rows if not n.startswith("ANN") and w8a8 and p >= w8a8[1] and e <= w8a8[2]]
    beaten = sorted({s for s, ps, es in rows if not s.startswith("ANN") for a, pa, ea in rows
                     if a.startswith("ANN") and pa >= ps and ea <= es})
    def names(points: list[str]) -> str:
        return "; ".join(f"'{n}'" for n in points) or "no SNN point"

    return (f"{names(beats)} {'dominate' if len(beats) > 1 else 'dominates'} the W8A8 ANN (at least its PSNR at no "
            f"more energy); {names(beaten)} {'are' if len(beaten) > 1 else 'is'} dominated by an ANN of the family.")


def plot(data: dict, path: Path) -> None:
    """PSNR and KID against energy per image, one column per estimate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(KEYS), figsize=(5.2 * len(KEYS), 8), squeeze=False)
    for col, key in enumerate(KEYS):
        for row, (metric, label) in enumerate((("psnr", "PSNR (dB)"), ("kid_mean", "KID"))):
            ax = axes[row][col]
            for group, marker, color in ((data["ann"], "s", "tab:gray"), (data["points"], "o", "tab:blue")):
                for r in group:
                    if r[metric] is None:
                        continue
                    x = r[f"joules_per_image_{key}"] * 1e6
                    name = r.get("label") or f"ANN {r['precision']}"
                    ax.scatter(x, r[metric], marker=marker, color=color)
                    ax.annotate(name, (x, r[metric]), fontsize=6, xytext=(3, 3), textcoords="offset points")
            w8a8 = next((r for r in data["ann"] if r["precision"] == "W8A8"), None)
            if w8a8 is not None:  # the baseline the targets name
                ax.axvline(w8a8[f"joules_per_image_{key}"] * 1e6, color="tab:gray", linestyle=":", linewidth=1)
            ax.set_xscale("log")
            if metric == "kid_mean":
                ax.set_yscale("log")
            ax.set_xlabel(f"uJ per image, {TITLES[key]}")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    fig.suptitle("ANN family (squares) and SNN points (circles) at matched weight widths; dotted: the W8A8 ANN's "
                 "energy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
