#!/usr/bin/env python
"""Per-step against delta coding on the embedded digits DDIM: quality, spikes and energy.

Each point converts the embedded DDIM (``ours-unet`` bank, no calibration) with one coding
at one K: ``step:K`` (every site sends its full K-step code at every denoising step) or
``delta:K:W`` (a run's first step sends the K-step code and its correction, later steps
signed codes of the change in min(K, 8) steps, the encoders fitted to 16 images' changes
with spike weight W, :func:`spiking_ddim.calibration.fit_delta`), or ``if:K``, the
rate-coded IF baseline (every site an integrate-and-fire neuron of T = K steps, thresholds
balanced on 16 images, :func:`spiking_ddim.calibration.rate_coded_if`). It samples
``--num-images`` images (``--steps`` DDIM steps, seeds SEED..SEED+N-1) and records the PSNR
against the original from the same noise, the KID (digits features) against the held-out
digits, spikes per neuron, and the energy per image and per step: SNN / ANN (45 nm
operation count, the headline), SNN / INT8 ANN, and both under the memory-aware estimate
(:mod:`spiking_ddim.memory`). ``--scan-steps`` then prices one image at each number of
denoising steps for the ANN and the scanned points (PSNR on ``--scan-images`` images;
delta encoders refitted at each number of steps, a fully spiking model's calibration kept
from ``--steps``).

Every point records ``coding``, ``spiking`` (``swish``: the Swish sites spike, the
other layers' inputs stay analog; ``all``, written ``step+all:K`` / ``delta+all:K:W``: every
conv / linear input but the first layer's is FS-coded too, and the model is calibrated,
which fits those encoders) and ``calibrated`` (``step+cal`` / ``delta+cal``: Swish only,
calibrated). Writes eval/results/delta_frontier.{json,md,png}, the
JSON after every point, so a long run leaves what it measured.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import matplotlib
import torch
from energy_frontier import original
from noise_floor import floor_line, load_floor
from tqdm import tqdm

from fs_neurons.utils.figures import new_figure, save_figure
from fs_neurons.utils.files import atomic_write_text
from spiking_ddim.calibration import calibrate, fit_delta, rate_coded_if
from spiking_ddim.defaults import DEFAULT_DELTA_K, DELTA_COSTS, DELTA_PRICES
from spiking_ddim.energy import measure_cost
from spiking_ddim.held_out import check_pipeline_held_out
from spiking_ddim.metrics import compare, generation_metrics, spread_cells
from spiking_ddim.pipelines import SamplingOptions, convert_pipeline
from spiking_ddim.sampling import generate_many

RESULTS = Path(__file__).resolve().parent / "results"
POINTS = ["step:8", "step:16", "delta:16:0.003", "delta:16:0.01", "delta:16:0.03", "delta:16:0.1",
          "delta:8:0.01", "delta:8:0.1", "delta:4:0.01", "delta:4:0.1"]
SPREAD = ("psnr_median", "psnr_p5", "share_below_30db")  # the per-image PSNR spread of a point
# The operating points the README names, labelled on the plot (the point grammar of --points).
NAMED = ["step:8", "step:16", "delta:8:0.0002:value:acs", "delta:4:0.003:value:acs:8",
         "delta+all:8:0.001:value:acs", "delta+all:4:0.002:value:acs:8", "if:8"]
# (coding, spiking): PSNR at least, at energy ratio at most
TARGETS = [("delta", "swish", 40.0, 0.40), ("delta", "swish", 35.0, 0.33), ("delta", "all", 35.0, 0.15)]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", nargs="*", default=POINTS, metavar="CODING:K[:W]",
                   help="points to measure: step:K, if:K or delta:K:W[:change|value[:spikes|acs[:DK]]] (W's price "
                        "and what it counts, fit_delta's price and cost, default change, spikes; DK: steps of a "
                        "change's code, default min(K, 8)); step+all / delta+all: "
                        "fully spiking, calibrated; step+cal / delta+cal: Swish sites only, calibrated "
                        "(default: %(default)s)")
    p.add_argument("--num-images", type=int, default=1000, help="images per point (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=100, help="sampling batch size (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed SEED+i (default: %(default)s)")
    p.add_argument("--eta", type=float, default=0.0,
                   help="DDIM eta of every run, the original's included: above 0 each step adds fresh noise, "
                        "so consecutive steps differ more (default: %(default)s)")
    p.add_argument("--scan-steps", type=int, nargs="*", default=[10, 20, 50],
                   help="denoising steps of the energy-per-step scan; none to skip it (default: %(default)s)")
    p.add_argument("--scan-points", nargs="*", default=["step:16", "delta:16:0.01"], metavar="CODING:K[:W]",
                   help="points priced at every --scan-steps (default: %(default)s)")
    p.add_argument("--scan-images", type=int, default=100, help="images per scan point (default: %(default)s)")
    p.add_argument("--out-dir", type=Path, default=RESULTS, help="where the results go (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing result files")
    p.add_argument("--replot", action="store_true", help="rewrite the .md and .png from the existing .json")
    p.add_argument("--add", action="store_true",
                   help="measure --points and add them to the existing .json (replacing points of the same coding, "
                        "spiking, K and W) with its settings; then the steps scan, unless --scan-steps is given empty")
    p.add_argument("--remeasure", action="store_true",
                   help="with --add: measure every point of the existing .json again, in its order (after a change "
                        "that can move them), instead of --points")
    args = p.parse_args(argv)
    if args.remeasure and not args.add:
        p.error("--remeasure re-measures the points of an existing .json: use it with --add")
    try:
        args.parsed = [parse_point(s) for s in args.points]
        args.scan_parsed = [parse_point(s) for s in args.scan_points]
    except ValueError as e:
        p.error(str(e))
    return args


def parse_point(text: str) -> dict:
    """``step:K``, ``if:K`` or ``delta:K:W[:PRICE[:COST]]``, the coding followed by ``+all`` for the
    fully spiking model (calibrated) or ``+cal`` for a calibrated Swish-only one; PRICE:
    what W is relative to, ``change`` (the default) or ``value``; COST: what it counts,
    ``spikes`` (the default) or ``acs`` (see :func:`spiking_ddim.calibration.fit_delta`);
    ``delta:K:W:PRICE:COST:DK``: changes coded in DK steps (default min(K, 8))
    -> {coding, spiking, calibrated, K, spike_weight, price, cost, delta_K}."""
    parts = text.split(":")
    coding, *extra = parts[0].split("+")
    try:
        if len(extra) <= 1 and set(extra) <= {"all", "cal"} and not (coding == "if" and extra):
            spiking = "all" if extra == ["all"] else "swish"
            fields = {"coding": coding, "spiking": spiking, "calibrated": bool(extra)}
            if coding in ("step", "if") and len(parts) == 2:
                return {**fields, "K": int(parts[1]), "spike_weight": None, "price": None, "cost": None,
                        "delta_K": None}
            pricing = parts[3:5] + ["change", "spikes"][len(parts[3:5]):]
            if (coding == "delta" and len(parts) in (3, 4, 5, 6) and pricing[0] in DELTA_PRICES
                    and pricing[1] in DELTA_COSTS):
                K = int(parts[1])
                return {**fields, "K": K, "spike_weight": float(parts[2]), "price": pricing[0], "cost": pricing[1],
                        "delta_K": int(parts[5]) if len(parts) == 6 else min(K, DEFAULT_DELTA_K)}
    except ValueError:
        pass
    raise ValueError("a point is step[+all|+cal]:K, if:K or delta[+all|+cal]:K:W[:change|value[:spikes|acs[:DK]]], "
                     f"got {text!r}")


def point_text(p: dict) -> str:
    """The --points text of a results point (the inverse of :func:`parse_point`)."""
    suffix = "+all" if p.get("spiking", "swish") == "all" else "+cal" if calibrated(p) else ""
    if p["coding"] != "delta":
        return f"{p['coding']}{suffix}:{p['K']}"
    return f"delta{suffix}:{p['K']}:{p['spike_weight']:g}:{price(p)}:{cost(p)}:{p.get('delta_K') or min(p['K'], 8)}"


def price(p: dict) -> str | None:
    """A delta point's spike price scale (points written before it was recorded: change)."""
    return p.get("price", "change") if p["coding"] == "delta" else None


