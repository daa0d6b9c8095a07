"""Spiking diffusion models: diffusers UNets with few-spikes (FS) neurons in place of Swish.

    from spiking_ddim import convert_unet, load_model
    unet = load_model("path/to/ddim")           # a diffusers model directory or hub id
    report = convert_unet(unet, K=8, method="ours")
    print(report.summary())
    unet.save_pretrained("out/fs-ddim")          # loads back with load_model

    with measure_cost(unet) as meter:            # spikes, MACs, ACs of every forward pass
        images = ddim_sample(unet, scheduler, seeds=range(16), steps=20)
    print(meter.report().energy(num_images=16).summary())
"""

from .convert import ConversionReport, SiteReport, convert_unet, fs_activations, revert_unet, set_mode
from .energy import CostReport, EnergyConstants, EnergyReport, measure_cost
from .fs_activation import FSActivation
from .modeling import load_model, spiking_class

__all__ = ["ConversionReport", "CostReport", "EnergyConstants", "EnergyReport", "FSActivation", "SiteReport",
           "convert_unet", "fs_activations", "load_model", "measure_cost", "revert_unet", "set_mode", "spiking_class"]
