"""What calibration measures on the pipeline itself: each site's neurons, accumulates per
spike and the dense layers' MACs (one image through the FS pipeline), and each denoiser
site's sensitivity (how much noise at the site moves the denoiser's output), measured on
the recorded calls of a :class:`Probe`, which also scores whole choices of options.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers import DiffusionPipeline

from fs_neurons.utils.seeds import stream

from ..diffusion import ddim_noise_gain
from ..energy import measure_cost
from ..pipelines import DenoiserCalls, SamplingOptions, converted_components, generate, record_denoiser_calls
from ..sites import original_activations
from .options import SiteOptions


@dataclass
class Probe:
    """The denoiser's calls while sampling a few images, its original outputs on them (N, C,
    H, W) and each call's weight (N, 1, 1, 1): DDIM noise gain squared, mean 1."""

    calls: DenoiserCalls
    clean: torch.Tensor
    weight: torch.Tensor

    @torch.no_grad()
    def error(self, unet: torch.nn.Module) -> float:
        """The weighted MSE of ``unet``'s outputs on the calls against the original's."""
        return float((self.weight * (self.calls.run(unet).double().cpu() - self.clean) ** 2).mean())


@torch.no_grad()
def measure_sensitivity(pipe: DiffusionPipeline, options: SamplingOptions, found: SiteOptions, images: int = 2,
                         noise: float = 0.1, seed: int = stream("calibration-sensitivity")) -> None:
    """Each denoiser site's sensitivity: Gaussian noise of variance sigma^2 (``noise`` times
    the RMS of the site's Swish outputs, squared) added to its output raises the denoiser's
    output MSE, over the calls of sampling ``images`` images and weighted by how far each
    call's DDIM step moves with it (noise gain squared, mean 1), by a * sigma^2; a is the
    sensitivity. Measured with the original activations everywhere else. Skipped when a
    component other than the denoiser is converted (its sites have no such measure)."""
    components = converted_components(pipe)
    if set(components) != {"unet"}:
        return
    unet = components["unet"]
    with original_activations(unet):
        calls = record_denoiser_calls(pipe, range(images), options, seed=seed)
        gain = ddim_noise_gain(pipe.scheduler, calls.timestep).to(torch.float64) ** 2
        weight = (gain / gain.mean()).view(-1, *[1] * (calls.output.ndim - 1))
        found.probe = probe = Probe(calls, calls.run(unet).double().cpu(), weight)
        rms = {name: math.sqrt(found.options[key][-1].mse) for name, _, _, key in found.sites}  # the silent option
        for name, act, i, _ in found.sites:
            sigma = noise * rms[name]
            g = torch.Generator().manual_seed(seed)

            def perturb(module, _args, out, i=i, sigma=sigma, g=g):
                if module.site_index() == i:
                    return out + sigma * torch.randn(out.shape, generator=g, dtype=torch.float32).to(out.device, out.dtype)
                return None

            handle = act.register_forward_hook(perturb)
            try:
                found.sensitivity[name] = probe.error(unet) / max(sigma * sigma, 1e-300)
            finally:
                handle.remove()


@torch.no_grad()
def measure_costs(pipe: DiffusionPipeline, options: SamplingOptions, found: SiteOptions) -> None:
    with measure_cost(pipe) as meter:
        generate(pipe, range(1), options, seed=stream("calibration-costs"))
    report = meter.report()
    spiking = [s for s in report.sites if s.spikes > 0]
    mean_fanout = sum(s.acs for s in spiking) / max(sum(s.spikes for s in spiking), 1e-300)
    for s in report.sites:
        found.neurons[s.name] = s.neurons / report.samples
        found.acs_per_spike[s.name] = s.acs_per_spike if s.spikes > 0 else mean_fanout
    found.ann_macs = sum(lay.ann_macs for lay in report.layers) / report.samples
    found.dense_macs = sum(lay.snn_macs for lay in report.layers) / report.samples
