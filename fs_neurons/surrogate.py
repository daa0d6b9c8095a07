"""Surrogate gradients for the Heaviside spike function.

A surrogate is any callable ``u -> dz/du`` applied elementwise to the distance of the
membrane potential from the threshold, u = v - T. The forward pass always uses the
exact Heaviside step; only the backward pass sees the surrogate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

Surrogate = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Triangle:
    """dz/du = scale * max(0, 1 - |u| / width); width=1, scale=1 is the TBPI notebooks' choice."""

    width: float = 1.0
    scale: float = 1.0

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return self.scale * (1.0 - u.abs() / self.width).clamp_min(0.0)


@dataclass(frozen=True)
class Sigmoid:
    """dz/du = alpha * s * (1 - s) with s = sigmoid(alpha * u) (derivative of a steep sigmoid)."""

    alpha: float = 4.0

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.alpha * u)
        return self.alpha * s * (1.0 - s)


@dataclass(frozen=True)
class Rectangle:
    """dz/du = 1 / width inside |u| < width / 2, else 0 (straight-through in a window)."""

    width: float = 1.0

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return (u.abs() < 0.5 * self.width).to(u.dtype) / self.width


SURROGATES: dict[str, type] = {"triangle": Triangle, "sigmoid": Sigmoid, "rectangle": Rectangle}


def get_surrogate(name_or_fn: "str | Surrogate") -> Surrogate:
    """A surrogate from its name (``triangle``, ``sigmoid``, ``rectangle``) or a callable."""
    if callable(name_or_fn):
        return name_or_fn
    try:
        return SURROGATES[name_or_fn]()
    except KeyError:
        raise ValueError(f"unknown surrogate {name_or_fn!r}; known: {', '.join(SURROGATES)}") from None
