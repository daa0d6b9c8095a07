"""The rate-coded IF baseline: what FS coding is compared with.

ANN-to-SNN conversion as spikingjelly's ``ann2snn`` does it: every activation becomes an
integrate-and-fire neuron with reset by subtraction that sees its input as a constant
current for T = K time steps; its threshold is balanced to the activation's 99.9th
percentile over recorded sampling runs (``ann2snn``'s robust max norm), and its output is
the spike count times threshold / K. For a constant input x that neuron spikes
floor(K x / theta) times (at most K), which is exactly an FS neuron whose K steps all have
reset h = output d = threshold T = theta / K: so the baseline runs on the same sites,
lookups and energy accounting as the FS neurons, with these parameters set per site. It
approximates ReLU (the rate code has no negative values), not Swish.
"""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline

from fs_neurons.utils.seeds import stream

from ..held_out import delta_fit_seeds
from ..pipelines import SamplingOptions, converted_components
from ..record import add_event
from ..sites import fs_activations
from .options import record_site_inputs

IF_PERCENTILE = 99.9


def rate_coded_if(pipe: DiffusionPipeline, options: SamplingOptions = SamplingOptions(), num_images: int = 16,
                  seed: int = 0, percentile: float = IF_PERCENTILE) -> list[dict]:
    """Turn every FS neuron of a converted pipeline into the rate-coded IF neuron (module
    docstring), thresholds balanced on ``num_images`` images' runs with ``options``, in
    place. Returns per site: name, threshold."""
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    inputs = record_site_inputs(pipe, options, num_images, seed=stream("calibration-inputs", seed))
    sites = []
    for name, model in converted_components(pipe).items():
        for path, act in fs_activations(model):
            for i, neuron in enumerate(act.neurons):
                x = inputs.samples(act, i).double()
                activation = act.exact(x)
                theta = float(torch.quantile(activation[:1_000_000], percentile / 100)) if activation.numel() else 0.0
                theta = theta if theta > 0 else 1.0  # a site that is never positive: any threshold sends nothing
                step = [theta / neuron.K] * neuron.K
                neuron.set_params(step, step, step)
                sites.append({"site": f"{path if name == 'unet' else f'{name}.{path}'}[{i}]", "threshold": theta})
        add_event(model, "if-baseline", images=num_images, image_seeds=delta_fit_seeds(num_images, seed),
                  steps=options.steps, seed=seed, percentile=percentile)
    return sites
