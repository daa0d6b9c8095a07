"""The architectures of the hub pipelines users convert, built with random weights (no hub
here): google/ddpm-cifar10-32, CompVis/ldm-celebahq-256 and Stable Diffusion v1.5, each
with sampling options for a short run. What they show is that conversion, sampling,
accounting and saving work at full size; with random weights their images and spikes say
nothing about trained models.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from ..pipelines import SamplingOptions

_ENCODER = ("DownEncoderBlock2D",)
_DECODER = ("UpDecoderBlock2D",)


def as_loaded(pipe):
    """``pipe`` with a DDIM scheduler and every model in eval mode, as ``load_pipeline``
    gives a pipeline (built here, its models start in training mode, where FS sites code
    every call in full)."""
    import torch

    from ..pipelines import use_ddim_scheduler

    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.eval()
    return use_ddim_scheduler(pipe)


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
