"""Approximation error of an FS neuron, computed exactly with the spike loop in float64."""

from __future__ import annotations

from typing import Sequence, Union

import torch

from .distribution import InputDistribution
from .simulate import fs_simulate
from .targets import Activation

Vector = Union[torch.Tensor, Sequence[float]]


def fs_mse(h: Vector, d: Vector, T: Vector, target: Activation, dist: InputDistribution) -> float:
    """Weighted MSE of the neuron (h, d, T), each of shape (K,), against ``target`` on
    ``dist``, simulating the spike loop in float64 (the bank's ``mse`` definition)."""
    h, d, T = (torch.as_tensor(p, dtype=torch.float64) for p in (h, d, T))
    with torch.no_grad():
        out, _ = fs_simulate(dist.x, h, d, T)
    return dist.mse(out, target)
