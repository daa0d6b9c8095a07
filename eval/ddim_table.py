#!/usr/bin/env python
"""Network-level benchmark: a diffusion pipeline with its Swish replaced by FS neurons, per K and method.

For the embedded digits DDIM (or ``--model``, any pipeline ``sample.py`` takes, with
``--convert``, ``--prompts`` and ``--guidance-scale`` as there): the original network's row, then for each
K and method (random, gaussian, tbpi, ours from the bank's paper-protocol entries; ours-unet,
the default, fitted to UNets' Swish inputs; ours+cal and ours-unet+cal = those calibrated
to each site's inputs, with the calibration's seconds) the FS model's

* image loss (a) against the original from identical noise: ``mse``, ``psnr`` (dB, of the
  mean MSE), and the per-image spread: ``psnr_median``, ``psnr_p5`` (5th percentile) and
  ``share_below_30db``;
* image loss (b), the paper's: ``mae_x0`` between held-out images and the predicted
  clean image at random timesteps (pixel-space models with real images only);
* FID and KID against held-out real images (``fid``, ``kid_mean``, ``kid_std``,
  ``feature_extractor``; none without ``--real``, which defaults to digits for the embedded model);
* cost per generated image from :mod:`spiking_ddim.energy`: ``spikes_per_neuron`` (mean
  spikes per neuron per call), ``acs_per_image`` and ``macs_per_image`` (the SNN's
  accumulates and remaining MACs), ``ann_macs_per_image``, ``snn_joules_per_image``,
  ``ann_joules_per_image`` and ``energy_ratio`` (SNN / ANN, 4.6 pJ per MAC and 0.9 pJ per AC
  unless ``--energy`` says otherwise);
* the same cost as SNN / INT8 ANN (``energy_ratio_int8``) and under the memory-aware
  estimate of :mod:`spiking_ddim.memory` (``memory_ratio``, ``memory_ratio_int8``);
* ``sample_seconds``, with the cost accounting running.

``--codings`` adds rows of other codings (each row records ``coding`` and ``spiking``):
``step`` (the default: every site sends its full K-step code at every denoising step),
``delta`` (changes between steps, encoders fitted by
:func:`spiking_ddim.calibration.fit_delta` with ``--delta-spike-weight``), ``step+all`` and
``delta+all`` (fully spiking: every conv / linear input but the first layer's is FS-coded;
these need a calibrated method, ``+cal``, which fits those encoders; other combinations
are skipped).

Writes eval/results/ddim_table.{json,md,png}, ddim_frontier.png (PSNR and KID against
SNN energy per image, one curve per method), ddim_firing_rates.png and ddim_energy.png
(firing rate per site and energy by operation type of ours+cal at every K). ``--finetuned DIR`` adds rows for fine-tuned
converted models (``train.py snn`` outputs).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch
from noise_floor import floor_line, load_floor
from tqdm import tqdm

from fs_neurons.utils.figures import new_figure, save_figure
from fs_neurons.utils.files import atomic_write_text
from spiking_ddim.defaults import DEFAULT_MODEL, DELTA_COST, DELTA_COSTS, DELTA_PRICE, DELTA_PRICES
from spiking_ddim.energy import EnergyConstants
from spiking_ddim.metrics.generation import extract_features
from spiking_ddim.metrics.image_loss import compare, spread_cells, x0_mae
from spiking_ddim.plots import plot_energy_split, plot_firing_rates

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ["random", "gaussian", "tbpi", "ours", "ours-unet", "ours+cal", "ours-unet+cal"]
CODINGS = ["step", "delta", "step+all", "delta+all"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL),
                   help="diffusers pipeline or UNet directory, or hub id (default: the embedded digits DDIM)")
    p.add_argument("--convert", default="unet", metavar="NAMES",
                   help="comma-separated components to convert: unet, vae / vqvae (default: %(default)s)")
    p.add_argument("--prompts", type=Path, metavar="FILE",
                   help="text-conditional pipelines: prompts, one per line (default: built-in prompts)")
    p.add_argument("--guidance-scale", type=float, help="classifier-free guidance scale >= 1 (default: the pipeline's)")
    p.add_argument("--K", type=int, nargs="+", default=[4, 8, 12, 16], help="time steps (default: %(default)s)")
    p.add_argument("--methods", nargs="*", choices=METHODS, default=METHODS, help="FS methods (default: all)")
    p.add_argument("--codings", nargs="+", choices=CODINGS, default=["step"],
                   help="codings of the FS rows: step (per-step, today's), delta (changes between steps), "
                        "step+all / delta+all (fully spiking; only with +cal methods) (default: %(default)s)")
    p.add_argument("--delta-spike-weight", type=float,
                   help="delta encoders' price of a spike (default: fit_delta's for the price)")
    p.add_argument("--delta-price", choices=DELTA_PRICES, default=DELTA_PRICE,
                   help="what the delta spike price is relative to (default: %(default)s)")
    p.add_argument("--delta-cost", choices=DELTA_COSTS, default=DELTA_COST,
                   help="what the delta spike price counts: spikes, or acs (the accumulates a spike causes "
                        "downstream) (default: %(default)s)")
    p.add_argument("--finetuned", type=Path, nargs="*", default=[],
                   help="fine-tuned converted model directories (train.py snn outputs) to add as rows")
    p.add_argument("--update", action="store_true",
                   help="keep the existing table's rows and replace only those this run computes (same K, method, "
                        "coding and fine-tuned flag); the original network's row is always recomputed")
    p.add_argument("--num-images", type=int, default=1000, help="samples per row (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=100, help="sampling batch size (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed SEED+i (default: %(default)s)")
    p.add_argument("--real", help="held-out real images: 'digits' or a folder (default: digits for the embedded "
                                  "model, none otherwise: no FID, KID or x0-MAE)")
    p.add_argument("--feature-extractor", choices=["auto", "inception", "digits"], default="auto",
                   help="feature space of FID and KID (default: %(default)s)")
    p.add_argument("--inception-weights", help="Inception weights file for offline FID / KID")
    p.add_argument("--energy", action="append", default=[], metavar="NAME=PJ",
                   help="energy per operation in picojoules (default mac=4.6, ac=0.9); repeatable")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory (default: eval/results)")
    p.add_argument("--overwrite", action="store_true", help="replace existing result files")
    p.add_argument("--replot", action="store_true",
                   help="rewrite ddim_table.md and redraw the plots from the existing ddim_table.json only")
    return p.parse_args(argv)


def sample_all(pipe, options, n, batch, seed):
    """The n images of ``pipe`` and the seconds they took."""
    from spiking_ddim.sampling import generate_many

    t0 = time.perf_counter()
    return generate_many(pipe, n, options, batch, seed), time.perf_counter() - t0


def evaluate(name, pipe, reference, held_out, real, args, K=None, calibrated=False,
             finetuned=False) -> tuple[dict, torch.Tensor]:
    """One table row for ``pipe`` (original or converted); ``real``: the real images' features
    (None: no FID / KID); ``held_out``: real images for x0-MAE (None: none)."""
    from spiking_ddim.energy import measure_cost
    from spiking_ddim.held_out import check_pipeline_held_out
    from spiking_ddim.metrics.generation import generation_metrics

    check_pipeline_held_out(pipe, args.seed, args.num_images)  # no scored image was seen by a fit
    with measure_cost(pipe) as meter:
        images, seconds = sample_all(pipe, args.options, args.num_images, args.batch_size, args.seed)
    energy = meter.report().energy(args.num_images, args.energy_constants)
    spec = getattr(pipe.unet, "fs_config", None)
    row = {"K": K, "method": name, "calibrated": calibrated, "finetuned": finetuned,
           "coding": spec.coding if spec else None, "spiking": spec.spiking if spec else None,
           "delta_K": spec.delta_K if spec and spec.coding == "delta" else None,
           "mae_x0": None if held_out is None else x0_mae(pipe.unet, pipe.scheduler, held_out, seed=args.seed),
           "fid": None, "kid_mean": None, "kid_std": None, "feature_extractor": None, "kid_label": "KID",
           "fid_label": "FID",
           "spikes_per_neuron": energy.spikes_per_neuron if K is not None else None,
           "acs_per_image": energy.snn_acs_per_image, "macs_per_image": energy.snn_macs_per_image,
           "ann_macs_per_image": energy.ann_macs_per_image, "snn_joules_per_image": energy.snn_joules_per_image,
           "ann_joules_per_image": energy.ann_joules_per_image, "energy_ratio": energy.ratio,
           "energy_ratio_int8": energy.ratio_int8, "memory_ratio": energy.memory["ratio"],
           "memory_ratio_int8": energy.memory["ratio_int8"], "snn_joules_per_step": energy.snn_joules_per_step,
           "energy_by_kind": energy.by_kind, "site_firing_rates": energy.firing_rates,
           "sample_seconds": round(seconds, 1), "num_images": args.num_images, "steps": args.steps,
           "settings": table_settings(args)}
    if real is not None:
        r = generation_metrics(real, images, args.feature_extractor, args.inception_weights, ("fid", "kid"))
        row.update(fid=r.fid, kid_mean=r.kid_mean, kid_std=r.kid_std, feature_extractor=r.feature_extractor,
                   kid_label=r.label("KID"), fid_label=r.label("FID"))
    if reference is None:
        row.update(psnr=None, mse=0.0, psnr_median=None, psnr_p5=None, share_below_30db=None)
    else:
        m = compare(reference, images)
        row.update(psnr=m["mean_psnr"], mse=m["mean_mse"], psnr_median=m["psnr_median"], psnr_p5=m["psnr_p5"],
                   share_below_30db=m["share_below_30db"])
    return row, images


def table_settings(args) -> dict:
    """What every row of one table must share: the model, sampling and scoring settings."""
    return {"model": str(Path(args.model).resolve()) if Path(args.model).exists() else args.model,
            "convert": args.convert, "num_images": args.num_images, "steps": args.steps, "seed": args.seed,
            "real": args.real, "feature_extractor": args.feature_extractor,
            "energy": [args.energy_constants.mac_pj, args.energy_constants.ac_pj], "pipeline": args.pipeline}


def settings_conflict(rows: list[dict], settings: dict) -> str | None:
    """Why rows of an existing table cannot sit beside rows made with ``settings`` (None: they can).
    Rows written before settings were recorded are compared on their num_images and steps."""
    for r in rows:
        old = r.get("settings") or {"num_images": r.get("num_images"), "steps": r.get("steps")}
        diff = [f"{k}: {old[k]!r} in the table, {settings[k]!r} now" for k in old if k in settings
                and old[k] != settings[k]]
        if diff:
            return f"row K={r.get('K')} {r.get('method')} was made with other settings ({'; '.join(diff)})"
    return None


def coding_name(row: dict) -> str:
    """A row's coding as the table writes it: step, delta, step+all or delta+all (rows written
    before codings were recorded are step); "-" for the original."""
    if row["method"] == "original":
        return "-"
    coding = row.get("coding") or "step"
    return coding + ("+all" if row.get("spiking") == "all" else "")


def series(row: dict) -> str:
    """A row's curve in the plots: its method, and its coding where that is not step."""
    coding = coding_name(row)
    return row["method"] if coding in ("step", "-") else f"{row['method']} {coding}"


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with the rows of ``new`` replacing those of the same (K, method, coding, finetuned)."""
    key = lambda r: (r["K"] or 0, r["method"] != "original", r["finetuned"], CODINGS.index(coding_name(r))  # noqa: E731
                     if coding_name(r) in CODINGS else -1, METHODS.index(r["method"])
                     if r["method"] in METHODS else len(METHODS), r["method"])
    fresh = {key(r) for r in new}
    return sorted([r for r in old if key(r) not in fresh] + new, key=key)


def _cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    return "-" if value is None else ("inf" if isinstance(value, float) and math.isinf(value) else format(value, fmt))


def _weight(row: dict) -> str:
    if row.get("spike_weight") is None:
        return ""
    return f" (W={row['spike_weight']:g}" + (" per value" if row.get("price") == "value" else "") + (
        ", by ACs" if row.get("cost") == "acs" else "") + ")"


def delta_fit(unet) -> dict:
    """A delta row's spike weight, price and cost, as its model's last fit recorded them."""
    from spiking_ddim.calibration import last_delta_fit

    last = {} if unet is None else last_delta_fit(unet)
    return {key: last.get(key) for key in ("spike_weight", "price", "cost")}


def _kid_cell(row: dict) -> str:
    return "-" if row.get("kid_mean") is None else f"{row['kid_mean']:.5f} +- {row['kid_std']:.5f}"


def markdown(rows: list[dict], args) -> str:
    kid_label, fid_label = rows[0]["kid_label"], rows[0].get("fid_label", "FID")
    model = "the embedded digits DDIM" if Path(args.model).resolve() == DEFAULT_MODEL else f"`{args.model}`"
    lines = [f"# Spiking diffusion: FS neurons in {model} ({args.pipeline}, converted: {args.convert})",
             "",
             f"{args.num_images} samples per row, {args.steps} DDIM steps (eta 0), same seeds for every row. "
             f"PSNR / MSE: FS samples vs the original's from identical noise (PSNR of the mean MSE; median / p5: "
             "the median and 5th-percentile per-image PSNR; < 30 dB: the share of images below 30 dB); x0-MAE: the paper's image loss on "
             f"held-out images; {fid_label} and {kid_label} against held-out real images. Cost per generated image "
             f"({args.steps} forward passes): ACs and MACs of the SNN, energy ratio SNN / ANN at "
             f"{args.energy_constants.mac_pj} pJ per MAC and {args.energy_constants.ac_pj} pJ per AC "
             f"(the ANN: {rows[0]['ann_macs_per_image']:.4g} MACs, {rows[0]['ann_joules_per_image'] * 1e3:.3g} mJ); "
             "the same SNN cost against the ANN with 8-bit integer MACs (0.23 pJ), and the memory-aware estimate "
             "(SRAM accesses by buffer size, docs/energy.md). Coding: step sends every site's full code at every "
             "denoising step, delta only changes between steps (docs/delta.md; W: the encoders' spike price, "
             "by ACs: priced by the accumulates a spike causes), +all: "
             "fully spiking. Fit s: seconds of calibration and delta fitting. "
             "Written by `python eval/ddim_table.py`.",
             "",
             floor_line(load_floor(args.out)),
             "",
             f"| K | method | coding | fine-tuned | PSNR (dB) | median / p5 (dB) | < 30 dB | MSE | x0-MAE | {fid_label} | {kid_label} | spikes/neuron | "
             "ACs/image | MACs/image | energy SNN/ANN | SNN/INT8 ANN | memory-aware SNN/ANN | fit s | "
             "sample s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['K'] or '-'} | {r['method']} | {coding_name(r)}{_weight(r)} | {'yes' if r['finetuned'] else 'no'} | "
                     f"{_cell(r, 'psnr', '.2f')} | {spread_cells(r)} | {r['mse']:.2e} | {_cell(r, 'mae_x0', '.4f')} | "
                     f"{_cell(r, 'fid', '.3f')} | {_kid_cell(r)} | {_cell(r, 'spikes_per_neuron', '.3f')} | "
                     f"{_cell(r, 'acs_per_image', '.3e')} | {_cell(r, 'macs_per_image', '.3e')} | "
                     f"{_cell(r, 'energy_ratio', '.3f')} | {_cell(r, 'energy_ratio_int8', '.3f')} | "
                     f"{_cell(r, 'memory_ratio', '.3f')} | {_cell(r, 'calibration_seconds', '')} | "
                     f"{r['sample_seconds']} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    original = next(r for r in rows if r["method"] == "original")
    fig, axes = new_figure(1, 3, figsize=(15, 4.2))
    for ax, key, title in zip(axes, ("kid_mean", "mae_x0", "psnr"),
                              (original["kid_label"], "image loss (x0-MAE)", "PSNR vs original (dB)")):
        for name in dict.fromkeys(series(r) for r in rows if r["method"] != "original"):
            pts = sorted((r["K"], r[key]) for r in rows if series(r) == name and not r["finetuned"]
                         and r[key] is not None)
            if pts:
                ax.plot(*zip(*pts), "o-", label=name)
        tuned = sorted((r["K"], r[key]) for r in rows if r["finetuned"] and r[key] is not None)
        if tuned:
            ax.plot(*zip(*tuned), "k*", markersize=12, label="fine-tuned")
        if original[key] is not None:
            ax.axhline(original[key], color="gray", ls="--", label="original")
        ax.set_xlabel("K")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    save_figure(fig, path)


def plot_costs(rows: list[dict], firing_path: Path, energy_path: Path, constants: EnergyConstants) -> None:
    """Firing rate per site and energy by operation type of one method at every K
    (ours+cal where the table has it)."""
    have = [r for r in rows if r.get("site_firing_rates") and not r["finetuned"] and coding_name(r) == "step"]
    if not have:
        return
    method = "ours+cal" if any(r["method"] == "ours+cal" for r in have) else have[-1]["method"]
    chosen = sorted((r for r in have if r["method"] == method), key=lambda r: r["K"])
    plot_firing_rates({f"K={r['K']}": r["site_firing_rates"] for r in chosen}, firing_path,
                      break_even=constants.break_even, title=f"{method}: spikes per neuron per call, per site")
    plot_energy_split({f"K={r['K']} {method}": r["energy_by_kind"] for r in chosen}, constants, energy_path,
                      steps=chosen[0]["steps"])


def plot_frontier(rows: list[dict], path: Path) -> None:
    """PSNR and KID against SNN energy per image: one curve per method, one point per K."""
    original = next(r for r in rows if r["method"] == "original")
    rows = [r for r in rows if r.get("snn_joules_per_image") is not None and r["method"] != "original"]
    fig, axes = new_figure(1, 2, figsize=(12, 4.4))
    for ax, key, title in zip(axes, ("psnr", "kid_mean"), ("PSNR vs original (dB)", original["kid_label"])):
        for name in dict.fromkeys(series(r) for r in rows):
            pts = sorted((r["snn_joules_per_image"] * 1e3, r[key], r["K"]) for r in rows
                         if series(r) == name and not r["finetuned"] and r[key] is not None)
            if pts:
                line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name)
                for x, y, K in pts:
                    ax.annotate(f"K={K}", (x, y), textcoords="offset points", xytext=(-5, 7), ha="right", fontsize=6,
                                color=line.get_color())
        tuned = [r for r in rows if r["finetuned"] and r[key] is not None]
        if tuned:
            ax.plot([r["snn_joules_per_image"] * 1e3 for r in tuned], [r[key] for r in tuned], "k*", markersize=12,
                    label="fine-tuned")
        ax.axvline(original["ann_joules_per_image"] * 1e3, color="gray", ls="--", label="ANN energy")
        if key == "kid_mean" and original[key] is not None:
            ax.axhline(original[key], color="gray", ls=":", label="ANN KID")
            ax.set_yscale("log")
        ax.set_xlabel("SNN energy per image (mJ)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("quality per energy: better is up-left for PSNR, down-left for KID", fontsize=10)
    save_figure(fig, path)


def main(argv=None) -> int:
    args = parse_args(argv)
    from spiking_ddim.calibration import calibrate, fit_delta
    from spiking_ddim.data import load_images
    from spiking_ddim.pipelines import (
        SamplingOptions,
        check_components,
        convert_pipeline,
        decoder,
        load_pipeline,
        read_prompts,
    )

    files = [args.out / f"ddim_{name}" for name in ("table.json", "table.md", "table.png", "frontier.png",
                                                      "firing_rates.png", "energy.png")]
    if args.replot:
        try:
            rows, constants = json.loads(files[0].read_text()), EnergyConstants.parse(args.energy)
        except (OSError, ValueError) as e:
            print(f"error: --replot: {e}", file=sys.stderr)
            return 2
        args.energy_constants, args.pipeline = constants, rows[0].get("settings", {}).get("pipeline", "DDIMPipeline")
        args.num_images, args.steps = rows[0]["num_images"], rows[0]["steps"]
        atomic_write_text(files[1], markdown(rows, args))
        plot(rows, files[2])
        plot_frontier(rows, files[3])
        plot_costs(rows, files[4], files[5], constants)
        return 0
    try:
        args.energy_constants = EnergyConstants.parse(args.energy)
        pipe = load_pipeline(args.model)
        prompts = read_prompts(args.prompts) if args.prompts else None
        args.options = SamplingOptions(args.steps, 0.0, prompts, args.guidance_scale).resolve(pipe)
        components = [c.strip() for c in args.convert.split(",") if c.strip()]
        check_components(pipe, components)
    except (FileNotFoundError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.pipeline = type(pipe).__name__
    if any(f.exists() for f in files) and not (args.overwrite or args.update):
        print(f"error: results exist in {args.out}; pass --overwrite to replace them or --update to add rows",
              file=sys.stderr)
        return 2
    if args.update and not files[0].is_file():
        print(f"error: --update needs an existing {files[0]}", file=sys.stderr)
        return 2
    if args.update:
        conflict = settings_conflict(json.loads(files[0].read_text()), table_settings(args))
        if conflict:
            print(f"error: --update would mix settings in one table: {conflict}; rerun with the table's settings, "
                  "or --overwrite", file=sys.stderr)
            return 2
    real_name = args.real or ("digits" if Path(args.model).resolve() == DEFAULT_MODEL else None)
    real = held_out = None
    if real_name is not None:
        real = extract_features(real_name, args.feature_extractor, args.inception_weights, ("fid", "kid"), what="real")
        if decoder(pipe) is None:  # x0-MAE needs clean images in the UNet's own space
            held_out = load_images(real_name, pipe.unet.config.sample_size, "test")
    jobs = [(K, m, c) for K in args.K for m in args.methods for c in args.codings
            if m.endswith("+cal") or not c.endswith("+all")]
    skipped = sorted({f"{c} with {m}" for m in args.methods for c in args.codings
                      if c.endswith("+all") and not m.endswith("+cal")})
    if skipped:
        print(f"note: fully spiking codings need a calibrated method (+cal); skipped: {', '.join(skipped)}",
              file=sys.stderr)
    if not jobs and not args.finetuned:
        print("error: no row to compute: the fully spiking codings need a +cal method", file=sys.stderr)
        return 2
    bar = tqdm(total=1 + len(jobs) + len(args.finetuned), desc="ddim_table", unit="row", dynamic_ncols=True)
    row, reference = evaluate("original", pipe, None, held_out, real, args)
    new_rows = [row]
    bar.update()
    for K, method, coding in jobs:
        bar.set_postfix_str(f"K={K} {method} {coding}")
        fs = copy.deepcopy(pipe)
        code, _, spiking = coding.partition("+")
        try:
            convert_pipeline(fs, K=K, method=method.replace("+cal", ""), components=components, coding=code,
                             spiking=spiking or "swish")
        except ValueError as e:
            print(f"error: K={K} {method} {coding}: {e}", file=sys.stderr)
            return 2
        seconds = None
        t0 = time.perf_counter()
        if method.endswith("+cal"):
            calibrate(fs, args.options, seed=args.seed)
        if code == "delta":
            fit_delta(fs, args.options, seed=args.seed, spike_weight=args.delta_spike_weight, price=args.delta_price,
                      cost=args.delta_cost)
        if method.endswith("+cal") or code == "delta":
            seconds = round(time.perf_counter() - t0, 1)
        row = evaluate(method, fs, reference, held_out, real, args, K, calibrated=method.endswith("+cal"))[0]
        new_rows.append({**row, "calibration_seconds": seconds,
                         **delta_fit(fs.unet if code == "delta" else None)})
        bar.update()
    for path in args.finetuned:
        tuned = load_pipeline(path)
        spec = tuned.unet.fs_config
        name = spec.method + ("+cal" if spec.calibrated else "")
        new_rows.append(evaluate(name, tuned, reference, held_out, real, args, spec.K,
                                 calibrated=spec.calibrated, finetuned=True)[0])
        bar.update()
    bar.close()
    rows = merge_rows(json.loads(files[0].read_text()), new_rows) if args.update else new_rows
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(files[0], json.dumps(rows, indent=1) + "\n")
    md = markdown(rows, args)
    atomic_write_text(files[1], md)
    plot(rows, files[2])
    plot_frontier(rows, files[3])
    plot_costs(rows, files[4], files[5], args.energy_constants)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
