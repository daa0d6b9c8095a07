"""Delta coding across denoising steps: FS sites that spike only for what changed.

A denoiser runs once per denoising step, and consecutive steps give its activations nearly
the same values. With delta coding (:class:`spiking_ddim.codings.DeltaCoding`) every call site of a
converted model gets a :class:`DeltaEncoder` beside its FS neuron. Per image and
per sampling run:

* the first denoising step sends the site's full K-step FS code (as step coding does), and
  the encoder keeps that as the value sent so far;
* every later step computes the activation exactly (a graded neuron) and sends only the
  change since the value sent so far, as a signed FS code of K steps (two polarities);
  error feedback keeps the unsent rest for the next step, so quantisation error does not
  accumulate, and a value that did not change sends nothing;
* the layer a site feeds keeps its accumulated output and adds the contribution of the
  change: W (sent + code) = W sent + W code, so computing the layer on the transmitted
  value (as the model does) gives the same result, and its accumulates are those of the
  code's spikes alone (what :class:`spiking_ddim.energy.CostMeter` counts).

State: every encoder holds one value per input element, so image i's outputs never depend
on its batch companions, and classifier-free guidance's unconditional and conditional
halves (rows of one batch) keep separate state, all of it in :class:`~fs_neurons.state.Stateful`
modules (the encoders, and the model's :class:`~spiking_ddim.run_state.RunClock`). A run starts again
(:func:`fs_neurons.reset_net`) whenever the model is called with a timestep not below the
previous call's, or with a batch of another shape: diffusers' samplers count timesteps
down, so every pipeline ``__call__`` starts fresh by itself. Call ``reset_net(model)``
yourself to start a run with the same shape and a lower timestep.

Delta coding needs a model called once per denoising step with ``(sample, timestep)``
(UNet2DModel, UNet2DConditionModel); autoencoders decode once per image and keep step
coding. The encoders are fitted by :func:`spiking_ddim.calibration.fit_delta` to the changes the sites see when the
pipeline samples (recorded like calibration records inputs), with the exact method, a
price per spike (``spike_weight``) trading error for spikes. Training mode, and the block
of :func:`spiking_ddim.run_state.step_coding`, code every call in full (calibration and fine-tuning, which run
recorded calls in shuffled order, use it).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from fs_neurons import FSNeuron
from fs_neurons.delta import DeltaFSNeuron
from fs_neurons.graded import GradedDeltaNeuron

from .run_state import check_denoiser, install_run_clock, remove_run_clock
from .sites import fs_activations


class DeltaEncoder(DeltaFSNeuron):
    """A call site's delta encoder: what :class:`~spiking_ddim.fs_activation.FSActivation`
    calls in eval mode instead of its FS neuron (see the module docstring)."""

    def transmit(self, neuron: FSNeuron, x: torch.Tensor, exact: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """The value the site sends for input ``x`` (any shape): at a run's first call the
        full code of ``neuron`` and the correction of its error, later the change of
        ``exact(x)`` since what was sent; ``x``'s dtype and shape."""
        if not self.started:
            if not bool(self.fitted):
                raise RuntimeError("this site's delta encoder is not fitted; fit the encoders to the pipeline's "
                                   "changes with spiking_ddim.fit_delta(pipe, options) before sampling")
            self.start(*neuron.code(x), neuron.K)
        return self(exact(x))


class GradedEncoder(GradedDeltaNeuron, DeltaEncoder):
    """A call site's graded-change encoder (:mod:`fs_neurons.graded`): a run's first call sends
    the site's full FS code, every later call one b-bit value per element that changed beyond
    the dead zone (:class:`spiking_ddim.codings.GradedCoding`)."""


def install_encoders(model: nn.Module, make: Callable[[], DeltaEncoder]) -> None:
    """Give every FSActivation of ``model`` one unfitted encoder per call site, made by
    ``make`` (say ``lambda: DeltaEncoder(K)``; on its neurons' device), and ``model`` a run
    clock (:func:`spiking_ddim.run_state.install_run_clock`); see the module docstring."""
    check_denoiser(model)
    for _, act in fs_activations(model):
        device = act.neurons[0].h.device
        act.encoders = nn.ModuleList(make().to(device) for _ in range(act.num_sites))
        act.encoders.train(act.training)
    install_run_clock(model)


def remove_encoders(model: nn.Module) -> None:
    """Undo :func:`install_encoders`."""
    for _, act in fs_activations(model):
        act.encoders = None
    remove_run_clock(model)


def encoders(model: nn.Module) -> list[tuple[str, DeltaEncoder]]:
    """Every delta encoder of ``model``, named ``path[i]`` like its site."""
    return [(f"{path}[{i}]", e) for path, act in fs_activations(model) if act.encoders is not None
            for i, e in enumerate(act.encoders)]
