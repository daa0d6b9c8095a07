"""Per-step coding: every FS neuron sends its whole K-step code at every denoising step
(the paper's setting; no encoders, no state across steps)."""

from __future__ import annotations

from dataclasses import dataclass

from .registry import Coding, register_coding


@register_coding
@dataclass(frozen=True)
class StepCoding(Coding):
    """Every neuron sends its full K-step code at every call."""

    name = "step"
    description = "every FS site sends its full K-step code at every denoising step"

    def describe(self, fits: list[dict]) -> str:
        return "`step` coding: every neuron sends its full K-step code at every denoising step"
