"""State across denoising steps: when a denoiser's run starts, and per-step coding on demand.

A coding that keeps state from one denoising step to the next (delta coding's encoders)
keeps it in :class:`~fs_neurons.state.Stateful` modules, and the model a :class:`RunClock`
(its ``run_clock`` child): the Spiking UNet classes tick it at every eval-mode forward
(:mod:`spiking_ddim.modeling`), and a call with a timestep not below the previous call's,
or a batch of another shape, resets every stateful module (:func:`fs_neurons.reset_net`).
Diffusers' samplers count timesteps down, so every pipeline ``__call__`` starts fresh.
:func:`step_coding` makes every site send its full code at every call inside a block
(calls that are not consecutive steps of one run: recorded calls, shuffled batches).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
from torch import nn

from fs_neurons.functional import temporarily
from fs_neurons.state import Stateful, reset_net

from .sites import fs_activations, is_autoencoder


class RunClock(Stateful):
    """When a denoiser's run starts: a call with a timestep not below the previous call's, or
    with a batch of another shape, starts a new run, and :meth:`tick` then resets every
    stateful module of the model (:func:`fs_neurons.reset_net`). Its state, the previous
    call's batch shape and timestep, is this module's; a model whose coding keeps state holds it as its
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
            raise ValueError("a model with state across denoising steps is called as model(sample, timestep, ...)")
        shape, now = tuple(sample.shape), float(torch.as_tensor(timestep).max())
        if self.shape != shape or self.timestep is None or now >= self.timestep:
            reset_net(model)
        self.shape, self.timestep = shape, now

    def extra_repr(self) -> str:
        return "idle" if self.shape is None else f"batch {list(self.shape)}, last timestep {self.timestep:g}"


def install_run_clock(model: nn.Module) -> None:
    """Give ``model`` a :class:`RunClock` as its ``run_clock`` child."""
    model.run_clock = RunClock()


def remove_run_clock(model: nn.Module) -> None:
    """Undo :func:`install_run_clock` (nothing when it has none)."""
    if "run_clock" in dict(model.named_children()):
        del model.run_clock


def check_denoiser(model: nn.Module, what: str = "coding 'delta'") -> None:
    """``ValueError`` unless ``model`` is a denoiser (a UNet called once per denoising step);
    ``what`` names the option that needs one."""
    if is_autoencoder(model):
        raise ValueError(f"{what} needs a denoiser called once per denoising step; {type(model).__name__} "
                         "decodes once per image: convert it with coding 'step' and spiking 'swish'")


@contextlib.contextmanager
def step_coding(model: nn.Module) -> Iterator[nn.Module]:
    """Every FS site of ``model`` sends its full FS code at every call inside the block (calls
    that are not consecutive denoising steps of one run: recorded calls, shuffled batches)."""
    with temporarily((act for _, act in fs_activations(model)), "stepwise", True):
        yield model
