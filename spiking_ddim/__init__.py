"""Spiking diffusion models: diffusers pipelines with few-spikes (FS) neurons in place of Swish.

    from spiking_ddim import SamplingOptions, convert_pipeline, generate, load_pipeline, save_pipeline
    pipe = load_pipeline("path/to/pipeline")     # DDPM, DDIM, LDM, Stable Diffusion; dir or hub id
    reports = convert_pipeline(pipe, K=8, method="ours", components=("unet",))
    print(reports["unet"].summary())
    save_pipeline(pipe, "out/fs-pipeline")       # loads back with load_pipeline

    with measure_cost(pipe) as meter:            # spikes, MACs, ACs of every forward pass
        images = generate(pipe, range(16), SamplingOptions(steps=20))
    print(meter.report().energy(num_images=16).summary())

``convert_unet`` / ``load_model`` do the same for one model (a UNet, an autoencoder).
"""

from .convert import ConversionReport, SiteReport, convert_unet, revert_unet
from .energy import CostReport, EnergyConstants, EnergyReport, measure_cost
from .fs_activation import FSActivation
from .modeling import load_model, spiking_class
from .pipelines import SamplingOptions, convert_pipeline, generate, load_pipeline, save_pipeline
from .sites import fs_activations, set_mode

__all__ = ["ConversionReport", "CostReport", "EnergyConstants", "EnergyReport", "FSActivation", "SamplingOptions",
           "SiteReport", "convert_pipeline", "convert_unet", "fs_activations", "generate", "load_model", "load_pipeline",
           "measure_cost", "revert_unet", "save_pipeline", "set_mode", "spiking_class"]
