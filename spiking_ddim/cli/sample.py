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

The FS model is scored against --reference: by default the model it was converted from
(for an already converted --model, the source its record names, checked against the
weight digest recorded at conversion), so a fine-tuned model is never scored against its
own moved weights. The output folder is written whole or not at all (a staging folder
moved into place at the end); metrics.json records the model's history (conversion,
calibration, budget, fine-tuning), the reference, the scheduler and every setting.

Several processes split the images (torchrun --nproc_per_node 2 sample.py ..., or
accelerate launch): each image is computed exactly as one process computes it with the
same --batch-size and threads per process. A different batch size, thread count or
machine changes FS images slightly (FS neurons are discontinuous): the spread this
causes is measured by eval/noise_floor.py (eval/results/noise_floor.md).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object
from tqdm import tqdm

from fs_neurons.files import atomic_write_text

from ..data import count_images, save_png, to_uint8
from ..energy import CostReport, EnergyConstants, measure_cost
from ..metrics import check_metric_args, compare, extract_features, generation_metrics
from ..modeling import DEFAULT_MODEL
from ..outputs import OutputError, check_output, staged_output
from ..pipelines import SamplingOptions, converted_components, load_pipeline, scheduler_record
from ..plots import plot_comparison, plot_energy_split, plot_firing_rates
from ..provenance import EMBEDDED, provenance, recorded_source
from ..provenance import summary as history_summary
from ..reference import reference_pipeline
from ..sampling import plan_batches, sample_pairs
from ..sites import fs_activations
from .common import (
    add_budget_args,
    add_model_args,
    add_reference_arg,
    budget_from_flags,
    calibrate_with_bar,
    convert_from_flags,
    prompts_from_flags,
    require_positive,
    resolve_device,
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
    add_reference_arg(p)
    p.add_argument("--real", help="real images for FID / KID / IS: a folder, or 'digits' (the held-out digits; "
                                  "default for the embedded model and models converted from it); 'none' skips these metrics")
    p.add_argument("--metrics", nargs="+", choices=["fid", "kid", "isc", "prc"], default=["fid", "kid", "isc"],
                   help="generation metrics: fid, kid, isc (Inception Score, or the digits classifier's), prc "
                        "(precision / recall) (default: fid kid isc)")
    p.add_argument("--feature-extractor", choices=["auto", "inception", "digits"], default="auto",
                   help="feature space of the metrics; auto = Inception if its weights are available locally, else digits")
    p.add_argument("--inception-weights", help="Inception weights file for offline metrics")
    p.add_argument("--kid-subset-size", type=int, help="images per KID subset, 2 to the smaller set's size "
                                                       "(default: min(1000, smaller set))")
    p.add_argument("--energy", action="append", default=[], metavar="NAME=PJ",
                   help="energy per operation in picojoules, replacing the 45 nm default (mac=4.6, ac=0.9); "
                        "repeatable, e.g. --energy mac=3.1 --energy ac=0.1")
    p.add_argument("--out", type=Path, help="output directory (default: runs/sample-<date>-<time>)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty output directory (the whole folder, at the end of a successful run)")
    p.set_defaults(run=run)


def main(argv: list[str] | None = None) -> int:
    """``python sample.py``: the same flags as ``spiking-ddim sample``."""
    from . import guarded

    args = build_parser().parse_args(argv)
    return guarded(run, args)


def run(args: argparse.Namespace) -> int:
    try:
        constants = EnergyConstants.parse(args.energy)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    require_positive(args, "steps", "num_images", "batch_size")
    budget = budget_from_flags(args, constants)
    device = resolve_device(args.device)
    real = _real_images(args)
    # Without cpu=True, Accelerate ignores torchrun's process group on a machine with no GPU.
    accelerator = Accelerator(cpu=device.type == "cpu")
    main_process = accelerator.is_main_process
    if args.out is None:  # one timestamped directory, chosen by the main process
        args.out = Path(broadcast_object_list([time.strftime("runs/sample-%Y%m%d-%H%M%S")])[0])
    try:
        check_output(args.out, args.overwrite)
    except OutputError as e:
        raise SystemExit(f"error: {e}") from None

    original, fs_pipe, options, summary, reference = _pipelines(args, device)
    components = converted_components(fs_pipe)
    real_features = _real_features(args, real) if main_process else None
    if main_process:
        print(summary, file=sys.stderr)
        print(f"reference: {reference['description']}", file=sys.stderr)
        scheduler = scheduler_record(fs_pipe)
        if scheduler["source"].startswith("DEFAULT"):
            print(f"WARNING: scheduler: {scheduler['source']}", file=sys.stderr)
    with contextlib.ExitStack() as stack:
        staging = [None]
        if main_process:
            try:
                staging = [str(stack.enter_context(staged_output(args.out, args.overwrite)))]
            except OutputError as e:
                raise SystemExit(f"error: {e}") from None
        staging = Path(broadcast_object_list(staging)[0])
        _sample(args, accelerator, staging, original, fs_pipe, options, components, budget, constants, real_features,
                reference)
        accelerator.wait_for_everyone()
    if main_process:
        print(f"wrote {args.out}/original, {args.out}/fs, comparison.png, firing_rates.png, energy.png, metrics.json")
    return 0


def _sample(args, accelerator, out: Path, original, fs_pipe, options, components, budget, constants, real_features,
            reference: dict) -> None:
    """Calibrate (with --calibrate), sample both pipelines, score and write everything into ``out``."""
    main_process = accelerator.is_main_process
    for sub in ("original", "fs"):
        (out / sub).mkdir(exist_ok=True)
    accelerator.wait_for_everyone()
    if args.calibrate:
        state = [None]
        if main_process:
            sites, message = calibrate_with_bar(fs_pipe, options, budget=budget)
            atomic_write_text(out / "calibration.json", json.dumps([asdict(s) for s in sites], indent=1) + "\n")
            print(f"{message} (per site: {args.out / 'calibration.json'})", file=sys.stderr)
            state = [({n: {k: v.cpu() for k, v in m.state_dict().items()} for n, m in components.items()},
                      {n: m.fs_conversion for n, m in components.items()})]
        state = broadcast_object_list(state)
        for n, m in components.items():
            m.load_state_dict(state[0][0][n])
            m.fs_conversion = state[0][1][n]
    record = next(iter(components.values())).fs_conversion
    K, method = record["K"], record["method"]

    batches = plan_batches(args.num_images, args.batch_size, accelerator.process_index, accelerator.num_processes)
    bar = tqdm(total=sum(len(b) for b in batches), desc="sample (original + FS)", unit="img",
               dynamic_ncols=True, disable=not main_process)
    per_image = []

    def save(idx, a, b):
        for i, x, y in zip(idx, to_uint8(a), to_uint8(b)):
            save_png(x, out / "original" / f"{i:05d}.png")
            save_png(y, out / "fs" / f"{i:05d}.png")
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
        return
    rows.sort(key=lambda r: r["index"])
    if [r["index"] for r in rows] != list(range(args.num_images)):
        raise RuntimeError(f"sampled {len(rows)} images, expected indices 0..{args.num_images - 1}")
    energy = sum(costs, CostReport()).energy(args.num_images, constants)
    mean_mse = sum(r["mse"] for r in rows) / len(rows)
    psnr = math.inf if mean_mse == 0 else 10 * math.log10(1 / mean_mse)
    scores = _generation_metrics(args, out, real_features)
    history = provenance(record)
    metrics = {
        "model": str(args.model), "pipeline": type(fs_pipe).__name__, "converted": sorted(components),
        "K": K, "method": method, "calibrated": history["calibrated"], "budget": history["budget"],
        "finetuned": history["finetuned"], "history": history["history"], "source": history["source"],
        "reference": reference, "scheduler": scheduler_record(fs_pipe),
        "steps": args.steps, "eta": args.eta, "prompts": list(options.prompts or []),
        "guidance_scale": options.guidance_scale, "num_images": args.num_images, "batch_size": args.batch_size,
        "seed": args.seed, "processes": accelerator.num_processes, "threads_per_process": torch.get_num_threads(),
        "images_written": {"original": len(rows), "fs": len(rows)},
        "sites": sum(a.num_sites for m in components.values() for _, a in fs_activations(m)),
        "mse": mean_mse, "psnr": psnr,
        "spikes_per_neuron_per_call": energy.spikes_per_neuron,
        "spikes_per_image": energy.spikes_per_image,
        **_metric_entries(scores),
        "energy": energy.to_json(),
        "per_image": rows,
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    header = f"FS ({history['summary']}; {', '.join(sorted(components))})"
    _write_comparison(out, rows, f"{header}\nvs {reference['description']}: mean PSNR {psnr:.2f} dB over "
                                 f"{args.num_images} images, {args.steps} steps")
    run_name = f"FS K={K} {method}{'+cal' if history['calibrated'] else ''}{'+ft' if history['finetuned'] else ''}"
    plot_firing_rates({run_name: energy.firing_rates}, out / "firing_rates.png", K=K,
                      break_even=constants.break_even, title=f"{run_name}: spikes per neuron per call, per site")
    plot_energy_split({run_name: energy.by_kind}, constants, out / "energy.png", steps=args.steps)
    print(f"\n{header}\n  vs {reference['description']}, {type(fs_pipe).__name__}, {args.num_images} images, "
          f"{args.steps} steps:")
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


def _pipelines(args: argparse.Namespace, device: torch.device):
    """(reference pipeline, FS pipeline, resolved sampling options, conversion summary,
    reference record) for the flags."""
    try:
        pipe = load_pipeline(args.model, scheduler=args.scheduler)
        options = SamplingOptions(args.steps, args.eta, prompts_from_flags(args), args.guidance_scale).resolve(pipe)
        done = converted_components(pipe)
        if done:
            given = [f"--{flag}" for flag in ("K", "method", "convert") if getattr(args, flag) is not None]
            if given:
                raise ValueError(f"{args.model} is already converted; {', '.join(given)} apply to plain pipelines")
            summary = "\n".join(f"{n}: already converted ({history_summary(m.fs_conversion)})" for n, m in done.items())
            plain = None
        else:
            plain = copy.deepcopy(pipe)
            summary = convert_from_flags(pipe, args, DEFAULT_K)
    except (FileNotFoundError, OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    try:
        original, reference = reference_pipeline(pipe, args.reference or "source", args.scheduler, original=plain)
    except (FileNotFoundError, OSError, ValueError) as e:
        raise SystemExit(f"error: reference: {e}") from None
    return original.to(device), pipe.to(device), options, summary, reference


def _real_images(args: argparse.Namespace) -> Optional[str]:
    """The --real source (None: no generation metrics), checked with the metric flags before any work."""
    embedded = Path(args.model).expanduser().resolve() == DEFAULT_MODEL or recorded_source(args.model) == EMBEDDED
    default = "digits" if embedded else None
    real = args.real or default
    if real is None or real == "none":
        return None
    try:
        n_real = None if real == "digits" else count_images(real)
        check_metric_args(n_real, args.num_images, args.metrics, args.kid_subset_size)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: generation metrics: {e}") from None
    return real


def _real_features(args: argparse.Namespace, real: Optional[str]):
    """The real images' features (before sampling, so a bad set fails early), or None."""
    if real is None:
        return None
    try:
        feats = extract_features(real, args.feature_extractor, args.inception_weights, args.metrics, what="real")
        check_metric_args(feats.n, args.num_images, args.metrics, args.kid_subset_size)
        return feats
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: generation metrics: {e}") from None


def _generation_metrics(args: argparse.Namespace, out: Path, real_features) -> dict:
    """FID, KID, IS of the original and the FS samples against real images (none without them)."""
    if real_features is None:
        return {}
    try:
        return {name: generation_metrics(real_features, out / name, args.feature_extractor, args.inception_weights,
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


def _write_comparison(out: Path, rows: list[dict], title: str, pairs: int = 16) -> None:
    """comparison.png: the first ``pairs`` images of the original and the FS model, labelled, with PSNRs."""
    from PIL import Image

    n = min(len(rows), pairs)
    stacks = []
    for sub in ("original", "fs"):
        arrays = [np.asarray(Image.open(out / sub / f"{i:05d}.png")) for i in range(n)]
        stacks.append(np.stack([a[..., None] if a.ndim == 2 else a for a in arrays]))
    plot_comparison(stacks[0], stacks[1], out / "comparison.png", [r["psnr"] for r in rows[:n]], title)
