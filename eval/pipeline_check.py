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
import string
import sys
import tempfile
import time
from pathlib import Path

import torch

from fs_neurons.utils.files import atomic_write_text
from spiking_ddim.energy import measure_cost
from spiking_ddim.pipelines import (
    SamplingOptions,
    convert_pipeline,
    decoder,
    generate,
    load_pipeline,
    save_pipeline,
    use_ddim_scheduler,
)

RESULTS = Path(__file__).resolve().parent / "results"
_ENCODER = ("DownEncoderBlock2D",)
_DECODER = ("UpDecoderBlock2D",)


def ddpm_cifar10():
    """google/ddpm-cifar10-32: a 35.7M-parameter pixel UNet, 3 x 32 x 32."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    unet = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256),
                       layers_per_block=2, down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D",
                                                            "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), downsample_padding=0,
                       flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6)
    return DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000)), SamplingOptions(steps=2)


def ldm_celebahq():
    """CompVis/ldm-celebahq-256: a VQ autoencoder (256 x 256 images, 3 x 64 x 64 latents) and a latent UNet."""
    from diffusers import DDIMScheduler, LDMPipeline, UNet2DModel, VQModel

    vq = VQModel(in_channels=3, out_channels=3, block_out_channels=(128, 256, 512), layers_per_block=2,
                 down_block_types=_ENCODER * 3, up_block_types=_DECODER * 3, latent_channels=3,
                 num_vq_embeddings=8192, vq_embed_dim=3, sample_size=256)
    unet = UNet2DModel(sample_size=64, in_channels=3, out_channels=3, block_out_channels=(224, 448, 672, 896),
                       layers_per_block=2, attention_head_dim=32,
                       down_block_types=("DownBlock2D",) + ("AttnDownBlock2D",) * 3,
                       up_block_types=("AttnUpBlock2D",) * 3 + ("UpBlock2D",))
    scheduler = DDIMScheduler(beta_start=0.0015, beta_end=0.0195, beta_schedule="linear", clip_sample=False)
    return LDMPipeline(vqvae=vq, unet=unet, scheduler=scheduler), SamplingOptions(steps=2)


def stable_diffusion_v1_5(folder: Path):
    """Stable Diffusion v1.5: 512 x 512 images, 4 x 64 x 64 latents, 77-token CLIP ViT-L/14 text."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tokens = ["<|startoftext|>", "<|endoftext|>", *string.ascii_lowercase, *(c + "</w>" for c in string.ascii_lowercase)]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                        hidden_act="quick_gelu", bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(sample_size=64, in_channels=4, out_channels=4, cross_attention_dim=768,
                                attention_head_dim=8, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                        down_block_types=_ENCODER * 4, up_block_types=_DECODER * 4, latent_channels=4,
                        sample_size=512)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return pipe, SamplingOptions(steps=2, prompts=("a photograph of a cat",), guidance_scale=7.5)


def check(name: str, pipe, options: SamplingOptions, K: int, save: bool) -> dict:
    """Convert, sample both from the same noise, count the cost, optionally round-trip."""
    use_ddim_scheduler(pipe)  # as load_pipeline and sample.py do
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()  # built here in training mode; loaded pipelines are in eval mode
    components = ["unet"] + ([decoder(pipe)] if decoder(pipe) else [])
    row: dict = {"pipeline": type(pipe).__name__, "architecture": name, "K": K, "steps": options.steps,
                 "parameters": {n: sum(p.numel() for p in m.parameters()) for n, m in pipe.components.items()
                                if isinstance(m, torch.nn.Module)}}
    t0 = time.perf_counter()
    original = generate(pipe, [0], options)
    row["original_seconds"] = round(time.perf_counter() - t0, 1)
    fs = copy.deepcopy(pipe)
    t0 = time.perf_counter()
    reports = convert_pipeline(fs, K=K, components=components)
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
