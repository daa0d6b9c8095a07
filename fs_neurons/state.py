"""State that lives across calls, and how to forget it (as spikingjelly's ``MemoryModule``
and ``functional.reset_net``).

A module that keeps something from one call to the next (a delta encoder's value sent so
far, a model's run clock) is a :class:`Stateful` module: its state is plain attributes of
that module, visible with the module in ``model.named_modules()``, never saved with the
weights, and :meth:`Stateful.reset` forgets it. :func:`reset_net` resets every one in a
model, so the model's next call starts a new run.
"""

from __future__ import annotations

from torch import nn


class Stateful(nn.Module):
    """A module with state across calls; subclasses say what :meth:`reset` forgets."""

    def reset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} keeps state across calls and must say how to reset it")


def reset_net(model: nn.Module) -> None:
    """Forget the state of every :class:`Stateful` module in ``model`` (itself included)."""
    for m in model.modules():
        if isinstance(m, Stateful):
            m.reset()