def cost(p: dict) -> str | None:
    """What a delta point's spike price counts (points written before it was recorded: spikes)."""
    return p.get("cost", "spikes") if p["coding"] == "delta" else None


def pricing(p: dict) -> str:
    """A delta point's price and cost where they are not change and spikes: "value price",
    "by ACs", "value price, by ACs" or ""."""
    return ", ".join((["value price"] if price(p) == "value" else []) + (["by ACs"] if cost(p) == "acs" else []))


def calibrated(p: dict) -> bool:
    """Whether a point's model is calibrated (points written before this was recorded: the
    fully spiking ones)."""
    return p.get("calibrated", p.get("spiking", "swish") == "all")


# (K, coding, spiking) -> a calibrated pipeline, shared by its points: calibrated once, at the
# first number of steps it is used with (--steps; the steps scan reuses it and refits only delta encoders)
_CALIBRATED: dict = {}


def converted(plain, spec: dict, options: SamplingOptions) -> tuple:
    """The FS pipeline of a point (delta encoders fitted to ``options``' runs) and the seconds
    its fits took (a fully spiking model's calibration counted at its first point)."""
    coding = "delta" if spec["coding"] == "delta" else "step"
    key = (spec["K"], coding, spec["spiking"], calibrated(spec), spec["delta_K"])
    t0 = time.perf_counter()
    if key in _CALIBRATED:
        fs = copy.deepcopy(_CALIBRATED[key])
    else:
        fs = copy.deepcopy(plain)
        convert_pipeline(fs, K=spec["K"], coding=coding, spiking=spec["spiking"], delta_K=spec["delta_K"])
        if calibrated(spec):  # a fully spiking model's input encoders are fitted by calibration
            calibrate(fs, options)
            _CALIBRATED[key] = copy.deepcopy(fs)
    if spec["coding"] == "delta":
        fit_delta(fs, options, spike_weight=spec["spike_weight"], price=spec["price"], cost=spec["cost"])
    elif spec["coding"] == "if":
        rate_coded_if(fs, options)
    return fs, round(time.perf_counter() - t0, 1)


