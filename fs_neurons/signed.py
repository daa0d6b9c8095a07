"""A signed FS neuron: codes any real value, its spikes carrying the sign as polarity.

An FS neuron codes non-negative values well (its output is a sum of positive steps). To
send an analog value x of either sign, :class:`SignedFSNeuron` codes |x| with its K steps
and gives the code the sign of x: ``sign(x) * FS(|x|)``, so every spike is one accumulate of
+w or -w in the layer it feeds, and spike counts are those of |x|. Fitted as an FS neuron
to the identity (``relu`` target) on the distribution of |x|. Same shapes, backends and
spike hooks as :class:`~fs_neurons.neuron.FSNeuron` (hooks see the signed output).
"""

from __future__ import annotations

from typing import Optional

import torch

from .delta import binary_code
from .neuron import FSNeuron


class SignedFSNeuron(FSNeuron):
    """``sign(x) * FS(|x|)`` (see the module docstring)."""

    @classmethod
    def binary(cls, K: int, top: float = 4.0) -> "SignedFSNeuron":
        """A neuron rounding |x| to the nearest of 2^K levels evenly covering [0, ``top``]: the
        starting point before it is fitted to the values it sees."""
        return cls.from_params(*binary_code(K, top))

    def _evaluate(self, x: torch.Tensor, want_count: bool) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        magnitude, count = super()._evaluate(x.abs(), want_count)
        return torch.sign(x).to(magnitude.dtype) * magnitude, count

    @torch.no_grad()
    def code(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        magnitude, count = super().code(x.abs())
        return torch.sign(x).to(magnitude.dtype) * magnitude, count
