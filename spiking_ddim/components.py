"""Which component of a diffusers pipeline is which: its denoiser (the UNet) and its decoder."""

from __future__ import annotations

from typing import Optional

from diffusers import DiffusionPipeline
from torch import nn

DECODERS = ("vae", "vqvae")  # autoencoder components whose decoder can be converted
CONVERTIBLE = ("unet",) + DECODERS


def denoiser(pipe: DiffusionPipeline) -> nn.Module:
    """The pipeline's UNet; ``ValueError`` for a pipeline without one."""
    unet = getattr(pipe, "unet", None)
    if not isinstance(unet, nn.Module):
        raise ValueError(f"{type(pipe).__name__} has no UNet (components: {', '.join(pipe.components)}); "
                         "spiking-ddim converts pipelines whose denoiser is a diffusers UNet")
    return unet


def decoder(pipe: DiffusionPipeline) -> Optional[str]:
    """The name of the pipeline's autoencoder component (``vae``, ``vqvae``), or None for a pixel-space model."""
    return next((n for n in DECODERS if isinstance(getattr(pipe, n, None), nn.Module)), None)