def energy_fields(energy) -> dict:
    m = energy.memory
    return {"energy_ratio": energy.ratio, "energy_ratio_int8": energy.ratio_int8,
            "memory_ratio": m["ratio"], "memory_ratio_int8": m["ratio_int8"],
            "snn_joules_per_image": energy.snn_joules_per_image, "snn_joules_per_step": energy.snn_joules_per_step,
            "ann_joules_per_image": energy.ann_joules_per_image, "ann_joules_per_step": energy.ann_joules_per_step,
            "memory_snn_joules_per_image": m["snn_joules_per_image"],
            "memory_ann_joules_per_image": m["ann_joules_per_image"],
            "memory_ann_int8_joules_per_image": m["ann_int8_joules_per_image"],
            "spikes_per_neuron": energy.spikes_per_neuron, "snn_acs_per_image": energy.snn_acs_per_image,
            "snn_macs_per_image": energy.snn_macs_per_image}


def measure(fs, reference: torch.Tensor, real, options: SamplingOptions, args, n: int) -> dict:
    check_pipeline_held_out(fs, args.seed, n)  # no scored image was seen by a fit
    with measure_cost(fs) as meter:
        images = generate_many(fs, n, options, args.batch_size, args.seed)
    m = compare(reference, images)
    out = {"psnr": m["mean_psnr"], **{k: m[k] for k in SPREAD}, **energy_fields(meter.report().energy(n))}
    if real is not None:
        kid = generation_metrics(real, images, "digits", metrics=("kid",))
        out.update(kid=kid.kid_mean, kid_std=kid.kid_std)
    return out


