#!/usr/bin/env python
"""The quality-per-energy frontier of budgeted calibration on the embedded digits DDIM.

For each K: convert (``ours-unet``), fit every site's options once
(:func:`spiking_ddim.calibration.fit_site_options`: plain fit, a grid of spike weights,
silent), then for the plain calibration and each SNN/ANN energy budget of the sweep
choose the sites' options (:func:`apply_budget`) and sample ``--num-images`` images
(``--steps`` DDIM steps, seeds SEED..SEED+N-1, as ``eval/ddim_table.py``): PSNR against
the original from the same noise, KID (digits features) against the held-out digits, and
the measured SNN/ANN energy per image. The unconstrained calibrated rows of
``eval/results/ddim_table.json`` (``ours-unet+cal``, every K) are the baseline the
frontier must dominate: every budgeted point at least the PSNR of the calibrated model of
equal or next higher energy. ``--finetuned DIR ...`` adds the points of budgeted models
fine-tuned since (``spiking-ddim train snn --calibrate --energy-budget R --train-unet
--freeze-neurons``) to the existing results, without a new search.

Budgets choose among per-step codes, so every point here is ``coding="step"``,
``spiking="swish"`` (recorded with each point, with the SNN / INT8-ANN and memory-aware
ratios since those were added); the frontier of the other codings (delta, fully spiking,
the IF baseline) is ``eval/delta_frontier.py``.

Writes eval/results/energy_frontier.{json,md,png}.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
from noise_floor import floor_line, load_floor
from tqdm import tqdm

from fs_neurons.utils.figures import new_figure, save_figure
from fs_neurons.utils.files import atomic_write_text
from spiking_ddim.calibration import SpikeBudget, apply_budget, fit_site_options
from spiking_ddim.cli.common import StageBars
from spiking_ddim.defaults import DEFAULT_MODEL
from spiking_ddim.energy import measure_cost
from spiking_ddim.held_out import check_pipeline_held_out
from spiking_ddim.metrics import compare, extract_features, generation_metrics, spread_cells
from spiking_ddim.pipelines import SamplingOptions, convert_pipeline, load_pipeline
from spiking_ddim.sampling import generate_many

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {8: (0.40, 30.0), 16: (0.60, 34.0)}  # K: (energy ratio at most, at PSNR at least)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--K", type=int, nargs="+", default=[8, 16], help="time steps (default: %(default)s)")
    p.add_argument("--budgets", type=float, nargs="+", default=[0.6, 0.5, 0.45, 0.4],
                   help="SNN/ANN energy budgets of the sweep, for every K (default: %(default)s)")
    p.add_argument("--num-images", type=int, default=1000, help="images per point (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=100, help="sampling batch size (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed SEED+i (default: %(default)s)")
    p.add_argument("--table", type=Path, default=RESULTS / "ddim_table.json",
                   help="the network table whose ours-unet+cal rows are the baseline (default: %(default)s)")
    p.add_argument("--out-dir", type=Path, default=RESULTS, help="where the results go (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace existing result files")
    p.add_argument("--finetuned", type=Path, nargs="+", metavar="DIR",
                   help="converted pipelines fine-tuned under a budget: sample each and add its point to the "
                        "existing energy_frontier.json (replacing one of the same K, budget and run name)")
    p.add_argument("--keep-finetuned", action="store_true",
                   help="with --overwrite: keep the fine-tuned points of the existing energy_frontier.json as they "
                        "were measured (their models are not sampled again)")
    p.add_argument("--replot", action="store_true",
                   help="rewrite the .md and .png from the existing energy_frontier.json (no sampling)")
    return p.parse_args(argv)


def point(pipe, reference: torch.Tensor, real, args, K: int, budget, finetuned: str = None) -> dict:
    check_pipeline_held_out(pipe, args.seed, args.num_images)  # no scored image was seen by a fit
    with measure_cost(pipe) as meter:
        images = generate_many(pipe, args.num_images, args.options, args.batch_size, args.seed)
    energy = meter.report().energy(args.num_images)
    kid = generation_metrics(real, images, "digits", metrics=("kid",))
    spec = pipe.unet.fs_config
    m = compare(reference, images)
    return {"K": K, "budget": budget, "finetuned": finetuned, "coding": spec.coding, "spiking": spec.spiking,
            "psnr": m["mean_psnr"], "psnr_median": m["psnr_median"], "psnr_p5": m["psnr_p5"],
            "share_below_30db": m["share_below_30db"], "kid": kid.kid_mean, "kid_std": kid.kid_std,
            "energy_ratio": energy.ratio, "energy_ratio_int8": energy.ratio_int8,
            "memory_ratio": energy.memory["ratio"], "memory_ratio_int8": energy.memory["ratio_int8"],
            "spikes_per_neuron": energy.spikes_per_neuron, "num_images": args.num_images}


def identity(p: dict) -> tuple:
    """What names a point of the results: K, budget and fine-tuning run (None if calibrated only)."""
    return p["K"], p["budget"], p.get("finetuned")


def label(p: dict) -> str:
    budget = "none (plain calibration)" if p["budget"] is None else str(p["budget"])
    return budget + (f", fine-tuned ({p['finetuned']})" if p.get("finetuned") else "")


def dominance(points: list[dict], baseline: list[dict]) -> list[dict]:
    """Per budgeted point: the plain calibrated model of equal or next higher energy, and whether
    the point is at least as good in PSNR."""
    out = []
    for p in points:
        if p["budget"] is None:
            continue
        rivals = [b for b in baseline if b["energy_ratio"] >= p["energy_ratio"]]
        best = min(rivals, key=lambda b: b["energy_ratio"]) if rivals else None
        out.append({"K": p["K"], "budget": p["budget"], "finetuned": p.get("finetuned"),
                    "energy_ratio": p["energy_ratio"], "psnr": p["psnr"],
                    "rival": None if best is None else f"ours-unet+cal K={best['K']}",
                    "rival_psnr": None if best is None else best["psnr"],
                    "rival_energy_ratio": None if best is None else best["energy_ratio"],
                    "dominates": best is None or p["psnr"] >= best["psnr"],
                    "pareto": all(b["psnr"] <= p["psnr"] for b in baseline if b["energy_ratio"] <= p["energy_ratio"])})
    return out


def write(args, points: list[dict], baseline: list[dict], ann_kid: float, seconds: dict) -> None:
    checks = dominance(points, baseline)
    data = {"num_images": args.num_images, "steps": args.steps, "seed": args.seed, "original_kid": ann_kid,
            "fit_seconds": seconds, "points": points, "baseline": baseline, "dominance": checks}
    atomic_write_text(args.out_dir / "energy_frontier.json", json.dumps(data, indent=1) + "\n")
    lines = ["# Energy frontier: budgeted calibration of the embedded digits DDIM", "",
             f"{args.num_images} images per point, {args.steps} DDIM steps, seeds {args.seed}..; PSNR against the "
             f"original from the same noise (of the mean MSE; median / p5: the median and 5th-percentile per-image "
             f"PSNR; < 30 dB: the share of images below 30 dB); KID (digits features) against held-out digits (original: "
             f"{ann_kid:.5f}); energy: SNN/ANN per image (4.6 pJ / MAC, 0.9 pJ / AC). Written by "
             "`python eval/energy_frontier.py`.", "", floor_line(load_floor(args.out_dir)), "",
             "dominates: at least the PSNR of the plain calibrated model of equal or next higher energy (the "
             "target's reading); Pareto: no plain calibrated model of equal or lower energy has a higher PSNR.", "",
             "| K | energy budget | energy SNN/ANN | spikes/neuron | PSNR (dB) | median / p5 (dB) | < 30 dB | KID "
             "| plain calibration at >= energy | dominates | Pareto |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    by_point = {identity(c): c for c in checks}
    for p in points:
        c = by_point.get(identity(p))
        rival = "-" if c is None else (f"{c['rival']}: {c['rival_psnr']:.2f} dB at {c['rival_energy_ratio']:.3f}"
                                       if c["rival"] else "none")
        lines.append(f"| {p['K']} | {label(p)} | "
                     f"{p['energy_ratio']:.3f} | {p['spikes_per_neuron']:.3f} | {p['psnr']:.2f} | {spread_cells(p)} | "
                     f"{p['kid']:.5f} | "
                     f"{rival} | {'-' if c is None else ('yes' if c['dominates'] else 'no')} | "
                     f"{'-' if c is None else ('yes' if c['pareto'] else 'no')} |")
    lines += ["", "Targets: " + "; ".join(f"K={K}: energy <= {e} at PSNR >= {q} dB" for K, (e, q) in TARGETS.items())]
    for K, (e, q) in TARGETS.items():
        met = [p for p in points if p["K"] == K and p["energy_ratio"] <= e and p["psnr"] >= q]
        lines.append(f"- K={K}: {'met' if met else 'not met'}" + (
            "" if met else f" (best PSNR at energy <= {e}: " + (
                f"{max(p['psnr'] for p in points if p['K'] == K and p['energy_ratio'] <= e):.2f} dB)"
                if any(p["K"] == K and p["energy_ratio"] <= e for p in points) else "no point that low)")))
    atomic_write_text(args.out_dir / "energy_frontier.md", "\n".join(lines) + "\n")

    fig, axes = new_figure(1, 2, figsize=(11, 4.2))
    for K in sorted({p["K"] for p in points}):
        ps = sorted((p for p in points if p["K"] == K and not p.get("finetuned")), key=lambda p: p["energy_ratio"])
        tuned = [p for p in points if p["K"] == K and p.get("finetuned")]
        for ax, key in zip(axes, ("psnr", "kid")):
            line, = ax.plot([p["energy_ratio"] for p in ps], [p[key] for p in ps], "o-",
                            label=f"K={K}, budgeted calibration")
            if tuned:
                ax.plot([p["energy_ratio"] for p in tuned], [p[key] for p in tuned], "D", color=line.get_color(),
                        markerfacecolor="none", label=f"K={K}, budgeted + fine-tuned weights")
    base = sorted(baseline, key=lambda b: b["energy_ratio"])
    for ax, key in zip(axes, ("psnr", "kid")):
        ax.plot([b["energy_ratio"] for b in base], [b[key] for b in base], "s--", color="gray",
                label="plain calibration, K=4..16")
        for b in base:
            ax.annotate(f"K={b['K']}", (b["energy_ratio"], b[key]), textcoords="offset points", xytext=(-6, 8),
                        ha="right", fontsize=7, color="gray")
        ax.set_xlabel("energy per image, SNN / ANN")
        ax.margins(y=0.1)  # room for the labels above the top points
    for K, (e, q) in TARGETS.items():
        axes[0].plot([e], [q], "*", markersize=12, label=f"target K={K}")
    axes[1].axhline(ann_kid, color="k", lw=0.8, label="original")
    axes[0].set_ylabel("PSNR vs original (dB)")
    axes[1].set_ylabel("KID (digits features)")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    save_figure(fig, args.out_dir / "energy_frontier.png")


def original(args, eta: float = 0.0):
    """The embedded DDIM, the held-out digits' features, its images (DDIM ``eta``) and their KID."""
    args.options = SamplingOptions(steps=args.steps, eta=eta)
    pipe = load_pipeline(DEFAULT_MODEL)
    real = extract_features("digits", "digits", metrics=("kid",), what="real")
    reference = generate_many(pipe, args.num_images, args.options, args.batch_size, args.seed)
    return pipe, real, reference, generation_metrics(real, reference, "digits", metrics=("kid",)).kid_mean


