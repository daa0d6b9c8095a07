"""Installing FS sites in a model: the module surgery shared by conversion and loading.

A conversion is recorded as a *structure* (``model.fs_conversion["modules"]``): per
replaced module its dotted path, kind (a plain activation module, diffusers' ``GELU`` or
``GEGLU``), activation name and one signature per call site. :func:`apply_structure`
installs the :class:`FSActivation` modules it describes; :func:`convert_unet` writes it
after tracing a model, :func:`load_model` replays it before loading saved weights.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from fs_neurons.neuron import FSNeuron

from .fs_activation import FSActivation, SiteSignature, attach_site_counter, make_neurons

BANK_ACTIVATION = {"swish": "swish", "gelu": "gelu", "gelu_tanh": "gelu"}


class _ProjectedFS(nn.Module):
    """diffusers ``GELU``: proj, then the activation (now an FSActivation)."""

    def __init__(self, proj: nn.Module, act: FSActivation):
        super().__init__()
        self.proj, self.act = proj, act

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.act(self.proj(x))


class _GatedFS(nn.Module):
    """diffusers ``GEGLU``: proj, split into value and gate, value * act(gate)."""

    def __init__(self, proj: nn.Module, act: FSActivation):
        super().__init__()
        self.proj, self.act = proj, act

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * self.act(gate)


def apply_structure(model: nn.Module, spec: list[dict], K: int, method: str, bank_path: Optional[str] = None,
                    from_bank: bool = True) -> None:
    """Install FSActivation modules described by ``spec`` (as recorded in
    ``model.fs_conversion["modules"]``); neurons come from the bank entry (activation, K,
    method), or are placeholders (``from_bank=False``) for weights loaded afterwards."""
    modules = dict(model.named_modules())
    for s in spec:
        owner_path, _, attr = s["path"].rpartition(".")
        owner = modules[owner_path] if owner_path else model
        old = getattr(owner, attr)
        sigs = [SiteSignature(*sig) for sig in s["signatures"]]
        if from_bank:
            neurons = make_neurons(BANK_ACTIVATION[s["activation"]], K, method, len(sigs), bank_path)
        else:
            neurons = [FSNeuron(K) for _ in sigs]
        act = FSActivation(s["activation"], neurons, sigs)
        new = act if s["kind"] == "module" else (_GatedFS if s["kind"] == "geglu" else _ProjectedFS)(old.proj, act)
        new.__dict__["_replaced"] = old  # kept for revert_unet, outside the module tree
        new.train(old.training)  # an eval-mode model gets eval-mode (lookup) neurons
        setattr(owner, attr, new)
        act._remove_counter = attach_site_counter(owner, attr) if new is act else attach_site_counter(new, "act")


def fs_activations(model: nn.Module) -> list[tuple[str, FSActivation]]:
    """All FSActivation modules of a converted model with their paths."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, FSActivation)]


def set_mode(model: nn.Module, mode: str) -> None:
    """Switch every FSActivation of ``model`` to ``fs``, ``ann`` or ``record``."""
    if mode not in ("fs", "ann", "record"):
        raise ValueError(f"mode must be fs, ann or record, got {mode!r}")
    for _, m in fs_activations(model):
        m.mode = mode
