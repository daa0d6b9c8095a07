"""A sigma-delta FS neuron: spikes only for what changed since the value it last sent.

A site that runs once per denoising step sees nearly the same values at consecutive steps.
:class:`DeltaFSNeuron` keeps, per input element, the value it has transmitted so far,
``sent`` (float32, the input's shape; the state). Given the site's new value ``v`` (a graded
activation: the neuron computes it exactly, as Loihi 2's graded neurons can), it codes the
change ``delta = v - sent`` as ``sign(delta) * FS(|delta|)``, an FS code of K steps whose
spikes carry the sign as their polarity (two polarities, one neuron: every spike is one
accumulate of +w or -w downstream), and sends ``sent + code``. Error feedback is the state
itself: what a step did not send stays in ``v - sent`` and is sent once it crosses the
first threshold, so quantisation error never accumulates over steps. A value that did not
change sends nothing. ``FS`` is an ordinary FS neuron (h, d, T of shape (K,)) fitted to the
identity on the distribution of |delta| (``relu`` target) with a price per spike, so small
changes fall in its dead zone.

The first value of a run is not a change: :meth:`start` sets ``sent`` to a full code made
by another neuron (the site's FS neuron, K0 steps), and the first forward then sends the
change from it, i.e. a correction of that code's error, in the same step. :meth:`reset`
forgets the state (every image's run starts again). Outputs are always computed by the
exact lookup table (no gradient); spike hooks see the transmitted value and per-element
spike counts of the call (the full code's spikes included in the first), and
``updates_per_element`` of the last call: K + 1 (the graded activation and the K
compare-and-subtract steps), plus K0 in the first.
"""

from __future__ import annotations

from typing import Optional

import torch

from .neuron import FSNeuron
from .state import Stateful


def binary_code(K: int, top: float) -> tuple[list[float], list[float], list[float]]:
    """h, d, T of an FS neuron rounding x >= 0 to the nearest of 2^K levels evenly covering
    [0, ``top``] (a binary code: step s = top / (2^K - 1), h = d = s 2^(K-1-k), T = h - s/2)."""
    step = top / (2 ** K - 1)
    h = [step * 2 ** (K - 1 - k) for k in range(K)]
    return h, h, [v - step / 2 for v in h]


class DeltaFSNeuron(FSNeuron, Stateful):
    """Codes the change of its input since the value it last sent (see the module docstring).

    Forward: ``v`` of any shape and floating dtype, the same shape as the state; returns the
    transmitted value, ``v``'s dtype and shape (a new tensor each call). ``fitted`` (a saved
    buffer) is False until parameters are set by :meth:`set_params` or loaded."""

    graded = True  # every call computes the site's activation exactly, then codes its change

    def __init__(self, K: int, **kwargs):
        super().__init__(K, **kwargs)
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.sent: Optional[torch.Tensor] = None
        self._first: Optional[tuple[torch.Tensor, int]] = None  # the full code's spike counts and steps
        self._updates = K + 1

    @property
    def updates_per_element(self) -> int:
        """Neuron updates per element in the last call (K + 1, plus the full code's steps in a run's first)."""
        return self._updates

    def _apply(self, fn, *args, **kwargs):
        self.reset()  # the state lives on one device; moving the neuron starts a new run
        return super()._apply(fn, *args, **kwargs)

    def set_params(self, h, d, T) -> None:
        super().set_params(h, d, T)
        self.fitted.fill_(True)

    def reset(self) -> None:
        """Forget the transmitted values: the next value is the first of a new run."""
        self.sent, self._first = None, None

    @property
    def started(self) -> bool:
        return self.sent is not None

    def start(self, full: torch.Tensor, count: torch.Tensor, steps: int) -> None:
        """Begin a run with ``full``, a full code of the first value sent by another neuron in
        ``steps`` time steps with per-element spike ``count``; the next forward (the same
        denoising step) adds the correction and reports both codes' spikes."""
        self.sent = full.detach().to(torch.float32, copy=True)
        self._first = (count.detach(), int(steps))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if self.sent is None:
            raise RuntimeError("DeltaFSNeuron has no state: start() a run with its first value before sending changes")
        if v.shape != self.sent.shape:
            raise RuntimeError(f"DeltaFSNeuron holds the state of a run with inputs of shape {tuple(self.sent.shape)}, "
                               f"got {tuple(v.shape)}; reset the model between runs (fs_neurons.reset_net)")
        out, count = self.table().send_change(self.sent, v.detach().to(torch.float32), bool(self._spike_hooks))
        self._updates = self.K + 1
        if self._first is not None:
            first, steps = self._first
            count = None if count is None else count + first.to(count.dtype)
            self._first, self._updates = None, self._updates + steps
        out = out.to(v.dtype)
        for hook in list(self._spike_hooks.values()):
            hook(self, out, count)
        return out

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, delta, {'fitted' if bool(self.fitted) else 'not fitted'}"
