"""A graded-change neuron: one event per changed element, carrying a b-bit value.

Like :class:`~fs_neurons.delta.DeltaFSNeuron` it keeps, per input element, the value sent
so far (``sent``) and, given the site's new value ``v`` (computed exactly), looks at the
change ``delta = v - sent``. Instead of a K-step spike code it sends, where
``|delta| >= T`` (the dead zone), one event carrying ``delta`` rounded to a multiple of the
step ``s`` and clipped to the signed b-bit range ``±(2^(b-1) - 1) s``, as Loihi 2's graded
spikes and sigma-delta networks send (O'Connor & Welling 2016; DeltaCNN, Parger et al.
2022). Error feedback is the state itself: what a step did not send stays in
``v - sent``. A value that did not change sends nothing. Each event costs the layer it
feeds one multiply-accumulate per output it reaches (the value times the weight), not an
accumulate per spike: the neuron keeps each call's per-element event counts as
``last_events`` for the meter.

Parameters, as an FS neuron of one step: ``T`` = (dead zone,), ``d`` = ``h`` = (step,);
:meth:`set_params` marks the neuron fitted. A run's first call sends the full code of the
site's FS neuron (binary spikes, given by :meth:`start`) and, in the same step, the graded
correction of its error; every later call graded events alone. Spike hooks see the
transmitted value and the per-element counts of spikes and events together;
``updates_per_element``: 2 per element (the graded activation, one compare-and-round), plus
the full code's steps in a run's first call. Shapes: any; outputs in ``v``'s dtype, a new
tensor each call.
"""

from __future__ import annotations

from typing import Optional

import torch

from .delta import DeltaFSNeuron

GRADED_BITS = range(2, 17)


class GradedDeltaNeuron(DeltaFSNeuron):
    """Sends each change beyond its dead zone as one ``bits``-bit value (see the module docstring)."""

    def __init__(self, bits: int = 8, **kwargs):
        if isinstance(bits, bool) or not isinstance(bits, int) or bits not in GRADED_BITS:
            raise ValueError(f"a graded event's bits must be an integer from 2 to 16, got {bits!r}")
        super().__init__(1, **kwargs)
        self.bits = bits
        self.last_events: Optional[torch.Tensor] = None  # the last call's per-element graded events
        self._updates = 2

    @property
    def levels(self) -> int:
        """The largest magnitude an event carries, in steps: 2^(bits-1) - 1."""
        return 2 ** (self.bits - 1) - 1

    def quantize(self, delta: torch.Tensor) -> torch.Tensor:
        """What is sent for changes ``delta``: 0 inside the dead zone, else ``delta`` rounded
        to a multiple of the step and clipped to ``levels`` steps (float32, ``delta``'s shape)."""
        step, dead = self.d.detach().float().reshape(()), self.T.detach().float().reshape(())
        q = torch.clamp(torch.round(delta / step), -self.levels, self.levels) * step
        return torch.where(delta.abs() >= dead, q, torch.zeros_like(q))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if self.sent is None:
            raise RuntimeError("GradedDeltaNeuron has no state: start() a run with its first value before sending changes")
        if v.shape != self.sent.shape:
            raise RuntimeError(f"GradedDeltaNeuron holds the state of a run with inputs of shape "
                               f"{tuple(self.sent.shape)}, got {tuple(v.shape)}; reset the model between runs "
                               f"(fs_neurons.reset_net)")
        sent = self.quantize(v.detach().to(torch.float32) - self.sent)
        self.sent = self.sent + sent
        self.last_events = (sent != 0).to(torch.float32)
        count, self._updates = self.last_events, 2
        if self._first is not None:  # a run's first call: the full code's spikes too
            first, steps = self._first
            count, self._first, self._updates = count + first.to(count.dtype), None, 2 + steps
        out = self.sent.to(v.dtype, copy=True)
        for hook in list(self._spike_hooks.values()):
            hook(self, out, count)
        return out

    def reset(self) -> None:
        super().reset()
        self.last_events = None

    def extra_repr(self) -> str:
        return (f"bits={self.bits}, step={float(self.d.reshape(-1)[0]):.4g}, dead zone={float(self.T.reshape(-1)[0]):.4g}, "
                f"{'fitted' if bool(self.fitted) else 'not fitted'}")
