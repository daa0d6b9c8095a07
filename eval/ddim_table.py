#!/usr/bin/env python
"""Network-level benchmark: a DDIM with its Swish replaced by FS neurons, per K and method.

For the embedded digits DDIM (or ``--model``): the original network's row, then for each
K and method (random, gaussian, tbpi, ours from the bank; ours+cal = ours calibrated to
each site's inputs) the FS model's

* image loss (a) against the original from identical noise: ``mse``, ``psnr`` (dB);
* image loss (b), the paper's: ``mae_x0`` between held-out images and the predicted
  clean image at random timesteps;
* KID against held-out real images (``kid_mean``, ``kid_std``, ``feature_extractor``);
* ``spikes_per_neuron`` (mean spikes per neuron per call) and ``sample_seconds``.

Writes eval/results/ddim_table.{json,md,png}. ``--finetuned DIR`` adds rows for fine-tuned
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

import matplotlib

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere: import eval.*
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from eval.image_loss import compare, x0_mae  # noqa: E402
from eval.kid import kid  # noqa: E402
from fs_neurons.files import atomic_write, atomic_write_text  # noqa: E402
from spiking_ddim.modeling import DEFAULT_MODEL  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ["random", "gaussian", "tbpi", "ours", "ours+cal"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="diffusers model directory or hub id (default: embedded)")
    p.add_argument("--K", type=int, nargs="+", default=[4, 8, 12, 16], help="time steps (default: %(default)s)")
    p.add_argument("--methods", nargs="*", choices=METHODS, default=METHODS, help="FS methods (default: all)")
    p.add_argument("--finetuned", type=Path, nargs="*", default=[],
                   help="fine-tuned converted model directories (train.py snn outputs) to add as rows")
    p.add_argument("--update", action="store_true",
                   help="keep the existing table's rows and replace only those this run computes (same K, method "
                        "and fine-tuned flag); the original network's row is always recomputed")
    p.add_argument("--num-images", type=int, default=1000, help="samples per row (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=100, help="sampling batch size (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed SEED+i (default: %(default)s)")
    p.add_argument("--real", default="digits", help="held-out real images: 'digits' or a folder (default: %(default)s)")
    p.add_argument("--feature-extractor", choices=["auto", "inception", "digits"], default="auto", help="KID features")
    p.add_argument("--inception-weights", help="Inception weights file for offline KID")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory (default: eval/results)")
    p.add_argument("--overwrite", action="store_true", help="replace existing result files")
    return p.parse_args(argv)


def sample_all(unet, scheduler, n, steps, batch, seed):
    from spiking_ddim.diffusion import ddim_sample

    t0 = time.perf_counter()
    out = torch.cat([ddim_sample(unet, scheduler, range(seed + s, seed + min(s + batch, n)), steps)
                     for s in range(0, n, batch)])
    return out, time.perf_counter() - t0


def evaluate(name, unet, scheduler, reference, held_out, args, K=None, calibrated=False, finetuned=False) -> dict:
    """One table row for ``unet`` (original or converted)."""
    from spiking_ddim.sampling import record_spikes, spike_totals

    record_spikes(unet, True)
    images, seconds = sample_all(unet, scheduler, args.num_images, args.steps, args.batch_size, args.seed)
    spikes = spike_totals(unet)
    record_spikes(unet, False)
    r = kid(args.real, images, args.feature_extractor, args.inception_weights)
    row = {"K": K, "method": name, "calibrated": calibrated, "finetuned": finetuned,
           "mae_x0": x0_mae(unet, scheduler, held_out, seed=args.seed),
           "kid_mean": r.mean, "kid_std": r.std, "feature_extractor": r.feature_extractor, "kid_label": r.label,
           "spikes_per_neuron": spikes.per_activation if K is not None else None,
           "sample_seconds": round(seconds, 1), "num_images": args.num_images, "steps": args.steps}
    if reference is None:
        row.update(psnr=None, mse=0.0)
    else:
        m = compare(reference, images)
        row.update(psnr=m["mean_psnr"], mse=m["mean_mse"])
    return row, images


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with the rows of ``new`` replacing those of the same (K, method, finetuned)."""
    key = lambda r: (r["K"] or 0, r["method"] != "original", r["finetuned"], METHODS.index(r["method"])  # noqa: E731
                     if r["method"] in METHODS else len(METHODS), r["method"])
    fresh = {key(r) for r in new}
    return sorted([r for r in old if key(r) not in fresh] + new, key=key)


