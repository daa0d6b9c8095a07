"""The few-spikes (FS) neuron as an ``nn.Module``."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from .piecewise import PiecewiseFS, fs_piecewise
from .simulate import fs_simulate
from .surrogate import Surrogate, get_surrogate
from .utils.choices import check_choice

BACKENDS = ("auto", "simulate", "lookup")  # how a neuron computes: see FSNeuron
ParamLike = Union[torch.Tensor, Sequence[float], Sequence[Sequence[float]]]
SpikeHook = Callable[["FSNeuron", torch.Tensor, torch.Tensor], None]


def check_backend(backend: str) -> str:
    """Validate a backend name (:data:`BACKENDS`); returns it."""
    return check_choice("backend", backend, BACKENDS)


def _checked_params(h: ParamLike, d: ParamLike, T: ParamLike) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """h, d, T as float32 tensors of one shape, (K,) or (num_neurons, K), all finite."""
    h, d, T = (torch.as_tensor(p, dtype=torch.float32) for p in (h, d, T))
    if not (h.shape == d.shape == T.shape):
        raise ValueError(f"h, d and T must have the same shape, got {tuple(h.shape)}, {tuple(d.shape)}, {tuple(T.shape)}")
    if h.ndim not in (1, 2) or h.shape[-1] < 1:
        raise ValueError(f"parameters must have shape (K,) or (num_neurons, K), got {tuple(h.shape)}")
    for name, p in (("h", h), ("d", d), ("T", T)):
        if not torch.isfinite(p).all():
            raise ValueError(f"parameter {name} contains NaN or infinite values")
    return h, d, T


# The most time steps a neuron may have: a K-step code resolves at best 2^-K of its range,
# and float32 activations (24-bit significand) cannot carry a finer step than 2^-24.
MAX_K = 24


def check_K(K: int) -> int:
    """Validate a number of time steps (1..:data:`MAX_K`); returns it as int."""
    if isinstance(K, bool) or not isinstance(K, int) or K < 1 or K > MAX_K:
        raise ValueError(f"K (time steps) must be an integer >= 1 and at most {MAX_K} (a K-step code resolves "
                         f"2^-K of its range; float32 activations hold no finer step than 2^-24), got {K!r}")
    return K


class FSNeuron(nn.Module):
    """A few-spikes neuron approximating an activation with K time steps.

    Learnable reset ``h``, output ``d`` and threshold ``T``, each of shape (K,) for one
    neuron shared by every input element, or (num_neurons, K) for independent neurons
    indexed by input dim ``neuron_dim`` (multi-start fits, per-channel neurons).

    Forward: any input shape and floating dtype. How it computes is its ``backend``
    (:data:`BACKENDS`; set a whole model's with :func:`fs_neurons.functional.set_backend`):
    ``simulate`` runs the spike loop (surrogate gradients); ``lookup`` evaluates the exact
    piecewise-constant table (fast, no gradients: its output is detached); ``auto``
    (default) simulates in training mode, and in eval mode looks up, except for an input
    that needs a gradient (autograd on), which it simulates: the same output up to float
    rounding, with the surrogate gradient. Spikes are counted only for a hook added with
    :meth:`register_spike_hook` (monitors such as :class:`spiking_ddim.energy.CostMeter`
    attach one from outside), which sees every call's output and per-element spike counts.
    """

    def __init__(
        self,
        K: int,
        num_neurons: Optional[int] = None,
        neuron_dim: int = 0,
        surrogate: Union[str, Surrogate] = "triangle",
        backend: str = "auto",
        generator: Optional[torch.Generator] = None,
    ):
        super().__init__()
        check_K(K)
        if num_neurons is not None and num_neurons < 1:
            raise ValueError(f"num_neurons must be >= 1, got {num_neurons}")
        check_backend(backend)
        shape = (K,) if num_neurons is None else (num_neurons, K)
        # The paper's random initialisation: h, d ~ |N(0, 1)|, T ~ N(0, 1).
        self.h = nn.Parameter(torch.randn(shape, generator=generator).abs())
        self.d = nn.Parameter(torch.randn(shape, generator=generator).abs())
        self.T = nn.Parameter(torch.randn(shape, generator=generator))
        self.neuron_dim = neuron_dim
        self.surrogate = get_surrogate(surrogate)
        self.backend = backend
        self._spike_hooks: OrderedDict[int, SpikeHook] = OrderedDict()
        self._table: Optional[tuple[tuple, PiecewiseFS]] = None

    @classmethod
    def from_params(cls, h: ParamLike, d: ParamLike, T: ParamLike, **kwargs) -> "FSNeuron":
        """A neuron with given parameters, each of shape (K,) or (num_neurons, K)."""
        h, d, T = _checked_params(h, d, T)
        neuron = cls(h.shape[-1], num_neurons=None if h.ndim == 1 else h.shape[0], **kwargs)
        neuron.set_params(h, d, T)
        return neuron

    @torch.no_grad()
    def set_params(self, h: ParamLike, d: ParamLike, T: ParamLike) -> None:
        """Replace h, d and T (each of this neuron's shape, finite) in place, keeping their
        device and dtype. ``ValueError`` for another shape or a NaN / infinite value."""
        h, d, T = _checked_params(h, d, T)
        if h.shape != self.h.shape:
            raise ValueError(f"parameters of shape {tuple(h.shape)} do not fit this neuron's {tuple(self.h.shape)}")
        for name, value in (("h", h), ("d", d), ("T", T)):
            getattr(self, name).copy_(value.to(self.h.device, self.h.dtype))

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
    def updates_per_element(self) -> int:
        """Neuron updates per input element per call: the K compare-and-subtract steps."""
        return self.K

    # Whether a call computes the activation exactly before coding it (a graded neuron, as a
    # delta encoder is): the memory-aware estimate prices that as one MAC and a state access.
    graded: bool = False

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
        out, count = self._evaluate(x, bool(self._spike_hooks))
        for hook in list(self._spike_hooks.values()):
            hook(self, out, count)
        return out

    def _evaluate(self, x: torch.Tensor, want_count: bool) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Output and (with ``want_count``) per-element spike counts by the neuron's backend."""
        wants_grad = torch.is_grad_enabled() and x.requires_grad
        if self.backend == "lookup" or (self.backend == "auto" and not self.training and not wants_grad):
            dim = None if self.num_neurons is None else self.neuron_dim
            return self.table().evaluate(x.detach(), dim, want_count=want_count)
        params = (self._param_view(p, x.ndim) for p in (self.h, self.d, self.T))
        return fs_simulate(x, *params, surrogate=self.surrogate, count_spikes=want_count)

    @torch.no_grad()
    def code(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output and per-element spike counts (both ``x``'s shape and dtype) from the exact
        lookup table, without gradient and without calling spike hooks (for a caller that
        reports the spikes itself, as :class:`fs_neurons.delta.DeltaFSNeuron`'s first step)."""
        dim = None if self.num_neurons is None else self.neuron_dim
        return self.table().evaluate(x.detach(), dim, want_count=True)

    def register_spike_hook(self, hook: SpikeHook) -> RemovableHandle:
        """Call ``hook(neuron, output, spike_count)`` after every forward; ``spike_count`` has
        the output's shape and holds each element's number of spikes (0..K). Returns a handle
        whose ``remove()`` takes the hook off."""
        handle = RemovableHandle(self._spike_hooks)
        self._spike_hooks[handle.id] = hook
        return handle

    def params(self) -> dict[str, list]:
        """h, d, T as nested lists (JSON-ready)."""
        return {name: getattr(self, name).detach().cpu().double().tolist() for name in ("h", "d", "T")}

    def extra_repr(self) -> str:
        n = "" if self.num_neurons is None else f", num_neurons={self.num_neurons}, neuron_dim={self.neuron_dim}"
        return f"K={self.K}{n}, backend={self.backend!r}"
