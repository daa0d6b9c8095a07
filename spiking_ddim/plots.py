"""PNG plots of spiking models: original and FS images side by side, firing rate per FS
site, energy by operation type.

The cost plots take several runs (e.g. one per K) as plain mappings, so a benchmark can
plot rows it stored: firing rates as {run: {site name: spikes per neuron per call}} in
network order, energy as {run: EnergyReport.by_kind}.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from fs_neurons.utils.figures import new_figure, save_figure

from .energy import EnergyConstants, network_part

PART_COLOURS = {"time": "tab:gray", "in": "tab:cyan", "down": "tab:blue", "mid": "tab:purple", "up": "tab:orange",
                "out": "tab:green", "other": "tab:brown"}
KIND_NAMES = {"conv": "conv", "linear": "linear", "matmul": "attention matmul"}
PathLike = Union[str, Path]


def plot_comparison(original: np.ndarray, fs: np.ndarray, path: PathLike, psnr: Sequence[float], title: str,
                    cols: int = 8) -> Path:
    """Original and FS images of the same noise, in labelled row pairs (``original`` over
    ``FS``), each FS image with its PSNR (dB) against the original; images shown at least
    96 pixels wide, without smoothing. ``original`` and ``fs``: (N, H, W, C) uint8."""
    if original.shape != fs.shape or original.ndim != 4 or len(original) == 0:
        raise ValueError(f"need two equal non-empty (N, H, W, C) stacks, got {original.shape} and {fs.shape}")
    n = len(original)
    cols = min(cols, n)
    groups = (n + cols - 1) // cols
    fig, axes = new_figure(2 * groups, cols, figsize=(1.25 * cols + 0.9, 2.7 * groups + 0.5), squeeze=False)
    grey = original.shape[-1] == 1
    for g in range(groups):
        for c in range(cols):
            i = g * cols + c
            for r, (images, label) in enumerate(((original, "original"), (fs, "FS"))):
                ax = axes[2 * g + r, c]
                ax.set_xticks([])
                ax.set_yticks([])
                if i >= n:
                    ax.axis("off")
                    continue
                im = images[i][..., 0] if grey else images[i]
                ax.imshow(im, cmap="gray" if grey else None, vmin=0, vmax=255, interpolation="nearest")
                if r == 0:
                    ax.set_title(f"#{i}", fontsize=7)
                else:
                    ax.set_xlabel(f"{psnr[i]:.1f} dB", fontsize=7)
                if c == 0:
                    ax.set_ylabel(label, fontsize=9)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def plot_firing_rates(runs: Mapping[str, Mapping[str, float]], path: PathLike, K: Optional[int] = None,
                      break_even: Optional[float] = None, title: str = "") -> Path:
    """Spikes per neuron per call of every FS site, one line per run, sites in network order
    (the first run's) on a background shaded by where they sit (time embedding, down, mid,
    up, output). Optional lines: ``K`` (the most a neuron can fire) and ``break_even``
    (E_MAC / E_AC: above it a site's spikes cost more than the MACs they replace)."""
    runs = {label: rates for label, rates in runs.items() if rates}
    if not runs:
        raise ValueError("no FS site spiked in these runs; is the model converted and in mode 'fs'?")
    names = list(next(iter(runs.values())))
    fig, ax = new_figure(figsize=(max(7.0, 0.16 * len(names) + 3), 4.0))
    start = 0
    for i, name in enumerate(names + [None]):
        part = network_part(names[start])
        if name is None or network_part(name) != part:
            ax.axvspan(start - 0.5, i - 0.5, color=PART_COLOURS.get(part, "tab:brown"), alpha=0.12, lw=0)
            ax.text((start + i - 1) / 2, 1.0, part, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                    fontsize=8, color=PART_COLOURS.get(part, "tab:brown"))
            start = i
    for label, rates in runs.items():
        ax.plot(range(len(names)), [rates.get(n, float("nan")) for n in names], "o-", ms=3, lw=1, label=label)
    if K is not None:
        ax.axhline(K, color="black", lw=0.8, ls=":", label=f"K = {K} (at most)")
    if break_even is not None and math.isfinite(break_even):
        ax.axhline(break_even, color="red", lw=0.8, ls="--", label=f"break-even E_MAC / E_AC = {break_even:.2f}")
    ax.set_xlabel("FS site, in network order")
    ax.set_ylabel("spikes per neuron per call")
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_ylim(bottom=0)
    ax.set_title(title or "firing rate per FS site", pad=14)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def plot_energy_split(runs: Mapping[str, Mapping[str, Mapping[str, float]]], constants: EnergyConstants,
                      path: PathLike, title: str = "", steps: Optional[int] = None,
                      memory: Optional[Mapping[str, Mapping]] = None) -> Path:
    """Energy per image (mJ), stacked by operation (dense MACs of conv, linear and
    attention-matmul layers; ACs of spike-fed conv and linear layers): one bar for the ANN
    (from the first run's MACs), one for the same ANN with 8-bit integer MACs, one per SNN
    run; ``steps``, the denoising steps per image, goes in the title. ``memory`` ({run:
    EnergyReport.memory}, the runs' labels) adds a panel of the memory-aware estimate
    (:mod:`spiking_ddim.memory`), stacked by operations, weight, activation and neuron-state
    accesses, with the INT8 ANN's total beside the 32-bit ANN's."""
    if not runs:
        raise ValueError("no runs to plot")
    mac, ac = constants.mac_pj * 1e-9, constants.ac_pj * 1e-9  # mJ per operation
    first = next(iter(runs.values()))
    bars = {"ANN": {(k, "MACs"): v["ann_macs"] * mac for k, v in first.items()},
            "INT8 ANN": {(k, "MACs"): v["ann_macs"] * constants.int8_mac_pj * 1e-9 for k, v in first.items()}}
    for label, kinds in runs.items():
        bars[label] = {**{(k, "MACs"): v["snn_macs"] * mac for k, v in kinds.items()},
                       **{(k, "ACs"): v["snn_acs"] * ac for k, v in kinds.items() if v["snn_acs"]}}
    segments = list(dict.fromkeys(seg for bar in bars.values() for seg in bar))
    segments.sort(key=lambda seg: (seg[1] == "ACs", list(KIND_NAMES).index(seg[0]) if seg[0] in KIND_NAMES else 9))
    width = 4.5 + 0.9 * len(bars)
    fig, axes = new_figure(1, 2 if memory else 1, figsize=(2 * width if memory else width, 4.4))
    ax = axes[0] if memory else axes
    per = f"{steps} denoising steps, " if steps is not None else ""
    _stacked(ax, {label: {f"{KIND_NAMES.get(k, k)} {what}": v for (k, what), v in bar.items()}
                  for label, bar in bars.items()}, [f"{KIND_NAMES.get(k, k)} {what}" for k, what in segments],
             hatched=lambda name: name.endswith(" ACs"))
    ax.set_title(title or f"energy per image ({per}{constants.mac_pj} pJ/MAC, {constants.ac_pj} pJ/AC, "
                          f"INT8 {constants.int8_mac_pj} pJ/MAC)", fontsize=9)
    if memory:
        m0 = next(iter(memory.values()))
        mbars = {"ANN": m0["ann_breakdown"], "INT8 ANN": {"INT8 ANN, all": m0["ann_int8_joules_per_image"]},
                 **{label: m["snn_breakdown"] for label, m in memory.items()}}
        mbars = {label: {k: v * 1e3 for k, v in bar.items()} for label, bar in mbars.items()}
        _stacked(axes[1], mbars, ["ops", "weights", "activations", "state", "INT8 ANN, all"], hatched=lambda name: False)
        axes[1].set_title(f"memory-aware estimate (Lemaire et al.; SRAM by buffer size), {per}per image", fontsize=9)
    return save_figure(fig, path)


def _stacked(ax, bars: Mapping[str, Mapping[str, float]], segments: Sequence[str], hatched) -> None:
    """Stacked bars (mJ), one per label, segments in the given order, totals under the labels."""
    from matplotlib import colormaps

    colours = colormaps["tab10"].colors
    segments = [seg for seg in segments if any(seg in bar for bar in bars.values())]
    bottom = [0.0] * len(bars)
    for i, seg in enumerate(segments):
        heights = [bar.get(seg, 0.0) for bar in bars.values()]
        ax.bar(range(len(bars)), heights, bottom=bottom, label=seg, color=colours[i % 10],
               hatch="//" if hatched(seg) else None, edgecolor="white")
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_xticks(range(len(bars)), [f"{label}\n{total:.3g} mJ" for label, total in zip(bars, bottom)], fontsize=8)
    ax.set_ylabel("energy per image (mJ)")
    ax.set_ylim(0, max(bottom) * 1.08)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
