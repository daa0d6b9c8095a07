"""Delta coding across denoising steps: FS sites that spike only for what changed.

A denoiser runs once per denoising step, and consecutive steps give its activations nearly
the same values. With ``coding="delta"`` every call site of a converted model gets a
:class:`~fs_neurons.delta.DeltaFSNeuron` (its encoder) beside its FS neuron. Per image and
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
modules (the encoders, and the model's :class:`RunClock`). A run starts again
(:func:`fs_neurons.reset_net`) whenever the model is called with a timestep not below the
previous call's, or with a batch of another shape: diffusers' samplers count timesteps
down, so every pipeline ``__call__`` starts fresh by itself. Call ``reset_net(model)``
yourself to start a run with the same shape and a lower timestep.

Delta coding needs a model called once per denoising step with ``(sample, timestep)``
(UNet2DModel, UNet2DConditionModel); autoencoders decode once per image and keep step
coding. The encoders are fitted by :func:`spiking_ddim.calibration.fit_delta` to the changes the sites see when the
pipeline samples (recorded like calibration records inputs), with the exact method, a
price per spike (``spike_weight``) trading error for spikes. Training mode, and the block
of :func:`step_coding`, code every call in full (calibration and fine-tuning, which run
recorded calls in shuffled order, use it).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
from torch import nn

from fs_neurons.delta import DeltaFSNeuron
from fs_neurons.functional import temporarily
from fs_neurons.state import Stateful, reset_net

from .sites import fs_activations, is_autoencoder


class RunClock(Stateful):
    """When a denoiser's run starts: a call with a timestep not below the previous call's, or
    with a batch of another shape, starts a new run, and :meth:`tick` then resets every
    stateful module of the model (:func:`fs_neurons.reset_net`). Its state, the previous
    call's batch shape and timestep, is this module's; a delta-coded model holds it as its
    ``run_clock`` child, and the Spiking UNet classes tick it at every eval-mode forward
    (:mod:`spiking_ddim.modeling`)."""

    def __init__(self):
        super().__init__()
        self.shape: Optional[tuple[int, ...]] = None
        self.timestep: Optional[float] = None

    def reset(self) -> None:
        self.shape, self.timestep = None, None

    def tick(self, model: nn.Module, sample: torch.Tensor, timestep) -> None:
        """Record ``model``'s call with ``sample`` (its batch) at ``timestep``, resetting the
        model's state first when the call starts a new run."""
        if not isinstance(sample, torch.Tensor) or timestep is None:
            raise ValueError("a delta-coded model is called as model(sample, timestep, ...)")
        shape, now = tuple(sample.shape), float(torch.as_tensor(timestep).max())
        if self.shape != shape or self.timestep is None or now >= self.timestep:
            reset_net(model)
        self.shape, self.timestep = shape, now

    def extra_repr(self) -> str:
        return "idle" if self.shape is None else f"batch {list(self.shape)}, last timestep {self.timestep:g}"


def check_delta_capable(model: nn.Module, what: str = "coding 'delta'") -> None:
    """``ValueError`` unless ``model`` is a denoiser (a UNet called once per denoising step);
    ``what`` names the option that needs one."""
    if is_autoencoder(model):
        raise ValueError(f"{what} needs a denoiser called once per denoising step; {type(model).__name__} "
                         "decodes once per image: convert it with coding 'step' and spiking 'swish'")


def install_encoders(model: nn.Module, K: int) -> None:
    """Give every FSActivation of ``model`` one unfitted DeltaFSNeuron of K steps per call
    site (on its neurons' device) and ``model`` a :class:`RunClock` (its ``run_clock``); see
    the module docstring."""
    check_delta_capable(model)
    for _, act in fs_activations(model):
        device = act.neurons[0].h.device
        act.encoders = nn.ModuleList(DeltaFSNeuron(K).to(device) for _ in range(act.num_sites))
        act.encoders.train(act.training)
    model.run_clock = RunClock()


def remove_encoders(model: nn.Module) -> None:
    """Undo :func:`install_encoders`."""
    for _, act in fs_activations(model):
        act.encoders = None
    if "run_clock" in dict(model.named_children()):
        del model.run_clock


def encoders(model: nn.Module) -> list[tuple[str, DeltaFSNeuron]]:
    """Every delta encoder of ``model``, named ``path[i]`` like its site."""
    return [(f"{path}[{i}]", e) for path, act in fs_activations(model) if act.encoders is not None
            for i, e in enumerate(act.encoders)]


def check_fitted(model: nn.Module) -> None:
    """``RuntimeError`` naming :func:`fit_delta` when an encoder of ``model`` has no fitted parameters."""
    missing = [name for name, e in encoders(model) if not bool(e.fitted)]
    if missing:
        raise RuntimeError(f"{len(missing)} delta encoders are not fitted (first: {missing[0]}); fit them to the "
                           "pipeline's changes with spiking_ddim.fit_delta(pipe, options) before sampling")


@contextlib.contextmanager
def step_coding(model: nn.Module) -> Iterator[nn.Module]:
    """Every FS site of ``model`` sends its full FS code at every call inside the block (calls
    that are not consecutive denoising steps of one run: recorded calls, shuffled batches)."""
    with temporarily((act for _, act in fs_activations(model)), "stepwise", True):
        yield model
