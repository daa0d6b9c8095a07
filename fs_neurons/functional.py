"""Settings of every FS neuron in a model at once (as spikingjelly's ``functional``).

    set_backend(model, "simulate")        # every FSNeuron of model simulates its spike loop
    with backend(model, "lookup"): ...    # for a block; the previous backends come back after
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator

from torch import nn

from .neuron import FSNeuron, check_backend


def neurons(model: nn.Module) -> list[FSNeuron]:
    """Every FSNeuron in ``model`` (itself included), in module order."""
    return [m for m in model.modules() if isinstance(m, FSNeuron)]


def set_backend(model: nn.Module, name: str) -> None:
    """Set the backend (``auto``, ``simulate``, ``lookup``) of every FSNeuron in ``model``."""
    check_backend(name)
    for n in neurons(model):
        n.backend = name


@contextlib.contextmanager
def temporarily(objects: Iterable[object], attribute: str, value: Any) -> Iterator[None]:
    """Set ``attribute`` of every one of ``objects`` to ``value`` for the block; each gets its
    own value back after it, also on an error."""
    objects = list(objects)
    before = [getattr(o, attribute) for o in objects]
    for o in objects:
        setattr(o, attribute, value)
    try:
        yield
    finally:
        for o, b in zip(objects, before):
            setattr(o, attribute, b)


@contextlib.contextmanager
def backend(model: nn.Module, name: str) -> Iterator[nn.Module]:
    """Every FSNeuron of ``model`` computes with backend ``name`` inside the block; each gets
    its own backend back after it, also on an error."""
    check_backend(name)
    with temporarily(neurons(model), "backend", name):
        yield model
