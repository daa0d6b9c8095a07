"""``spiking-ddim bench``: check a device (a GPU) with what users run there.

    spiking-ddim bench --device cuda --out eval/results/gpu_check.json

Five checks on the embedded digits DDIM, each recorded with its seconds, its figures
and, if it fails, the error (the run goes on to the next check):

* ``environment``: torch / CUDA versions, the device's name, bf16 support.
* ``sample``: convert (K=--K), sample --num-images images in float32 and under autocast
  to --dtype (what ``--mixed-precision`` does in training) from the same noise as the
  float32 original; PSNR of both against it, KID (digits features) of the autocast
  images, spikes per neuron and the SNN/ANN energy ratio.
* ``calibrate``: calibration of the float32 FS pipeline on the device; seconds and how
  far the summed site MSE came down.
* ``train``: ``train snn`` for --train-steps steps with ``--mixed-precision`` --dtype, in
  a subprocess (on the CPU when --device is cpu); its first and last loss.
* ``speed``: median seconds of one UNet forward pass (batch --batch): the ANN, the FS
  model's exact lookup and its spike simulation.

Exit status 1 when a check failed. The results file is written atomically.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

import torch

from fs_neurons.files import atomic_write_text

from ..calibrate import calibrate
from ..energy import measure_cost
from ..metrics import compare, generation_metrics
from ..modeling import DEFAULT_MODEL
from ..pipelines import SamplingOptions, convert_pipeline, generate, load_pipeline
from ..sites import fs_activations

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="check a device (GPU): sample, calibrate, train in mixed precision, speed",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    p.add_argument("--dtype", choices=["bf16", "fp16"], default="bf16",
                   help="reduced precision of the sample and train checks (default: %(default)s)")
    p.add_argument("--K", type=int, default=8, help="FS time steps (default: %(default)s)")
    p.add_argument("--num-images", type=int, default=256, help="images of the sample check (default: %(default)s)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps of sampling and calibration (default: %(default)s)")
    p.add_argument("--calibration-images", type=int, default=16,
                   help="images recorded for calibration (default: %(default)s)")
    p.add_argument("--train-steps", type=int, default=20, help="optimizer steps of the train check (default: %(default)s)")
    p.add_argument("--batch", type=int, default=256, help="batch of the speed check (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=10, help="timed forward passes per model (default: %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="results JSON file (e.g. eval/results/gpu_check.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing results file")
    p.set_defaults(run=run)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` calls after two warm-up calls."""
    times = []
    for n in range(repeats + 2):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        if n >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def check_environment(args: argparse.Namespace, device: torch.device) -> dict:
    cuda = device.type == "cuda"
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine(),
            "bf16_supported": torch.cuda.is_bf16_supported() if cuda else True, "threads": torch.get_num_threads()}


def check_sample(args: argparse.Namespace, device: torch.device) -> dict:
    pipe, fs = _converted(args.K, device)
    options, images = SamplingOptions(steps=args.steps), range(args.num_images)
    reference = generate(pipe, images, options)
    fs32 = generate(fs, images, options)
    t0 = time.perf_counter()
    with measure_cost(fs) as meter, torch.autocast(device.type, dtype=DTYPES[args.dtype]):
        low = generate(fs, images, options)
    seconds = time.perf_counter() - t0
    if not torch.isfinite(low).all():
        raise FloatingPointError(f"the {args.dtype} FS pipeline produced non-finite images")
    kid = generation_metrics("digits", low, "digits", metrics=("kid",), kid_subset_size=min(args.num_images, 100),
                             device=device)
    energy = meter.report().energy(args.num_images)
    return {"K": args.K, "autocast_dtype": args.dtype, "num_images": args.num_images, "steps": args.steps, "sample_seconds": seconds,
            "psnr_fp32": compare(reference, fs32)["mean_psnr"], f"psnr_{args.dtype}": compare(reference, low)["mean_psnr"],
            "kid_digits": kid.kid_mean, "spikes_per_neuron": energy.spikes_per_neuron, "energy_ratio": energy.ratio}


def check_calibrate(args: argparse.Namespace, device: torch.device) -> dict:
    fs = load_pipeline(DEFAULT_MODEL).to(device)
    convert_pipeline(fs, K=args.K)
    t0 = time.perf_counter()
    sites = calibrate(fs, SamplingOptions(steps=args.steps), num_images=args.calibration_images)
    return {"seconds": time.perf_counter() - t0, "sites": len(sites),
            "summed_mse_before": sum(s.mse_before for s in sites), "summed_mse_after": sum(s.mse_after for s in sites)}


