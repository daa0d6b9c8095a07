"""Spiking diffusion models: diffusers pipelines with few-spikes (FS) neurons in place of Swish.

    from spiking_ddim import SamplingOptions, convert_pipeline, generate, load_pipeline, save_pipeline
    pipe = load_pipeline("path/to/pipeline")     # DDPM, DDIM, LDM, Stable Diffusion; dir or hub id
    reports = convert_pipeline(pipe, K=8, method="ours", components=("unet",))
    print(reports["unet"].summary())
    save_pipeline(pipe, "out/fs-pipeline")       # loads back with load_pipeline

    with measure_cost(pipe) as meter:            # spikes, MACs, ACs of every forward pass
        images = generate(pipe, range(16), SamplingOptions(steps=20))
    print(meter.report().energy(num_images=16).summary())

``convert_unet`` / ``load_model`` do the same for one model (a UNet, an autoencoder);
``prepare(pipe, ConversionSpec(...), options)`` is the whole recipe: convert, calibrate,
fit a coding's encoders (:mod:`spiking_ddim.recipe`).
``spiking_ddim.DEFAULT_MODEL`` is the embedded digits DDIM's directory. The names below
are imported on first use, so ``import spiking_ddim`` (and the command line's ``--help``)
does not load torch. Plain ``DiffusionPipeline.from_pretrained`` loads a saved FS
pipeline once ``spiking_ddim.modeling`` is imported (diffusers looks its Spiking classes up
among imported modules); before, it stops with an error naming that module.
"""

from fs_neurons.utils.lazy import lazy_exports

from .defaults import DEFAULT_MODEL

_EXPORTS = {
    "ConversionReport": "convert", "SiteReport": "convert", "convert_unet": "convert", "revert_unet": "convert",
    "CostReport": "energy", "EnergyConstants": "energy", "EnergyReport": "energy", "measure_cost": "energy",
    "FSActivation": "fs_activation",
    "reset_net": "run_state",
    "ConversionSpec": "spec", "prepare": "recipe",
    "load_model": "modeling",
    "FSConfig": "record",
    "SamplingOptions": "pipelines", "convert_pipeline": "pipelines", "generate": "pipelines",
    "load_pipeline": "pipelines", "save_pipeline": "pipelines",
    "reference_pipeline": "reference",
    "SiteInputMonitor": "monitors",
    "fs_activations": "sites", "original_activations": "sites",
}

__all__ = ["DEFAULT_MODEL", *sorted(_EXPORTS)]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
