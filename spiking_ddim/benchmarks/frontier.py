"""The coding frontier (``eval/delta_frontier.py``): points of every coding measured from
the same noise, their table and their plot.

:class:`PointModels` makes each point's model by the package's one recipe
(:func:`spiking_ddim.recipe.prepare`), a calibrated model's points sharing one calibration;
:func:`markdown` and :func:`plot` present a frontier's results (a dict with the settings,
``points`` of :mod:`.points`' fields plus :mod:`.rows`' keys, and an optional steps ``scan``).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Optional

from diffusers import DiffusionPipeline

from ..calibration import rate_coded_if
from ..codings.delta import MOST_STEPS
from ..embedded import model_flag, results_model
from ..metrics import spread_cells
from ..pipelines import SamplingOptions
from ..recipe import prepare
from .points import calibrated, family, k_label, parse_point, point_key, point_name, point_spec, pricing, short_name

# (coding, spiking, PSNR at least, energy ratio at most)
Target = tuple[str, str, float, float]


class PointModels:
    """Each point's FS pipeline, made from ``plain`` by :func:`~spiking_ddim.recipe.prepare`:
    a calibrated model is calibrated once, at the first number of steps it is used with, and
    its later points (another spike weight, another number of steps) refit only their
    coding's encoders."""

    def __init__(self, plain: DiffusionPipeline):
        self.plain, self.calibrated = plain, {}

    def get(self, p: dict, options: SamplingOptions) -> tuple[DiffusionPipeline, float]:
        """The pipeline of point ``p`` with its encoders fitted to ``options``' runs, and the
        seconds its fits took (a calibrated model's calibration counted at its first point)."""
        spec = point_spec(p)
        key = (p["K"], spec.coding.name, p["spiking"], calibrated(p), p["delta_K"])
        t0 = time.perf_counter()
        if key in self.calibrated:
            fs = copy.deepcopy(self.calibrated[key])
            spec.coding.fit(fs, options, seed=spec.seed)
        else:
            fs = copy.deepcopy(self.plain)
            prepare(fs, spec, options)
            if spec.calibrate:
                self.calibrated[key] = copy.deepcopy(fs)
        if p["coding"] == "if":
            rate_coded_if(fs, options)
        return fs, round(time.perf_counter() - t0, 1)


def pareto(points: list[dict]) -> list[dict]:
    """The points no other point beats on both PSNR and energy, by rising energy."""
    front = []
    for p in sorted(points, key=lambda p: (p["energy_ratio"], -p["psnr"])):
        if not front or p["psnr"] > front[-1]["psnr"]:
            front.append(p)
    return front


def _target_lines(points: list[dict], targets: list[Target], ann_kid: float) -> list[str]:
    lines = ["", "Targets (45 nm count): " + "; ".join(
        f"{family({'coding': c, 'spiking': sp})}: PSNR >= {q} dB at energy <= {e}" for c, sp, q, e in targets)
        + f"; KID within 50% of the original's (at most {1.5 * ann_kid:.5f})"]
    for coding, spiking, q, e in targets:
        mine = [p for p in points if p["coding"] == coding and p.get("spiking", "swish") == spiking]
        met = [p for p in mine if p["energy_ratio"] <= e and p["psnr"] >= q]
        near = [p for p in mine if p["energy_ratio"] <= e]
        best = max(near, key=lambda p: p["psnr"]) if near else None
        lines.append(f"- {family({'coding': coding, 'spiking': spiking})}, PSNR >= {q} dB at energy <= {e}: " + (
            "met by " + ", ".join(f"{point_name(p)} ({p['psnr']:.2f} dB at {p['energy_ratio']:.3f}, KID "
                                  f"{p['kid_mean']:.5f})" for p in met) if met else
            "not met" + (f" (best at energy <= {e}: {point_name(best)}, {best['psnr']:.2f} dB)" if best else
                         " (no point that low)")))
    return lines


def _scan_lines(data: dict) -> list[str]:
    steps = data["scan_steps"]
    base = data["steps"] if data["steps"] in steps else steps[0]
    lines = ["", "Energy per image against denoising steps (45 nm count; PSNR on "
             f"{data['scan_images']} images; delta encoders refitted at each number of steps):", "",
             "| model | " + " | ".join(f"{s} steps" for s in steps) + f" | {steps[-1]} / {base} steps |",
             "|---|" + "---|" * (len(steps) + 1)]
    for row in data["scan"]:
        by = {e["steps"]: e for e in row["by_steps"]}
        cells = [("-" if n not in by else f"{by[n]['snn_joules_per_image']:.3e} J ({by[n]['psnr']:.1f} dB)"
                  if "psnr" in by[n] else f"{by[n]['snn_joules_per_image']:.3e} J") for n in steps]
        at = {n: e["snn_joules_per_image"] for n, e in by.items()}
        growth = f"{at[steps[-1]] / at[base]:.2f}x" if steps[-1] in at and base in at else "-"
        lines.append(f"| {row['model']} | " + " | ".join(cells) + f" | {growth} |")
    return lines + ["", f"Target: under delta + fully spiking coding, energy per image at {steps[-1]} steps at most "
                    f"1.6x its {base}-step value (the ANN: {steps[-1] / base:.1f}x), at equal or better PSNR."]


