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
halves (rows of one batch) keep separate state. A run starts again (:func:`reset_net`)
whenever the model is called with a timestep not below the previous call's, or with a
batch of another shape: diffusers' samplers count timesteps down, so every pipeline
``__call__`` starts fresh by itself. Call :func:`reset_net` yourself to start a run with
the same shape and a lower timestep.

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
from typing import Iterator

import torch
from torch import nn

from fs_neurons.delta import DeltaFSNeuron
from fs_neurons.functional import temporarily

from .sites import fs_activations, is_autoencoder


def reset_net(model: nn.Module) -> None:
    """Forget every delta encoder's state in ``model``: its next call starts a new run."""
    for m in model.modules():
        if isinstance(m, DeltaFSNeuron):
            m.reset()
    model.__dict__.pop("_delta_last_call", None)


def _run_clock(model: nn.Module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook: a call with a timestep not below the last one, or a batch of another
    shape, starts a new run (the state it finds is on ``model`` itself, so copies keep their own)."""
    if model.training:
        return
    sample = args[0] if args else kwargs.get("sample")
    t = args[1] if len(args) > 1 else kwargs.get("timestep")
    if not isinstance(sample, torch.Tensor) or t is None:
        raise ValueError("a delta-coded model is called as model(sample, timestep, ...)")
    now = (tuple(sample.shape), float(torch.as_tensor(t).max()))
    last = model.__dict__.get("_delta_last_call")
    if last is None or last[0] != now[0] or now[1] >= last[1]:
        reset_net(model)
    model.__dict__["_delta_last_call"] = now


def check_delta_capable(model: nn.Module, what: str = "coding 'delta'") -> None:
    """``ValueError`` unless ``model`` is a denoiser (a UNet called once per denoising step);
    ``what`` names the option that needs one."""
    if is_autoencoder(model):
        raise ValueError(f"{what} needs a denoiser called once per denoising step; {type(model).__name__} "
                         "decodes once per image: convert it with coding 'step' and spiking 'swish'")


def install_encoders(model: nn.Module, K: int) -> None:
    """Give every FSActivation of ``model`` one unfitted DeltaFSNeuron of K steps per call
    site (on its neurons' device) and ``model`` the run clock; see the module docstring."""
    check_delta_capable(model)
    for _, act in fs_activations(model):
        device = act.neurons[0].h.device
        act.encoders = nn.ModuleList(DeltaFSNeuron(K).to(device) for _ in range(act.num_sites))
        act.encoders.train(act.training)
    model.__dict__["_delta_clock"] = model.register_forward_pre_hook(_run_clock, with_kwargs=True)


def remove_encoders(model: nn.Module) -> None:
    """Undo :func:`install_encoders`."""
    for _, act in fs_activations(model):
        act.encoders = None
    handle = model.__dict__.pop("_delta_clock", None)
    if handle is not None:
        handle.remove()
    model.__dict__.pop("_delta_last_call", None)


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