def run_name(path: Path) -> str:
    """A fine-tuned model's name in the results: its training run's directory (train snn
    writes the model to RUN/model)."""
    path = path.resolve()
    return path.parent.name if path.name == "model" else path.name


def add_finetuned(args) -> int:
    """Sample each fine-tuned model of ``args.finetuned`` and add its point to the results."""
    try:
        data = json.loads((args.out_dir / "energy_frontier.json").read_text())
        models = [load_pipeline(path) for path in args.finetuned]
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path, model in zip(args.finetuned, models):
        conversion = getattr(model.unet, "fs_config", None)
        if not conversion or not conversion.finetuned or not conversion.budget:
            print(f"error: {path} is not a budgeted, fine-tuned FS model (train snn --calibrate --energy-budget R)",
                  file=sys.stderr)
            return 2
    args.num_images, args.steps, args.seed = data["num_images"], data["steps"], data["seed"]
    _, real, reference, ann_kid = original(args)
    points = data["points"]
    for path, model in zip(args.finetuned, models):
        conversion, run = model.unet.fs_config, run_name(path)
        new = point(model, reference, real, args, conversion.K, conversion.budget["value"], run)
        points = [p for p in points if identity(p) != identity(new)]
        points.append(new)
    points.sort(key=lambda p: p["K"])  # stable: a K's fine-tuned points after its budgets
    write(args, points, data["baseline"], ann_kid, data["fit_seconds"])
    print((args.out_dir / "energy_frontier.md").read_text())
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.replot:
        data = json.loads((args.out_dir / "energy_frontier.json").read_text())
        args.num_images, args.steps, args.seed = data["num_images"], data["steps"], data["seed"]
        write(args, data["points"], data["baseline"], data["original_kid"], data["fit_seconds"])
        print((args.out_dir / "energy_frontier.md").read_text())
        return 0
    if args.finetuned:
        return add_finetuned(args)
    outs = [args.out_dir / f"energy_frontier.{x}" for x in ("json", "md", "png")]
    if any(o.exists() for o in outs) and not args.overwrite:
        print(f"error: {args.out_dir}/energy_frontier.* exist; pass --overwrite to replace them", file=sys.stderr)
        return 2
    if args.keep_finetuned and not outs[0].is_file():
        print(f"error: --keep-finetuned needs an existing {outs[0]}", file=sys.stderr)
        return 2
    try:
        budgets = [SpikeBudget("energy", b) for b in args.budgets]
        table = json.loads(args.table.read_text())
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = table["rows"] if isinstance(table, dict) else table
    baseline = [{"K": r["K"], "psnr": r["psnr"], "kid": r["kid_mean"], "energy_ratio": r["energy_ratio"]}
                for r in rows if r["method"] == "ours-unet+cal" and not r.get("finetuned")
                and (r.get("coding") or "step") == "step" and (r.get("spiking") or "swish") == "swish"]
    kept = [p for p in json.loads(outs[0].read_text())["points"] if p.get("finetuned")] if args.keep_finetuned else []
    pipe, real, reference, ann_kid = original(args)
    points, seconds = [], {}
    for K in args.K:
        fs = copy.deepcopy(pipe)
        convert_pipeline(fs, K=K)
        t0 = time.perf_counter()
        with StageBars(f"K={K}: site options: ") as bars:
            found = fit_site_options(fs, args.options, progress=bars)
        seconds[K] = round(time.perf_counter() - t0, 1)
        for budget in tqdm([None, *budgets], desc=f"K={K}: budgets", unit="point", dynamic_ncols=True):
            try:
                apply_budget(fs, found, budget)
            except ValueError as e:
                print(f"K={K}, budget {budget.value}: {e}", file=sys.stderr)
                continue
            points.append(point(fs, reference, real, args, K, None if budget is None else budget.value))
        write(args, points + kept, baseline, ann_kid, seconds)  # after every K, so a long run leaves its results
    if kept:
        write(args, sorted(points + kept, key=lambda p: p["K"]), baseline, ann_kid, seconds)
    print((args.out_dir / "energy_frontier.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
