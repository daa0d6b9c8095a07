#!/usr/bin/env python
"""Ship a `train ann` run as an embedded model: its pipeline with 16-bit weights in the
package (spiking_ddim/photos_model by default), the run's settings beside it as
training.json, and a grid of its samples (samples.png, 64 images, 20 DDIM steps, seeds
0-63). The shipped weights are what every figure of the model measures: they are loaded
back as float32, so the float16 rounding is part of the model, not a difference between
runs."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from fs_neurons.utils.files import atomic_directory
from spiking_ddim.data import image_grid, save_png
from spiking_ddim.embedded import EMBEDDED_MODELS
from spiking_ddim.pipelines import SamplingOptions, generate, load_pipeline

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("run", type=Path, help="a `spiking-ddim train ann` output folder (with model/ and train_config.json)")
    p.add_argument("--name", choices=sorted(EMBEDDED_MODELS), default="photos",
                   help="which embedded model it becomes (default: %(default)s)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float16", help="stored weights (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace the shipped model")
    args = p.parse_args(argv)
    dest = EMBEDDED_MODELS[args.name].directory
    if dest.exists() and not args.overwrite:
        print(f"error: {dest} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    if not (args.run / "model").is_dir() or not (args.run / "train_config.json").is_file():
        print(f"error: {args.run} is not a finished `train ann` run (model/ and train_config.json)", file=sys.stderr)
        return 2
    pipe = load_pipeline(args.run / "model")
    pipe.unet.to(DTYPES[args.dtype])
    with atomic_directory(dest) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        shutil.copy(args.run / "train_config.json", tmp / "training.json")
        shipped = load_pipeline(tmp)
        save_png(image_grid(generate(shipped, range(64), SamplingOptions(steps=20))), tmp / "samples.png")
    weights = dest / "unet" / "diffusion_pytorch_model.safetensors"
    params = sum(t.numel() for t in shipped.unet.parameters())
    print(json.dumps({"model": str(dest), "parameters": params, "weights_bytes": weights.stat().st_size,
                      "dtype": args.dtype}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