def markdown(data: dict, targets: list[Target], floor: str) -> str:
    """delta_frontier.md: the settings, the noise ``floor`` sentence, one row per point, the
    ``targets`` met or missed, and the steps scan when there is one."""
    points, ann_kid = data["points"], data["original_kid"]
    model = results_model(data)
    lines = [f"# Per-step against delta coding: {model.words}", "",
             f"{data['num_images']} images per point, {data['steps']} DDIM steps (eta {data['eta']:g}), seeds "
             f"{data['seed']}..; PSNR "
             f"against the original from the same noise (of the mean MSE; median / p5: the median and "
             f"5th-percentile per-image PSNR; < 30 dB: the share of images below 30 dB); KID ({model.real} features) against {model.real_words} (original: "
             f"{ann_kid:.5f}). Energy per image, SNN over ANN: the 45 nm operation count (4.6 pJ / MAC, 0.9 pJ / AC; "
             "the headline), against an INT8 ANN (0.23 pJ / MAC), and the memory-aware estimate (Lemaire et al., "
             "`spiking_ddim.memory`) against the 32-bit and the INT8 ANN. Spiking the Swish sites only (every other "
             "layer's input analog): not calibrated unless marked; fully spiking (every conv / linear input but the first "
             "layer's; attention score matmuls analog): calibrated, all sites. Delta: encoders of min(K, "
             f"{MOST_STEPS}) steps (K/DK: DK steps) fitted to 16 images' changes with spike weight W, the price "
             "of a spike relative to the site's mean squared change or, marked value price, to its mean squared activation; marked by ACs: "
             "each site's spikes priced by the accumulates they cause downstream. Written by "
             f"`python eval/delta_frontier.py{model_flag(model)}`.", "", floor, "",
             "| coding | K | W | PSNR (dB) | median / p5 (dB) | < 30 dB | KID | spikes/neuron/call | energy SNN/ANN | vs INT8 ANN "
             "| memory-aware SNN/ANN | memory-aware vs INT8 ANN | fit (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        w = "-" if p["spike_weight"] is None else f"{p['spike_weight']:g}" + (f" ({pricing(p)})" if pricing(p) else "")
        lines.append(f"| {family(p)} | {k_label(p)} | {w} | {p['psnr']:.2f} | {spread_cells(p)} | {p['kid_mean']:.5f} | "
                     f"{p['spikes_per_neuron']:.3f} | {p['energy_ratio']:.3f} | {p['energy_ratio_int8']:.2f} | "
                     f"{p['memory_ratio']:.3f} | {p['memory_ratio_int8']:.2f} | {p['fit_seconds']} |")
    lines += _target_lines(points, targets, ann_kid)
    if data.get("scan"):
        lines += _scan_lines(data)
    return "\n".join(lines) + "\n"


def _plot_points(ax, points: list[dict], named: list[str], targets: list[Target]) -> None:
    import matplotlib

    families = list(dict.fromkeys(family(p) for p in sorted(points, key=lambda p: (p["coding"], family(p)))))
    colors = matplotlib.colormaps["tab10"].colors
    markers = {"step": "o", "delta": "s", "if": "^"}
    for n, fam in enumerate(families):
        mine = [p for p in points if family(p) == fam]
        color = colors[n % len(colors)]
        ax.scatter([p["energy_ratio"] for p in mine], [p["psnr"] for p in mine], color=color, alpha=0.35, s=18,
                   marker=markers[mine[0]["coding"]])
        front = pareto(mine)
        ax.plot([p["energy_ratio"] for p in front], [p["psnr"] for p in front], color=color,
                marker=markers[mine[0]["coding"]], linestyle="--" if "fully" in fam else "-",
                label=f"{fam} ({len(mine)} points; line: best PSNR per energy)")
    labelled = {point_key(parse_point(text)) for text in named}
    for p in points:
        if point_key(p) in labelled:
            ax.annotate(f"{short_name(p)}\n{p['psnr']:.2f} dB at {p['energy_ratio']:.3f}", (p["energy_ratio"], p["psnr"]),
                        textcoords="offset points", xytext=(8, -4), fontsize=7,
                        arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.4"})
    for i, (_, _, q, e) in enumerate(targets):
        ax.plot([e], [q], marker="X", color="k", markersize=8, linestyle="none",
                label="targets (PSNR at least, energy at most)" if i == 0 else None)
    ax.set_xlabel("energy per image, SNN / ANN (45 nm operation count)")
    ax.set_ylabel("PSNR against the original (dB, of the mean MSE)")
    ax.set_title("quality per energy: labelled points are the README's operating points; all points in the table")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


def plot(data: dict, path: Path, named: Optional[list[str]] = None, targets: Optional[list[Target]] = None) -> None:
    """delta_frontier.png: every point, one colour and one line (its Pareto front) per coding
    family; the ``named`` points (their texts) labelled; the ``targets`` as crosses; beside
    it, energy per image against denoising steps when scanned."""
    from fs_neurons.utils.figures import new_figure, save_figure

    scanned = bool(data.get("scan"))
    fig, axes = new_figure(1, 2 if scanned else 1, figsize=(15 if scanned else 9, 5.5), squeeze=False)
    _plot_points(axes[0][0], data["points"], named or [], targets or [])
    if scanned:
        ax = axes[0][1]
        for row in data["scan"]:
            ax.plot([e["steps"] for e in row["by_steps"]], [e["snn_joules_per_image"] * 1e3 for e in row["by_steps"]],
                    marker="o", label=row["model"])
        ax.set_xlabel("denoising steps")
        ax.set_ylabel("energy per image (mJ, 45 nm)")
        ax.set_title("energy per image against steps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)


__all__ = ["PointModels", "Target", "markdown", "pareto", "plot"]