def markdown(rows: list[dict], args) -> str:
    label = rows[0]["kid_label"]
    lines = ["# Spiking DDIM: FS neurons in the embedded digits DDIM",
             "",
             f"{args.num_images} samples per row, {args.steps} DDIM steps (eta 0), same seeds for every row. "
             f"PSNR / MSE: FS samples vs the original's from identical noise; x0-MAE: the paper's image loss on "
             f"held-out images; {label} against held-out real images. Written by `python eval/ddim_table.py`.",
             "",
             f"| K | method | fine-tuned | PSNR (dB) | MSE | x0-MAE | {label} | spikes/neuron | sample s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        psnr = "-" if r["psnr"] is None else ("inf" if math.isinf(r["psnr"]) else f"{r['psnr']:.2f}")
        spikes = "-" if r["spikes_per_neuron"] is None else f"{r['spikes_per_neuron']:.3f}"
        lines.append(f"| {r['K'] or '-'} | {r['method']} | {'yes' if r['finetuned'] else 'no'} | {psnr} | "
                     f"{r['mse']:.2e} | {r['mae_x0']:.4f} | {r['kid_mean']:.5f} +- {r['kid_std']:.5f} | "
                     f"{spikes} | {r['sample_seconds']} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    original = next(r for r in rows if r["method"] == "original")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, key, title in zip(axes, ("kid_mean", "mae_x0", "psnr"),
                              (original["kid_label"], "image loss (x0-MAE)", "PSNR vs original (dB)")):
        for m in METHODS:
            pts = sorted((r["K"], r[key]) for r in rows if r["method"] == m and not r["finetuned"])
            if pts:
                ax.plot(*zip(*pts), "o-", label=m)
        tuned = sorted((r["K"], r[key]) for r in rows if r["finetuned"])
        if tuned:
            ax.plot(*zip(*tuned), "k*", markersize=12, label="fine-tuned")
        if original[key] is not None:
            ax.axhline(original[key], color="gray", ls="--", label="original")
        ax.set_xlabel("K")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    from spiking_ddim import convert_unet, load_model
    from spiking_ddim.calibrate import calibrate
    from spiking_ddim.data import load_images
    from spiking_ddim.diffusion import load_scheduler
    from spiking_ddim.modeling import resolve_model_dir

    files = [args.out / f"ddim_table.{ext}" for ext in ("json", "md", "png")]
    if any(f.exists() for f in files) and not (args.overwrite or args.update):
        print(f"error: results exist in {args.out}; pass --overwrite to replace them or --update to add rows",
              file=sys.stderr)
        return 2
    if args.update and not files[0].is_file():
        print(f"error: --update needs an existing {files[0]}", file=sys.stderr)
        return 2
    model_dir = resolve_model_dir(args.model)
    unet = load_model(model_dir).eval()
    scheduler = load_scheduler(model_dir)
    held_out = load_images(args.real, unet.config.sample_size, "test")
    jobs = [(K, m) for K in args.K for m in args.methods]
    bar = tqdm(total=1 + len(jobs) + len(args.finetuned), desc="ddim_table", unit="row", dynamic_ncols=True)
    row, reference = evaluate("original", unet, scheduler, None, held_out, args)
    new_rows = [row]
    bar.update()
    for K, method in jobs:
        bar.set_postfix_str(f"K={K} {method}")
        fs = copy.deepcopy(unet)
        convert_unet(fs, K=K, method=method.replace("+cal", ""))
        fs.eval()
        if method.endswith("+cal"):
            calibrate(fs, scheduler, seed=args.seed)
        new_rows.append(evaluate(method, fs, scheduler, reference, held_out, args, K,
                                 calibrated=method.endswith("+cal"))[0])
        bar.update()
    for path in args.finetuned:
        tuned = load_model(path).eval()
        spec = tuned.fs_conversion
        name = spec["method"] + ("+cal" if spec.get("calibrated") else "")
        new_rows.append(evaluate(name, tuned, scheduler, reference, held_out, args, spec["K"],
                                 calibrated=bool(spec.get("calibrated")), finetuned=True)[0])
        bar.update()
    bar.close()
    rows = merge_rows(json.loads(files[0].read_text()), new_rows) if args.update else new_rows
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(files[0], json.dumps(rows, indent=1) + "\n")
    md = markdown(rows, args)
    atomic_write_text(files[1], md)
    plot(rows, files[2])
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
