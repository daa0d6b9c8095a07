"""The device check (``spiking-ddim bench``): what users run on a device (a GPU), each
check recorded with its figures, on the embedded digits DDIM.

* ``environment``: torch / CUDA versions, the device's name, bf16 support.
* ``sample``: convert (K), sample in float32 and under autocast to the reduced dtype (what
  ``--mixed-precision`` does in training) from the same noise as the float32 original;
  PSNR of both against it, KID (digits features) of the autocast images, spikes per neuron
  and the SNN/ANN energy ratio.
* ``calibrate``: calibration of the float32 FS pipeline on the device; seconds and how far
  the summed site MSE came down.
* ``train``: ``train snn`` for a few steps in mixed precision, in a subprocess (on the CPU
  when the device is the CPU); its first and last loss.
* ``speed``: median seconds of one UNet forward pass: the ANN, the FS model's exact lookup
  and its spike simulation.

Settings (:class:`CheckSettings`) name the device, the reduced dtype, K and the sizes;
:func:`run_checks` runs every check, recording a failed one's error and going on.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from .calibration import calibrate
from .defaults import DEFAULT_MODEL
from .energy import measure_cost
from .metrics import compare, generation_metrics
from .pipelines import SamplingOptions, convert_pipeline, generate, load_pipeline
from .speed import unet_forward_seconds

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class CheckSettings:
    """What the checks run: reduced ``dtype`` (bf16 / fp16), FS time steps ``K``, images of the
    sample check, DDIM ``steps``, images recorded for calibration, optimizer steps of the
    train check, the speed check's ``batch`` and timed ``repeats``."""

    dtype: str = "bf16"
    K: int = 8
    num_images: int = 256
    steps: int = 20
    calibration_images: int = 16
    train_steps: int = 20
    batch: int = 256
    repeats: int = 10


def check_environment(args: CheckSettings, device: torch.device) -> dict:
    cuda = device.type == "cuda"
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine(),
            "bf16_supported": torch.cuda.is_bf16_supported() if cuda else True, "threads": torch.get_num_threads()}


def check_sample(args: CheckSettings, device: torch.device) -> dict:
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
    fp32, autocast = compare(reference, fs32), compare(reference, low)
    return {"K": args.K, "autocast_dtype": args.dtype, "num_images": args.num_images, "steps": args.steps,
            "sample_seconds": seconds, "psnr_fp32": fp32["mean_psnr"], "psnr_median_fp32": fp32["psnr_median"],
            f"psnr_{args.dtype}": autocast["mean_psnr"], f"psnr_median_{args.dtype}": autocast["psnr_median"],
            "kid_digits": kid.kid_mean, "spikes_per_neuron": energy.spikes_per_neuron, "energy_ratio": energy.ratio}


def check_calibrate(args: CheckSettings, device: torch.device) -> dict:
    fs = load_pipeline(DEFAULT_MODEL).to(device)
    convert_pipeline(fs, K=args.K)
    t0 = time.perf_counter()
    sites = calibrate(fs, SamplingOptions(steps=args.steps), num_images=args.calibration_images)
    return {"seconds": time.perf_counter() - t0, "sites": len(sites),
            "summed_mse_before": sum(s.mse_before for s in sites), "summed_mse_after": sum(s.mse_after for s in sites)}


def check_train(args: CheckSettings, device: torch.device) -> dict:
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


def check_speed(args: CheckSettings, device: torch.device) -> dict:
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


CHECKS = {"environment": check_environment, "sample": check_sample, "calibrate": check_calibrate,
          "train": check_train, "speed": check_speed}


def run_checks(settings: CheckSettings, device: torch.device,
               progress: Optional[Callable[[str], None]] = None) -> dict:
    """Every check on ``device``: {"device", "date", "checks": {name: {"ok", figures...,
    "check_seconds"} or {"ok": False, "error", "traceback"}}}; ``progress(name)`` before each."""
    results: dict = {"device": str(device), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "checks": {}}
    for name, check in CHECKS.items():
        if progress is not None:
            progress(name)
        t0 = time.perf_counter()
        try:
            results["checks"][name] = {"ok": True, **check(settings, device)}
        except Exception as e:  # noqa: BLE001 - a failed check is a result; the others still run
            results["checks"][name] = {"ok": False, "error": f"{type(e).__name__}: {e}",
                                       "traceback": traceback.format_exc()[-3000:]}
        results["checks"][name]["check_seconds"] = time.perf_counter() - t0
    return results