def coding_name(p: dict) -> str:
    coding = "rate-coded IF" if p["coding"] == "if" else p["coding"]
    return coding + (" + fully spiking" if p.get("spiking", "swish") == "all" else
                     " (calibrated)" if calibrated(p) else "")


def name(p: dict) -> str:
    return f"{coding_name(p)} K={k_label(p)}" + (f", W={p['spike_weight']:g}" if p["coding"] == "delta" else "") + (
        f" ({pricing(p)})" if pricing(p) else "")


def k_label(p: dict) -> str:
    """``4``, or ``4/8`` for a delta point whose changes are coded in other than min(K, 8) steps."""
    default = p["coding"] != "delta" or p.get("delta_K") in (None, min(p["K"], DEFAULT_DELTA_K))
    return f"{p['K']}" + ("" if default else f"/{p['delta_K']}")


def point(spec: dict, fs, seconds: float, reference, real, options, args) -> dict:
    return {**spec, "fit_seconds": seconds, **measure(fs, reference, real, options, args, args.num_images)}


def write(args, data: dict) -> None:
    atomic_write_text(args.out_dir / "delta_frontier.json", json.dumps(data, indent=1) + "\n")
    points, ann_kid = data["points"], data["original_kid"]
    lines = ["# Per-step against delta coding: the embedded digits DDIM", "",
             f"{data['num_images']} images per point, {data['steps']} DDIM steps (eta {data['eta']:g}), seeds "
             f"{data['seed']}..; PSNR "
             f"against the original from the same noise (of the mean MSE; median / p5: the median and "
             f"5th-percentile per-image PSNR; < 30 dB: the share of images below 30 dB); KID (digits features) against held-out digits (original: "
             f"{ann_kid:.5f}). Energy per image, SNN over ANN: the 45 nm operation count (4.6 pJ / MAC, 0.9 pJ / AC; "
             "the headline), against an INT8 ANN (0.23 pJ / MAC), and the memory-aware estimate (Lemaire et al., "
             "`spiking_ddim.memory`) against the 32-bit and the INT8 ANN. Spiking the Swish sites only (every other "
             "layer's input analog): not calibrated unless marked; fully spiking (every conv / linear input but the first "
             "layer's; attention score matmuls analog): calibrated, all sites. Delta: encoders of min(K, "
             f"{DEFAULT_DELTA_K}) steps (K/DK: DK steps) fitted to 16 images' changes with spike weight W, the price "
             "of a spike relative to the site's mean squared change or, marked value price, to its mean squared activation; marked by ACs: "
             "each site's spikes priced by the accumulates they cause downstream. Written by "
             "`python eval/delta_frontier.py`.", "", floor_line(load_floor(args.out_dir)), "",
             "| coding | K | W | PSNR (dB) | median / p5 (dB) | < 30 dB | KID | spikes/neuron/call | energy SNN/ANN | vs INT8 ANN "
             "| memory-aware SNN/ANN | memory-aware vs INT8 ANN | fit (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        w = "-" if p["spike_weight"] is None else f"{p['spike_weight']:g}" + (f" ({pricing(p)})" if pricing(p) else "")
        lines.append(f"| {coding_name(p)} | {k_label(p)} | {w} | {p['psnr']:.2f} | {spread_cells(p)} | {p['kid']:.5f} | "
                     f"{p['spikes_per_neuron']:.3f} | {p['energy_ratio']:.3f} | {p['energy_ratio_int8']:.2f} | "
                     f"{p['memory_ratio']:.3f} | {p['memory_ratio_int8']:.2f} | {p['fit_seconds']} |")
    lines += ["", "Targets (45 nm count): " + "; ".join(
        f"{coding_name({'coding': c, 'spiking': sp})}: PSNR >= {q} dB at energy <= {e}" for c, sp, q, e in TARGETS)
        + f"; KID within 50% of the original's (at most {1.5 * ann_kid:.5f})"]
    for coding, spiking, q, e in TARGETS:
        mine = [p for p in points if p["coding"] == coding and p.get("spiking", "swish") == spiking]
        met = [p for p in mine if p["energy_ratio"] <= e and p["psnr"] >= q]
        near = [p for p in mine if p["energy_ratio"] <= e]
        best = max(near, key=lambda p: p["psnr"]) if near else None
        lines.append(f"- {coding_name({'coding': coding, 'spiking': spiking})}, PSNR >= {q} dB at energy <= {e}: " + (
            "met by " + ", ".join(f"{name(p)} ({p['psnr']:.2f} dB at {p['energy_ratio']:.3f}, KID "
                                  f"{p['kid']:.5f})" for p in met) if met else
            "not met" + (f" (best at energy <= {e}: {name(best)}, {best['psnr']:.2f} dB)" if best else
                         " (no point that low)")))
    if data.get("scan"):
        steps = data["scan_steps"]
        base = data["steps"] if data["steps"] in steps else steps[0]
        lines += ["", "Energy per image against denoising steps (45 nm count; PSNR on "
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
        lines += ["", f"Target: under delta + fully spiking coding, energy per image at {steps[-1]} steps at most "
                  f"1.6x its {base}-step value (the ANN: {steps[-1] / base:.1f}x), at equal or better PSNR."]
    atomic_write_text(args.out_dir / "delta_frontier.md", "\n".join(lines) + "\n")
    plot(args, data)


def family(p: dict) -> str:
    """A point's coding family, one curve in the plot: its coding, and whether it is fully
    spiking or calibrated (K, W and the price are the table's business)."""
    return coding_name(p)


def pareto(points: list[dict]) -> list[dict]:
    """The points no other point beats on both PSNR and energy, by rising energy."""
    front = []
    for p in sorted(points, key=lambda p: (p["energy_ratio"], -p["psnr"])):
        if not front or p["psnr"] > front[-1]["psnr"]:
            front.append(p)
    return front


def plot(args, data: dict) -> None:
    """delta_frontier.png: every point, one colour and one line (its Pareto front) per coding
    family; the operating points the README names (``NAMED``) labelled; the targets as
    crosses; beside it, energy per image against denoising steps when scanned."""
    scanned = bool(data.get("scan"))
    fig, axes = new_figure(1, 2 if scanned else 1, figsize=(15 if scanned else 9, 5.5), squeeze=False)
    ax = axes[0][0]
    families = list(dict.fromkeys(family(p) for p in sorted(data["points"], key=lambda p: (p["coding"], family(p)))))
    colors = matplotlib.colormaps["tab10"].colors
    markers = {"step": "o", "delta": "s", "if": "^"}
    for n, fam in enumerate(families):
        mine = [p for p in data["points"] if family(p) == fam]
        color = colors[n % len(colors)]
        ax.scatter([p["energy_ratio"] for p in mine], [p["psnr"] for p in mine], color=color, alpha=0.35, s=18,
                   marker=markers[mine[0]["coding"]])
        front = pareto(mine)
        ax.plot([p["energy_ratio"] for p in front], [p["psnr"] for p in front], color=color,
                marker=markers[mine[0]["coding"]], linestyle="--" if "fully" in fam else "-",
                label=f"{fam} ({len(mine)} points; line: best PSNR per energy)")
    key = lambda p: (p["coding"], p.get("spiking", "swish"), calibrated(p), p["K"], p["spike_weight"],  # noqa: E731
                     price(p), cost(p), p.get("delta_K"))
    named = {key(parse_point(text)): text for text in NAMED}
    for p in data["points"]:
        if key(p) in named:
            ax.annotate(f"{'delta' if p['coding'] == 'delta' else p['coding']}{'+all' if p.get('spiking') == 'all' else ''}"
                        f" K={k_label(p)}" + (f" W={p['spike_weight']:g}" if p["spike_weight"] is not None else "")
                        + f"\n{p['psnr']:.2f} dB at {p['energy_ratio']:.3f}", (p["energy_ratio"], p["psnr"]),
                        textcoords="offset points", xytext=(8, -4), fontsize=7,
                        arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.4"})
    for i, (_, _, q, e) in enumerate(TARGETS):
        ax.plot([e], [q], marker="X", color="k", markersize=8, linestyle="none",
                label="targets (PSNR at least, energy at most)" if i == 0 else None)
    ax.set_xlabel("energy per image, SNN / ANN (45 nm operation count)")
    ax.set_ylabel("PSNR against the original (dB, of the mean MSE)")
    ax.set_title("quality per energy: labelled points are the README's operating points; all points in the table")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
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
    save_figure(fig, args.out_dir / "delta_frontier.png")


def scan(args, plain, data: dict) -> None:
    """Energy per image at each of --scan-steps for the ANN and the --scan-points."""
    rows = {"ANN": []} | {name(s): [] for s in args.scan_parsed}
    kept = [row for row in data.get("scan") or [] if row["model"] not in rows  # --add: complete rows of others
            and [e["steps"] for e in row["by_steps"]] == args.scan_steps]
    for steps in tqdm(args.scan_steps, desc="steps scan", unit="setting", dynamic_ncols=True):
        options = SamplingOptions(steps=steps, eta=args.eta)
        with measure_cost(plain) as meter:
            reference = generate_many(plain, args.scan_images, options, args.batch_size, args.seed)
        ann = meter.report().energy(args.scan_images)
        rows["ANN"].append({"steps": steps, "snn_joules_per_image": ann.ann_joules_per_image})
        for spec in args.scan_parsed:
            fs, _ = converted(plain, spec, options)
            rows[name(spec)].append({"steps": steps, **measure(fs, reference, None, options, args, args.scan_images)})
        data["scan"] = [{"model": m, "by_steps": r} for m, r in rows.items()] + kept
        data["scan_steps"] = args.scan_steps[:len(rows["ANN"])]
        write(args, data)


def add_points(args) -> int:
    """--add: measure --points with the existing results' settings and merge them in."""
    data = json.loads((args.out_dir / "delta_frontier.json").read_text())
    args.num_images, args.steps, args.seed, args.eta = data["num_images"], data["steps"], data["seed"], data["eta"]
    plain, real, reference, _ = original(args, args.eta)
    options = args.options
    key = lambda p: (p["coding"], p.get("spiking", "swish"), calibrated(p), p["K"], p["spike_weight"],  # noqa: E731
                     price(p), cost(p), p.get("delta_K"))
    if args.remeasure:
        args.parsed = [parse_point(point_text(p)) for p in data["points"]]
    for spec in tqdm(args.parsed, desc="points", unit="point", dynamic_ncols=True):
        fs, seconds = converted(plain, spec, options)
        new = point(spec, fs, seconds, reference, real, options, args)
        at = next((i for i, p in enumerate(data["points"]) if key(p) == key(new)), len(data["points"]))
        data["points"] = data["points"][:at] + [new] + [p for p in data["points"][at:] if key(p) != key(new)]
        write(args, data)
    if args.scan_steps:
        scan(args, plain, data)
    print((args.out_dir / "delta_frontier.md").read_text())
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.replot:
        write(args, json.loads((args.out_dir / "delta_frontier.json").read_text()))
        print((args.out_dir / "delta_frontier.md").read_text())
        return 0
    if args.add:
        return add_points(args)
    outs = [args.out_dir / f"delta_frontier.{x}" for x in ("json", "md", "png")]
    if any(o.exists() for o in outs) and not args.overwrite:
        print(f"error: {args.out_dir}/delta_frontier.* exist; pass --overwrite to replace them", file=sys.stderr)
        return 2
    plain, real, reference, original_kid = original(args, args.eta)
    options = args.options
    data = {"num_images": args.num_images, "steps": args.steps, "eta": args.eta, "seed": args.seed,
            "original_kid": original_kid,
            "scan_images": args.scan_images, "points": []}
    for spec in tqdm(args.parsed, desc="points", unit="point", dynamic_ncols=True):
        fs, seconds = converted(plain, spec, options)
        data["points"].append(point(spec, fs, seconds, reference, real, options, args))
        write(args, data)
    if args.scan_steps:
        scan(args, plain, data)
    print((args.out_dir / "delta_frontier.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
