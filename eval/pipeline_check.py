#!/usr/bin/env python
"""Offline check of the pipelines users convert, at their real architectures.

No model hub here, so each pipeline is built with the architecture (component configs) of
its hub model and random weights: google/ddpm-cifar10-32 (DDPMPipeline), CompVis/ldm-celebahq-256
(LDMPipeline: VQModel + UNet2DModel) and Stable Diffusion v1.5 (StableDiffusionPipeline:
UNet2DConditionModel, AutoencoderKL, a CLIP ViT-L/14 text encoder; a small letter
tokenizer replaces the real vocabulary). For each it converts the UNet and the decoder,
samples original and FS from the same noise through the pipeline's own ``__call__``
(prompt and classifier-free guidance for the text model), optionally saves and reloads,
and records: sites converted per component and whether any Swish is left, the seconds
each stage took, the ANN MACs and SNN MACs / ACs per image and the energy ratio from the
cost accounting, and whether a reload gives identical images. With random weights the
images, firing rates and energy ratio say nothing about trained models; what the run
shows is that conversion, sampling, accounting and saving work at full size.

Writes eval/results/pipeline_check.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from fs_neurons.utils.files import atomic_write_text
from spiking_ddim.benchmarks.architectures import as_loaded, ddpm_cifar10, ldm_celebahq, stable_diffusion_v1_5
from spiking_ddim.energy import measure_cost
from spiking_ddim.pipelines import (
    SamplingOptions,
    decoder,
    generate,
    load_pipeline,
    save_pipeline,
)
from spiking_ddim.recipe import ConversionSpec, prepare

RESULTS = Path(__file__).resolve().parent / "results"


def check(name: str, pipe, options: SamplingOptions, K: int, save: bool) -> dict:
    """Convert, sample both from the same noise, count the cost, optionally round-trip."""
    as_loaded(pipe)  # a DDIM scheduler and eval mode, as load_pipeline and sample.py give
    components = ["unet"] + ([decoder(pipe)] if decoder(pipe) else [])
    row: dict = {"pipeline": type(pipe).__name__, "architecture": name, "K": K, "steps": options.steps,
                 "parameters": {n: sum(p.numel() for p in m.parameters()) for n, m in pipe.components.items()
                                if isinstance(m, torch.nn.Module)}}
    t0 = time.perf_counter()
    original = generate(pipe, [0], options)
    row["original_seconds"] = round(time.perf_counter() - t0, 1)
    fs = copy.deepcopy(pipe)
    t0 = time.perf_counter()
    reports = prepare(fs, ConversionSpec(components=tuple(components), K=K), options).reports
    row["convert_seconds"] = round(time.perf_counter() - t0, 1)
    row["sites"] = {n: len(r.sites) for n, r in reports.items()}
    row["complete"] = all(r.complete for r in reports.values())
    t0 = time.perf_counter()
    with measure_cost(fs) as meter:
        images = generate(fs, [0], options)
    row["fs_seconds"] = round(time.perf_counter() - t0, 1)
    energy = meter.report().energy(1)
    row.update(image_shape=list(images.shape[1:]), max_abs_difference=float((images - original).abs().max()),
               ann_macs_per_image=energy.ann_macs_per_image, snn_macs_per_image=energy.snn_macs_per_image,
               snn_acs_per_image=energy.snn_acs_per_image, spikes_per_neuron=energy.spikes_per_neuron,
               energy_ratio=energy.ratio)
    if save:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            save_pipeline(fs, Path(tmp) / "fs")
            loaded = load_pipeline(Path(tmp) / "fs")
            row["reload_identical"] = bool(torch.equal(generate(loaded, [0], options), images))
            row["save_load_seconds"] = round(time.perf_counter() - t0, 1)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipelines", nargs="+", choices=["ddpm", "ldm", "sd"], default=["ddpm", "ldm", "sd"],
                   help="which architectures to check (default: all)")
    p.add_argument("--K", type=int, default=8, help="FS time steps (default: %(default)s)")
    p.add_argument("--save", action="store_true", help="also save, reload and compare each converted pipeline")
    p.add_argument("--out", type=Path, default=RESULTS / "pipeline_check.json", help="results file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing results file")
    args = p.parse_args(argv)
    if args.out.exists() and not args.overwrite:
        print(f"error: {args.out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        builders = {"ddpm": ("google/ddpm-cifar10-32", ddpm_cifar10), "ldm": ("CompVis/ldm-celebahq-256", ldm_celebahq),
                    "sd": ("stable-diffusion-v1-5", lambda: stable_diffusion_v1_5(Path(tmp)))}
        for key in args.pipelines:
            name, build = builders[key]
            torch.manual_seed(0)
            pipe, options = build()
            rows.append(check(name, pipe, options, args.K, args.save))
            print(json.dumps(rows[-1]), flush=True)
            del pipe
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
