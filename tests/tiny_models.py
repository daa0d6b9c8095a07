"""Tiny diffusers models and pipelines with random weights, shared by the tests: UNets
(unconditional and text-conditional, 1 x 8 x 8) and DDPM, latent (VQ) and Stable
Diffusion pipelines, each sampled through its own ``__call__``."""

import json
import string
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    LDMPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
    UNet2DModel,
    VQModel,
)

from spiking_ddim.pipelines import SamplingOptions, use_ddim_scheduler

STEPS = SamplingOptions(steps=3)
PROMPTS = SamplingOptions(steps=3, prompts=("a cat", "a red car", "the sea"), guidance_scale=3.0)


def tiny_unet(seed=0):
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                       norm_num_groups=4)


def tiny_cond_unet(seed=0):
    torch.manual_seed(seed)
    return UNet2DConditionModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                                layers_per_block=1, cross_attention_dim=8, attention_head_dim=2, norm_num_groups=4,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))


def tiny_denoiser(in_channels, attention=True, seed=0):
    torch.manual_seed(seed)
    down = ("DownBlock2D", "AttnDownBlock2D" if attention else "DownBlock2D")
    up = ("AttnUpBlock2D" if attention else "UpBlock2D", "UpBlock2D")
    return UNet2DModel(sample_size=8, in_channels=in_channels, out_channels=in_channels, block_out_channels=(16, 32),
                       layers_per_block=1, norm_num_groups=8, down_block_types=down, up_block_types=up).eval()


AUTOENCODER = dict(in_channels=3, out_channels=3, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
                    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)


def tiny_ddpm(seed=0):
    """Pixel space, 3 x 8 x 8, with its own DDPM scheduler (as google/ddpm-cifar10-32)."""
    return DDPMPipeline(unet=tiny_denoiser(3, seed=seed), scheduler=DDPMScheduler(num_train_timesteps=100))


def tiny_ldm(seed=0):
    """A VQ autoencoder (3 x 16 x 16 images, 3 x 8 x 8 latents) and a latent UNet (as CompVis/ldm-celebahq-256)."""
    torch.manual_seed(seed)
    vq = VQModel(latent_channels=3, num_vq_embeddings=32, sample_size=16, **AUTOENCODER).eval()
    return LDMPipeline(vqvae=vq, unet=tiny_denoiser(3, attention=False, seed=seed),
                       scheduler=DDIMScheduler(num_train_timesteps=100))


def tiny_tokenizer(folder: Path):
    """A CLIP tokenizer over single letters and a few words, from files written here."""
    from transformers import CLIPTokenizer

    words = ["a</w>", "cat</w>", "red</w>", "car</w>", "the</w>", "sea</w>"]
    tokens = ["<|startoftext|>", "<|endoftext|>", *string.ascii_lowercase, *(c + "</w>" for c in string.ascii_lowercase),
              *words]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=12)


def tiny_sd(folder: Path, seed=0):
    """Text-conditional latent diffusion (as Stable Diffusion): 3 x 16 x 16 images, 4 x 8 x 8 latents."""
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_tokenizer(folder / "tokenizer")
    torch.manual_seed(seed)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37,
                                        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=12,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1)).eval()
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32),
                                layers_per_block=1, norm_num_groups=8, cross_attention_dim=32, attention_head_dim=4,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D")).eval()
    vae = AutoencoderKL(latent_channels=4, sample_size=16, **AUTOENCODER).eval()
    return StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                   scheduler=DDIMScheduler(num_train_timesteps=100), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


KINDS = {  # builder, sampling options, the decoder component, image shape
    "ddpm": (lambda tmp: tiny_ddpm(), STEPS, None, (3, 8, 8)),
    "ldm": (lambda tmp: tiny_ldm(), STEPS, "vqvae", (3, 16, 16)),
    "sd": (lambda tmp: tiny_sd(tmp), PROMPTS, "vae", (3, 16, 16)),
}


def build(kind, tmp_path):
    make, options, dec, shape = KINDS[kind]
    pipe = use_ddim_scheduler(make(tmp_path))
    return pipe, options, ("unet",) + ((dec,) if dec else ()), shape
