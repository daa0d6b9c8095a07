"""Target activation functions an FS neuron can be fitted to.

Every target maps a float tensor to a tensor of the same shape and works in float64,
so fits and reported errors are not limited by float32 rounding.
"""

from __future__ import annotations

import math
from typing import Callable, Union

import torch
import torch.nn.functional as F

from .names import ACTIVATION_NAMES
from .utils.choices import check_choice

Activation = Callable[[torch.Tensor], torch.Tensor]


def swish(x: torch.Tensor) -> torch.Tensor:
    """Swish / SiLU: x * sigmoid(x)."""
    return x * torch.sigmoid(x)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU, exact (erf) form."""
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation (as in GPT-2 and ``F.gelu(approximate="tanh")``)."""
    return F.gelu(x, approximate="tanh")


def mish(x: torch.Tensor) -> torch.Tensor:
    """Mish: x * tanh(softplus(x))."""
    return x * torch.tanh(F.softplus(x))


def identity(x: torch.Tensor) -> torch.Tensor:
    """x itself: what a signed encoder of an analog value approximates (:mod:`fs_neurons.signed`)."""
    return x


ACTIVATIONS: dict[str, Activation] = {
    "swish": swish,
    "silu": swish,
    "gelu": gelu,
    "gelu_tanh": gelu_tanh,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "mish": mish,
    "softplus": F.softplus,
    "relu": torch.relu,
    "identity": identity,
}
assert tuple(ACTIVATIONS) == ACTIVATION_NAMES, "fs_neurons.names.ACTIVATION_NAMES must list ACTIVATIONS"

# Names that denote the same function; the bank stores each under its canonical name.
CANONICAL_NAMES = {"silu": "swish"}


def resolve_activation(activation: Union[str, Activation]) -> tuple[str, Activation]:
    """Return ``(name, function)`` for an activation given by name or as a callable.

    Raises ``ValueError`` naming the known activations when the name is unknown.
    """
    if callable(activation):
        return getattr(activation, "__name__", "custom"), activation
    if not isinstance(activation, str):
        raise TypeError(f"activation must be a name or a callable, got {type(activation).__name__}")
    key = activation.strip().lower()
    check_choice("activation", key, sorted(ACTIVATIONS))
    return CANONICAL_NAMES.get(key, key), ACTIVATIONS[key]