def check_train(args: argparse.Namespace, device: torch.device) -> dict:
    env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": ""} if device.type == "cpu" else {})}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "spiking_ddim.cli", "train", "snn", "--K", str(args.K), "--steps",
               str(args.train_steps), "--mixed-precision", args.dtype, "--batch-size", "32", "--trajectories", "32",
               "--sampling-steps", str(args.steps),
               "--held-out", "0", "--log-every", "1", "--checkpoint-every", str(args.train_steps), "--out", tmp,
               "--overwrite"]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(f"train snn exited {r.returncode}: {r.stderr[-2000:]}")
        rows = [json.loads(line) for line in (Path(tmp) / "log.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in rows if "loss" in row]
    return {"mixed_precision": args.dtype, "steps": args.train_steps, "seconds": seconds,
            "first_loss": losses[0], "last_loss": losses[-1], "all_finite": all(math.isfinite(v) for v in losses)}


def check_speed(args: argparse.Namespace, device: torch.device) -> dict:
    pipe, fs = _converted(args.K, device)
    out = {"batch": args.batch, **unet_forward_seconds(pipe, fs, args.batch, args.repeats, device)}
    out["lookup_over_ann"] = out["lookup_seconds"] / out["ann_seconds"]
    out["simulate_over_lookup"] = out["simulate_seconds"] / out["lookup_seconds"]
    return out


def _converted(K: int, device: torch.device):
    """The embedded model on ``device`` and its FS conversion (K, the default bank entry)."""
    pipe = load_pipeline(DEFAULT_MODEL).to(device)
    fs = copy.deepcopy(pipe)
    convert_pipeline(fs, K=K)
    return pipe, fs


@torch.no_grad()
def unet_forward_seconds(pipe, fs_pipe, batch: int, repeats: int, device: torch.device,
                         simulate_repeats: int | None = None) -> dict:
    """Median seconds of one UNet forward pass (``batch`` noise images at t=500): the ANN
    (``ann_seconds``), the FS model's exact lookup (``lookup_seconds``) and its spike
    simulation (``simulate_seconds``, over ``simulate_repeats``, default ``repeats``); the
    FS neurons' modes are restored afterwards."""
    cfg = pipe.unet.config
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg.in_channels, cfg.sample_size, cfg.sample_size, generator=g).to(device)
    t = torch.full((batch,), 500, device=device)
    out = {"ann_seconds": median_seconds(lambda: pipe.unet(x, t), repeats, device),
           "lookup_seconds": median_seconds(lambda: fs_pipe.unet(x, t), repeats, device)}
    neurons = [n for _, act in fs_activations(fs_pipe.unet) for n in act.neurons]
    modes = [n.mode for n in neurons]
    for n in neurons:
        n.mode = "simulate"
    try:
        out["simulate_seconds"] = median_seconds(lambda: fs_pipe.unet(x, t), simulate_repeats or repeats, device)
    finally:
        for n, mode in zip(neurons, modes):
            n.mode = mode
    return out


CHECKS = {"environment": check_environment, "sample": check_sample, "calibrate": check_calibrate,
          "train": check_train, "speed": check_speed}


def run(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.overwrite:
        raise SystemExit(f"error: {args.out} exists; pass --overwrite to replace it")
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        raise SystemExit(f"error: --device {args.device}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {args.device}: this machine has no CUDA device (use --device cpu)")
    for flag in ("K", "num_images", "steps", "calibration_images", "train_steps", "batch", "repeats"):
        if getattr(args, flag) < 1:
            raise SystemExit(f"error: --{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    results: dict = {"device": str(device), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "checks": {}}
    for name, check in CHECKS.items():
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            results["checks"][name] = {"ok": True, **check(args, device)}
        except Exception as e:  # noqa: BLE001 - a failed check is a result; the others still run
            results["checks"][name] = {"ok": False, "error": f"{type(e).__name__}: {e}",
                                       "traceback": traceback.format_exc()[-3000:]}
        results["checks"][name]["check_seconds"] = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(results, indent=1) + "\n")
    for name, r in results["checks"].items():
        shown = {k: v for k, v in r.items() if k not in ("ok", "traceback")}
        print(f"{name:<12} {'ok ' if r['ok'] else 'FAILED'} {json.dumps(shown)}")
    print(f"wrote {args.out}")
    return 0 if all(r["ok"] for r in results["checks"].values()) else 1
