"""``spiking-ddim sample`` (also ``python sample.py``): sample a diffusion pipeline and its spiking (FS) conversion from identical noise.

--model takes any diffusers pipeline with a UNet (DDPM, DDIM, latent diffusion, Stable
Diffusion; hub id or local directory) or a bare UNet directory. Both pipelines sample
through the pipeline's own __call__ (latents decoded, prompts and guidance applied), every
image from its own generator, so the original and the FS pipeline see identical noise.

With no arguments: load the embedded default (a small DDIM trained on digits), convert
every Swish to FS neurons, sample 1000 images from both models with a DDIM scheduler,
save PNGs and a side-by-side grid, and print the FS model's image loss against the
original (MSE, PSNR), FID, KID and IS of both against held-out real images, and the
energy of both per image: ANN MACs against the SNN's accumulates (ACs, one per spike per
output it reaches) and remaining MACs, priced at 4.6 pJ / MAC and 0.9 pJ / AC (45 nm,
Horowitz 2014). metrics.json holds every figure, per FS site and per layer too;
firing_rates.png and energy.png plot them.

Several processes split the images and write exactly what one process would:
    torchrun --nproc_per_node 2 sample.py ...     (or: accelerate launch sample.py ...)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object
from PIL import Image
from tqdm import tqdm

from fs_neurons.files import atomic_write_text

from ..data import grid, save_png, to_uint8
from ..energy import CostReport, EnergyConstants, measure_cost
from ..metrics import compare, extract_features, generation_metrics
from ..modeling import DEFAULT_MODEL
from ..pipelines import SamplingOptions, converted_components, load_pipeline
from ..plots import plot_energy_split, plot_firing_rates
from ..sampling import plan_batches, sample_pairs
from ..sites import fs_activations, set_mode
from .common import (
    add_budget_args,
    add_model_args,
    budget_from_flags,
    calibrate_with_bar,
    convert_from_flags,
    prepare_output_dir,
    prompts_from_flags,
    require_positive,
)

DEFAULT_K = 16
HELP = "sample a pipeline and its FS conversion from identical noise; print image loss, FID/KID, spikes, energy"


def add_parser(sub: argparse._SubParsersAction) -> None:
    add_arguments(sub.add_parser("sample", help=HELP, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter))


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p, DEFAULT_K)
    p.add_argument("--calibrate", action="store_true", help="refit every FS site to its recorded inputs before sampling")
    add_budget_args(p)
    p.add_argument("--steps", type=int, default=20, help="denoising steps (default: %(default)s)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta, 0 = deterministic (default: %(default)s)")
    p.add_argument("--num-images", type=int, default=1000,
                   help="images per model; KID and FID need several hundred to be more than noise (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=100, help="images per batch (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed SEED+i (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: %(default)s)")
    p.add_argument("--real", help="real images for FID / KID / IS: a folder, or 'digits' (the held-out digits; "
                                  "default for the embedded model); 'none' skips these metrics")
    p.add_argument("--metrics", nargs="+", choices=["fid", "kid", "isc", "prc"], default=["fid", "kid", "isc"],
                   help="generation metrics: fid, kid, isc (Inception Score, or the digits classifier's), prc "
                        "(precision / recall) (default: fid kid isc)")
    p.add_argument("--feature-extractor", choices=["auto", "inception", "digits"], default="auto",
                   help="feature space of the metrics; auto = Inception if its weights are available locally, else digits")
    p.add_argument("--inception-weights", help="Inception weights file for offline metrics")
    p.add_argument("--kid-subset-size", type=int, help="images per KID subset (default: min(1000, smaller set))")
    p.add_argument("--energy", action="append", default=[], metavar="NAME=PJ",
                   help="energy per operation in picojoules, replacing the 45 nm default (mac=4.6, ac=0.9); "
                        "repeatable, e.g. --energy mac=3.1 --energy ac=0.1")
    p.add_argument("--out", type=Path, help="output directory (default: runs/sample-<date>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output directory")
    p.set_defaults(run=run)


def main(argv: list[str] | None = None) -> int:
    """``python sample.py``: the same flags as ``spiking-ddim sample``."""
    args = build_parser().parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    try:
        constants = EnergyConstants.parse(args.energy)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    require_positive(args, "steps", "num_images", "batch_size")
    budget = budget_from_flags(args, constants)
    # Without cpu=True, Accelerate ignores torchrun's process group on a machine with no GPU.
    accelerator = Accelerator(cpu=args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available()))
    device = accelerator.device if args.device in ("auto", "cpu") else torch.device(args.device)
    main_process = accelerator.is_main_process
    if args.out is None:  # one timestamped directory, chosen by the main process
        args.out = Path(broadcast_object_list([time.strftime("runs/sample-%Y%m%d-%H%M%S")])[0])
    if main_process:
        prepare_output_dir(args.out, args.overwrite)
        for sub in ("original", "fs"):
            (args.out / sub).mkdir(exist_ok=True)
    accelerator.wait_for_everyone()

    original, fs_pipe, options, summary = _pipelines(args, device)
    components = converted_components(fs_pipe)
    K, method = (next(iter(components.values())).fs_conversion[k] for k in ("K", "method"))
    if main_process:
        print(summary, file=sys.stderr)
    if args.calibrate:
        state = [None]
        if main_process:
            sites, message = calibrate_with_bar(fs_pipe, options, budget=budget)
            atomic_write_text(args.out / "calibration.json", json.dumps([asdict(s) for s in sites], indent=1) + "\n")
            print(f"{message} (per site: {args.out / 'calibration.json'})", file=sys.stderr)
            state = [{n: {k: v.cpu() for k, v in m.state_dict().items()} for n, m in components.items()}]
        state = broadcast_object_list(state)
        for n, m in components.items():
            m.load_state_dict(state[0][n])

    batches = plan_batches(args.num_images, args.batch_size, accelerator.process_index, accelerator.num_processes)
    bar = tqdm(total=sum(len(b) for b in batches), desc="sample (original + FS)", unit="img",
               dynamic_ncols=True, disable=not main_process)
    per_image = []

    def save(idx, a, b):
        for i, x, y in zip(idx, to_uint8(a), to_uint8(b)):
            save_png(x, args.out / "original" / f"{i:05d}.png")
            save_png(y, args.out / "fs" / f"{i:05d}.png")
        m = compare(a, b)
        per_image.extend({"index": i, "mse": m["mse"][k], "psnr": m["psnr"][k]} for k, i in enumerate(idx))
        bar.update(len(idx))

    with measure_cost(fs_pipe) as meter:
        sample_pairs(original, fs_pipe, batches, options, args.seed, save)
    bar.close()
    rows = gather_object(per_image)
    costs = gather_object([meter.report()])
    accelerator.wait_for_everyone()
    if not main_process:
        return 0
    rows.sort(key=lambda r: r["index"])
    energy = sum(costs, CostReport()).energy(args.num_images, constants)
    mean_mse = sum(r["mse"] for r in rows) / len(rows)
    psnr = math.inf if mean_mse == 0 else 10 * math.log10(1 / mean_mse)
    scores = _generation_metrics(args)
    metrics = {
        "model": str(args.model), "pipeline": type(fs_pipe).__name__, "converted": sorted(components),
        "K": K, "method": method, "calibrated": args.calibrate,
        "steps": args.steps, "eta": args.eta, "prompts": list(options.prompts or []),
        "guidance_scale": options.guidance_scale, "num_images": args.num_images, "seed": args.seed,
        "processes": accelerator.num_processes,
        "sites": sum(a.num_sites for m in components.values() for _, a in fs_activations(m)),
        "mse": mean_mse, "psnr": psnr,
        "spikes_per_neuron_per_call": energy.spikes_per_neuron,
        "spikes_per_image": energy.spikes_per_image,
        **_metric_entries(scores),
        "energy": energy.to_json(),
        "per_image": rows,
    }
    atomic_write_text(args.out / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    _write_comparison(args.out, args.num_images)
    run = f"FS K={K} {method}{'+cal' if args.calibrate else ''}"
    plot_firing_rates({run: energy.firing_rates}, args.out / "firing_rates.png", K=K,
                      break_even=constants.break_even, title=f"{run}: spikes per neuron per call, per site")
    plot_energy_split({run: energy.by_kind}, constants, args.out / "energy.png")
    print(f"\nFS (K={K}, {method}{', calibrated' if args.calibrate else ''}; {', '.join(sorted(components))}) "
          f"vs original {type(fs_pipe).__name__}, {args.num_images} images, {args.steps} steps:")
    print(f"  image loss   MSE {mean_mse:.6f}   PSNR {psnr:.2f} dB")
    print(f"  spikes       {energy.spikes_per_neuron:.3f} per neuron per call (of at most {K}), "
          f"{energy.spikes_per_image:.4g} per image")
    print(f"  energy       {energy.summary()}")
    if not scores:
        print("  FID / KID    skipped (no real images: pass --real DIR)")
    for name, r in scores.items():
        print(f"  {name:<9} vs {r.n_real} real: " + "   ".join(r.lines()))
        for note in r.notes:
            print(f"  {name:<9} note: {note}")
    print(f"wrote {args.out}/original, {args.out}/fs, comparison.png, firing_rates.png, energy.png, metrics.json")
    return 0


def _pipelines(args: argparse.Namespace, device: torch.device):
    """(original pipeline, FS pipeline, resolved sampling options, conversion summary) for the flags."""

    try:
        pipe = load_pipeline(args.model, scheduler=args.scheduler).to(device)
        options = SamplingOptions(args.steps, args.eta, prompts_from_flags(args), args.guidance_scale).resolve(pipe)
        fs_pipe = copy.deepcopy(pipe)
        done = converted_components(fs_pipe)
        if done:  # already converted: the original is the same weights with the original activations
            given = [f"--{flag}" for flag in ("K", "method", "convert") if getattr(args, flag) is not None]
            if given:
                raise ValueError(f"{args.model} is already converted; {', '.join(given)} apply to plain pipelines")
            for m in converted_components(pipe).values():
                set_mode(m, "ann")
            summary = "\n".join(f"{n}: already converted (K={m.fs_conversion['K']}, method={m.fs_conversion['method']})"
                                for n, m in done.items())
        else:
            summary = convert_from_flags(fs_pipe, args, DEFAULT_K)
    except (FileNotFoundError, OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    return pipe, fs_pipe.to(device), options, summary


def _generation_metrics(args: argparse.Namespace) -> dict:
    """FID, KID, IS of the original and the FS samples against real images (none without them)."""
    real = args.real or ("digits" if Path(args.model).resolve() == DEFAULT_MODEL else None)
    if real is None or real == "none":
        return {}
    try:
        feats = extract_features(real, args.feature_extractor, args.inception_weights, args.metrics, what="real")
        return {name: generation_metrics(feats, args.out / name, args.feature_extractor, args.inception_weights,
                                         args.metrics, args.kid_subset_size)
                for name in ("original", "fs")}
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: generation metrics: {e}") from None


def _metric_entries(scores: dict) -> dict:
    """metrics.json entries ``fid``, ``kid``, ``is`` (and ``precision_recall``), each
    {model: figures with their label}, and ``metric_notes`` {model: [unreliable figures]}."""
    out: dict = {"fid": {}, "kid": {}, "is": {}}
    for name, r in scores.items():
        if r.fid is not None:
            out["fid"][name] = {"value": r.fid, "label": r.label("FID")}
        if r.kid_mean is not None:
            out["kid"][name] = {"mean": r.kid_mean, "std": r.kid_std, "subset_size": r.kid_subset_size,
                                "subsets": r.kid_subsets, "n_real": r.n_real, "label": r.label("KID")}
        if r.isc_mean is not None:
            out["is"][name] = {"mean": r.isc_mean, "std": r.isc_std, "label": r.label("IS")}
        if r.precision is not None:
            out.setdefault("precision_recall", {})[name] = {"precision": r.precision, "recall": r.recall}
    out["metric_notes"] = {name: r.notes for name, r in scores.items()}
    return out


def _write_comparison(out: Path, n: int, pairs: int = 32) -> None:
    """comparison.png: original and FS image of each index side by side, 8 pairs a row."""
    tiles = []
    for i in range(min(n, pairs)):
        for sub in ("original", "fs"):
            a = np.asarray(Image.open(out / sub / f"{i:05d}.png"))
            tiles.append(a[..., None] if a.ndim == 2 else a)
    save_png(grid(np.stack(tiles), cols=16), out / "comparison.png")
