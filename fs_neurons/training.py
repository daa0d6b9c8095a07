"""Surrogate-gradient training of FS neurons against a target activation (the paper's way)."""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .distribution import InputDistribution
from .functional import backend
from .neuron import FSNeuron
from .targets import Activation

Callback = Callable[[int, torch.Tensor], None]


def train_surrogate(
    neuron: FSNeuron,
    target: Activation,
    dist: InputDistribution,
    epochs: int,
    lr: float = 1e-3,
    log_every: int = 100,
    callback: Optional[Callback] = None,
) -> torch.Tensor:
    """Full-batch Adam on the weighted MSE over ``dist``, gradients through the surrogate.

    A neuron with ``num_neurons = P`` trains P independent neurons at once (each sees every
    point). Returns the loss curve, shape (P, epochs // log_every + 1): the loss before
    training and after every ``log_every`` epochs. ``callback(epoch, losses)`` runs after
    each epoch with the (P,) losses.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    P = neuron.num_neurons or 1
    x = dist.x.to(torch.float32)
    y = target(dist.x).to(torch.float32)
    w = (dist.w / dist.w.sum()).to(torch.float32)
    if neuron.num_neurons is not None:
        if neuron.neuron_dim != 0:
            raise ValueError("train_surrogate needs neuron_dim=0 for a multi-neuron FSNeuron")
        x = x.expand(P, -1)
    was_training = neuron.training
    neuron.train()
    opt = torch.optim.Adam(neuron.parameters(), lr=lr)
    curve = []
    try:
        with backend(neuron, "simulate"):
            for epoch in range(epochs + 1):
                err = neuron(x) - y
                losses = (w * err * err).sum(-1).reshape(P)
                if epoch % log_every == 0 or epoch == epochs:
                    curve.append(losses.detach().double())
                if epoch == epochs:
                    break
                opt.zero_grad(set_to_none=True)
                losses.sum().backward()
                opt.step()
                if callback is not None:
                    callback(epoch, losses.detach())
    finally:
        neuron.train(was_training)
    return torch.stack(curve, 1)
