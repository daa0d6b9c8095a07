"""The few-spikes (FS) neuron as an ``nn.Module``."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .piecewise import PiecewiseFS, fs_piecewise
from .simulate import fs_simulate
from .surrogate import Surrogate, get_surrogate

MODES = ("auto", "simulate", "lookup")
ParamLike = Union[torch.Tensor, Sequence[float], Sequence[Sequence[float]]]
SpikeHook = Callable[["FSNeuron", torch.Tensor, torch.Tensor], None]


def check_K(K: int) -> int:
    """Validate a number of time steps; returns it as int."""
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ValueError(f"K (time steps) must be an integer >= 1, got {K!r}")
    return K


@dataclass
class SpikeStats:
    """Running spike statistics of one neuron module."""

    spikes: float = 0.0  # total spikes emitted
    elements: int = 0  # total neuron activations (input elements seen)
    calls: int = 0  # forward calls

    @property
    def spikes_per_activation(self) -> float:
        """Mean spikes per neuron per call (0 <= value <= K)."""
        return self.spikes / self.elements if self.elements else 0.0


class FSNeuron(nn.Module):
    """A few-spikes neuron approximating an activation with K time steps.

    Learnable reset ``h``, output ``d`` and threshold ``T``, each of shape (K,) for one
    neuron shared by every input element, or (num_neurons, K) for independent neurons
    indexed by input dim ``neuron_dim`` (multi-start fits, per-channel neurons).

    Forward: any input shape and floating dtype. Modes: ``simulate`` runs the spike loop
    (surrogate gradients); ``lookup`` evaluates the exact piecewise-constant table (fast,
    no gradients: its output is detached); ``auto`` (default) simulates in training mode,
    and in eval mode looks up, except for an input that needs a gradient (autograd on),
    which it simulates: the same output up to float rounding, with the surrogate gradient.
    With ``record_spikes = True`` the module accumulates :class:`SpikeStats`; a hook added
    with :meth:`register_spike_hook` sees every call's output and per-element spike counts.
    """

    def __init__(
        self,
        K: int,
        num_neurons: Optional[int] = None,
        neuron_dim: int = 0,
        surrogate: Union[str, Surrogate] = "triangle",
        mode: str = "auto",
        generator: Optional[torch.Generator] = None,
    ):
        super().__init__()
        check_K(K)
        if num_neurons is not None and num_neurons < 1:
            raise ValueError(f"num_neurons must be >= 1, got {num_neurons}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        shape = (K,) if num_neurons is None else (num_neurons, K)
        # The paper's random initialisation: h, d ~ |N(0, 1)|, T ~ N(0, 1).
        self.h = nn.Parameter(torch.randn(shape, generator=generator).abs())
        self.d = nn.Parameter(torch.randn(shape, generator=generator).abs())
        self.T = nn.Parameter(torch.randn(shape, generator=generator))
        self.neuron_dim = neuron_dim
        self.surrogate = get_surrogate(surrogate)
        self.mode = mode
        self.record_spikes = False
        self.stats = SpikeStats()
        self._spike_hooks: OrderedDict[int, SpikeHook] = OrderedDict()
        self._table: Optional[tuple[tuple, PiecewiseFS]] = None

    @classmethod
    def from_params(cls, h: ParamLike, d: ParamLike, T: ParamLike, **kwargs) -> "FSNeuron":
        """A neuron with given parameters, each of shape (K,) or (num_neurons, K)."""
        h, d, T = (torch.as_tensor(p, dtype=torch.float32) for p in (h, d, T))
        if not (h.shape == d.shape == T.shape):
            raise ValueError(f"h, d and T must have the same shape, got {tuple(h.shape)}, {tuple(d.shape)}, {tuple(T.shape)}")
        if h.ndim not in (1, 2) or h.shape[-1] < 1:
            raise ValueError(f"parameters must have shape (K,) or (num_neurons, K), got {tuple(h.shape)}")
        for name, p in (("h", h), ("d", d), ("T", T)):
            if not torch.isfinite(p).all():
                raise ValueError(f"parameter {name} contains NaN or infinite values")
        num = None if h.ndim == 1 else h.shape[0]
        neuron = cls(h.shape[-1], num_neurons=num, **kwargs)
        with torch.no_grad():
            neuron.h.copy_(h)
            neuron.d.copy_(d)
            neuron.T.copy_(T)
        return neuron

    @classmethod
    def from_bank(cls, activation: str = "swish", K: int = 8, method: str = "ours", **kwargs) -> "FSNeuron":
        """A neuron initialised from the shipped parameter bank."""
        from .bank import load_entry

        e = load_entry(activation, K, method)
        return cls.from_params(e.h, e.d, e.T, **kwargs)

    @property
    def K(self) -> int:
        return self.h.shape[-1]

    @property
    def num_neurons(self) -> Optional[int]:
        return None if self.h.ndim == 1 else self.h.shape[0]

    def table(self) -> PiecewiseFS:
        """The exact lookup table, rebuilt only when a parameter changed."""
        key = tuple((p._version, p.data_ptr()) for p in (self.h, self.d, self.T))
        if self._table is None or self._table[0] != key:
            self._table = (key, fs_piecewise(self.h, self.d, self.T))
        return self._table[1]

    def _param_view(self, p: torch.Tensor, ndim: int) -> torch.Tensor:
        """(K,) or (P, K) parameters as (K, *S) broadcasting against an ndim-d input."""
        if p.ndim == 1:
            return p
        if ndim == 0:
            raise ValueError("a multi-neuron FSNeuron needs an input with a neuron dimension")
        shape = [1] * ndim
        shape[self.neuron_dim] = p.shape[0]
        return p.t().reshape(p.shape[1], *shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_neurons is not None and x.shape[self.neuron_dim] != self.num_neurons:
            raise ValueError(
                f"input has {x.shape[self.neuron_dim]} entries along dim {self.neuron_dim}, "
                f"but this FSNeuron holds {self.num_neurons} neurons"
            )
        want_count = self.record_spikes or bool(self._spike_hooks)
        wants_grad = torch.is_grad_enabled() and x.requires_grad
        if self.mode == "lookup" or (self.mode == "auto" and not self.training and not wants_grad):
            dim = None if self.num_neurons is None else self.neuron_dim
            out, count = self.table().evaluate(x.detach(), dim, want_count=want_count)
        else:
            params = (self._param_view(p, x.ndim) for p in (self.h, self.d, self.T))
            out, count = fs_simulate(x, *params, surrogate=self.surrogate, count_spikes=want_count)
        if self.record_spikes:
            self.stats.spikes += float(count.sum(dtype=torch.float64))
            self.stats.elements += x.numel()
            self.stats.calls += 1
        for hook in list(self._spike_hooks.values()):
            hook(self, out, count)
        return out

    def register_spike_hook(self, hook: SpikeHook) -> RemovableHandle:
        """Call ``hook(neuron, output, spike_count)`` after every forward; ``spike_count`` has
        the output's shape and holds each element's number of spikes (0..K). Returns a handle
        whose ``remove()`` takes the hook off."""
        handle = RemovableHandle(self._spike_hooks)
        self._spike_hooks[handle.id] = hook
        return handle

    def reset_stats(self) -> None:
        self.stats = SpikeStats()

    def params(self) -> dict[str, list]:
        """h, d, T as nested lists (JSON-ready)."""
        return {name: getattr(self, name).detach().cpu().double().tolist() for name in ("h", "d", "T")}

    def extra_repr(self) -> str:
        n = "" if self.num_neurons is None else f", num_neurons={self.num_neurons}, neuron_dim={self.neuron_dim}"
        return f"K={self.K}{n}, mode={self.mode!r}"
