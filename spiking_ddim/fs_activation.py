"""``FSActivation``: the module a converted model calls where it used to call Swish or GELU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from fs_neurons import FSNeuron
from fs_neurons.targets import resolve_activation


@dataclass(frozen=True)
class SiteSignature:
    """What a call site's input looks like: number of dims and size of dim 1 (channels)."""

    ndim: int
    channels: int

    @classmethod
    def of(cls, x: torch.Tensor) -> "SiteSignature":
        return cls(x.ndim, x.shape[1] if x.ndim > 1 else 1)

    def to_json(self) -> list[int]:
        return [self.ndim, self.channels]


class FSActivation(nn.Module):
    """Replaces one activation module (Swish, GELU) of a network.

    A module a block calls at several places (diffusers' ResnetBlock2D calls its one
    ``nonlinearity`` after norm1, on the time embedding and after norm2) gets one FS neuron
    per call site: the n-th call within one forward of the owning block uses neuron n. The
    owner resets the count with a forward pre-hook (see :func:`attach_site_counter`), and
    each site checks its input's signature so a changed call order fails loudly.

    ``original``: run the activation it replaced instead of the FS neurons (set for a
    whole model, for a block, by :func:`spiking_ddim.sites.original_activations`).
    Recording a site's inputs is a monitor's job (:class:`spiking_ddim.monitors.SiteInputMonitor`).

    ``encoders``: one module per call site, installed by a coding that sends something else
    than the full code across denoising steps (:mod:`spiking_ddim.codings`; delta coding's
    :class:`~spiking_ddim.delta.DeltaEncoder`): in eval mode the site sends
    ``encoders[i].transmit(neurons[i], x, exact)``. In training mode, or while ``stepwise``
    is set (:func:`spiking_ddim.run_state.step_coding`), every call sends its neuron's full
    FS code, as per-step coding does.
    """

    def __init__(self, activation: str, neurons: list[FSNeuron], signatures: list[SiteSignature]):
        super().__init__()
        if len(neurons) != len(signatures) or not neurons:
            raise ValueError("need one signature per neuron and at least one neuron")
        self.activation, self._target = resolve_activation(activation)
        self.neurons = nn.ModuleList(neurons)
        self.signatures = list(signatures)
        self.original = False
        self.stepwise = False
        self.encoders: Optional[nn.ModuleList] = None
        self.calls = 0

    @property
    def num_sites(self) -> int:
        return len(self.neurons)

    def reset_calls(self) -> None:
        self.calls = 0

    def site_index(self) -> int:
        """The call site of the call in progress (in a forward hook) or just made."""
        return self.calls - 1 if self.num_sites > 1 else 0

    def _site(self, x: torch.Tensor) -> int:
        i = self.calls if self.num_sites > 1 else 0
        self.calls += 1
        if i >= self.num_sites:
            raise RuntimeError(
                f"FSActivation called {self.calls} times in one forward of its owner but was converted with "
                f"{self.num_sites} call sites; convert the model again with the inputs it is used with"
            )
        sig = SiteSignature.of(x)
        if self.num_sites > 1 and sig != self.signatures[i]:
            raise RuntimeError(
                f"call site {i} expected input with ndim={self.signatures[i].ndim}, channels="
                f"{self.signatures[i].channels} but got ndim={sig.ndim}, channels={sig.channels}; "
                "the owner's call order differs from conversion time"
            )
        return i

    def exact(self, x: torch.Tensor) -> torch.Tensor:
        """The activation this module replaced, computed exactly (in float32 for 16-bit inputs)."""
        return self._target(x.float()).to(x.dtype) if x.dtype in (torch.float16, torch.bfloat16) else self._target(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = self._site(x)
        if self.original:
            return self.exact(x)
        if self.encoders is None or self.training or self.stepwise:
            return self.neurons[i](x)
        return self.encoders[i].transmit(self.neurons[i], x, self.exact)

    def extra_repr(self) -> str:
        return (f"activation={self.activation!r}, sites={self.num_sites}, K={self.neurons[0].K}"
                f"{', original' if self.original else ''}")


def attach_site_counter(owner: nn.Module, name: str) -> Callable[[], None]:
    """Reset the call count of ``owner``'s FSActivation submodule ``name`` whenever
    ``owner`` starts a forward pass.

    The hook looks the activation up on the module it runs on, so a ``copy.deepcopy`` of
    the model counts its own calls. Returns a function that removes the hook."""
    handle = owner.register_forward_pre_hook(lambda module, _args: module.get_submodule(name).reset_calls())
    return handle.remove


def make_neurons(activation: str, K: int, method: str, n: int, bank_path: Optional[str] = None) -> list[FSNeuron]:
    """``n`` independent neurons initialised from the bank entry (activation, K, method).
    The UNet-fitted entries (``ours-unet``) exist for Swish; other activations take ``ours``."""
    from fs_neurons.bank import load_entry
    from fs_neurons.names import UNET_METHOD

    if method == UNET_METHOD and activation != "swish":
        method = "ours"
    e = load_entry(activation, K, method, path=bank_path)
    return [FSNeuron.from_params(e.h, e.d, e.T) for _ in range(n)]
