"""Installing FS sites in a model: the module surgery shared by conversion and loading.

A conversion records its replaced modules (``model.fs_config.modules``, a tuple of
:class:`spiking_ddim.record.SiteModule`): per module its dotted path, kind (a plain
activation module, diffusers' ``GELU`` or ``GEGLU``; or ``input``: a conv / linear layer
whose analog input a signed FS site codes, installed as its ``input_encoder`` and applied
by a forward pre-hook), activation name and one signature per call site. :func:`apply_structure` installs the :class:`FSActivation` modules they
describe; :func:`convert_unet` records them after tracing a model, :func:`load_model`
replays them before loading saved weights.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Sequence

import torch
from diffusers.models.activations import GEGLU, GELU, FP32SiLU
from torch import nn

from fs_neurons.functional import temporarily
from fs_neurons.neuron import FSNeuron
from fs_neurons.signed import SignedFSNeuron

from .fs_activation import FSActivation, SiteSignature, attach_site_counter, make_neurons
from .layer_types import LAYER_TYPES
from .record import SiteModule

BANK_ACTIVATION = {"swish": "swish", "gelu": "gelu", "gelu_tanh": "gelu"}  # record activation -> bank file
SWISH_TYPES: tuple[type, ...] = (nn.SiLU, FP32SiLU)
GELU_TYPES: tuple[type, ...] = (nn.GELU, GELU, GEGLU)


def activation_name(module: nn.Module) -> str:
    """``swish``, ``gelu`` or ``gelu_tanh``: the activation a Swish or GELU module computes."""
    if isinstance(module, SWISH_TYPES):
        return "swish"
    approximate = getattr(module, "approximate", "none")
    return "gelu_tanh" if approximate == "tanh" else "gelu"


def is_autoencoder(model: nn.Module) -> bool:
    """A diffusers autoencoder (AutoencoderKL, VQModel): sampling runs only its ``decode``."""
    cfg = getattr(model, "config", None)
    return hasattr(model, "decode") and hasattr(model, "decoder") and cfg is not None and "latent_channels" in cfg


def site_kind(module: nn.Module) -> str:
    """How a module is replaced: itself (``module``), or its activation behind a projection."""
    if isinstance(module, GEGLU):
        return "geglu"
    return "projected" if isinstance(module, GELU) else "module"


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




def _encode_input(layer: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook of a layer with an input site: the layer reads its input's FS code."""
    return (layer.input_encoder(args[0]), *args[1:])


def _input_site(layer: nn.Module, s: SiteModule, K: int) -> FSActivation:
    """The FS site that codes ``layer``'s analog input: signed neurons, a binary start."""
    if not isinstance(layer, LAYER_TYPES):
        found = "nothing" if layer is None else type(layer).__name__
        raise ValueError(f"module {s.path!r}: the record codes the input of a conv / linear layer there, the model "
                         f"has {found}")
    sigs = [SiteSignature(*sig) for sig in s.signatures]
    act = FSActivation("identity", [SignedFSNeuron.binary(K) for _ in sigs], sigs)
    act.train(layer.training)
    return act


def apply_structure(model: nn.Module, spec: Sequence[SiteModule], K: int, method: str,
                    bank_path: Optional[str] = None, from_bank: bool = True) -> None:
    """Install FSActivation modules described by ``spec`` (as recorded in
    ``model.fs_config.modules``); neurons come from the bank entry (activation, K, method),
    or are placeholders (``from_bank=False``) for weights loaded afterwards.

    All or nothing: every replacement is built and checked (each path names a module of the
    recorded activation and kind) before the first is installed, so an error (a missing bank
    entry, a record that does not fit the model) leaves ``model`` as it was. Raises
    ``ValueError`` naming the module."""
    modules = dict(model.named_modules())
    planned, inputs = [], []
    for s in spec:
        if s.kind == "input":
            inputs.append((modules.get(s.path), _input_site(modules.get(s.path), s, K)))
            continue
        owner_path, _, attr = s.path.rpartition(".")
        owner = modules.get(owner_path) if owner_path else model
        old = getattr(owner, attr, None) if owner is not None else None
        if old is None or not isinstance(old, SWISH_TYPES + GELU_TYPES):
            found = "nothing" if old is None else type(old).__name__
            raise ValueError(f"module {s.path!r}: the record converts a Swish / GELU module there, the model has "
                             f"{found}")
        if (site_kind(old), activation_name(old)) != (s.kind, s.activation):
            raise ValueError(f"module {s.path!r} is recorded as {s.activation} ({s.kind}), but the model has "
                             f"{activation_name(old)} ({site_kind(old)}) there")
        sigs = [SiteSignature(*sig) for sig in s.signatures]
        if from_bank:
            neurons = make_neurons(BANK_ACTIVATION[s.activation], K, method, len(sigs), bank_path)
        else:
            neurons = [FSNeuron(K) for _ in sigs]
        act = FSActivation(s.activation, neurons, sigs)
        new = act if s.kind == "module" else (_GatedFS if s.kind == "geglu" else _ProjectedFS)(old.proj, act)
        new.__dict__["_replaced"] = old  # kept for revert_unet, outside the module tree
        new.train(old.training)  # an eval-mode model gets eval-mode (lookup) neurons
        planned.append((owner, attr, new, act))
    try:
        for owner, attr, new, act in planned:
            setattr(owner, attr, new)
            act._remove_counter = attach_site_counter(owner, attr) if new is act else attach_site_counter(new, "act")
        for layer, act in inputs:
            layer.input_encoder = act
            remove_counter = attach_site_counter(layer, "input_encoder")
            handle = layer.register_forward_pre_hook(_encode_input)
            act._remove_counter = lambda r=remove_counter, h=handle: (r(), h.remove())
    except BaseException:  # e.g. a hook that could not be registered: put back what was installed
        remove_structure(model, spec)
        raise


def remove_structure(model: nn.Module, spec: Sequence[SiteModule]) -> None:
    """Undo :func:`apply_structure`, also one that stopped part way: every installed FS site
    gets back the module it replaced, and its hooks are removed."""
    modules = dict(model.named_modules())
    for s in spec:
        if s.kind == "input":
            layer = modules[s.path]
            if isinstance(getattr(layer, "input_encoder", None), FSActivation):
                _remove_counter(layer.input_encoder)
                del layer.input_encoder
            continue
        owner_path, _, attr = s.path.rpartition(".")
        owner = modules[owner_path] if owner_path else model
        current = getattr(owner, attr)
        if not isinstance(current, (FSActivation, _ProjectedFS, _GatedFS)):
            continue
        _remove_counter(current if isinstance(current, FSActivation) else current.act)
        setattr(owner, attr, current.__dict__["_replaced"])


def _remove_counter(act: FSActivation) -> None:
    """Remove the call counter (and an input encoder's hook) :func:`apply_structure` attached,
    if it got that far."""
    remove = act.__dict__.get("_remove_counter")
    if remove is not None:
        remove()
        del act.__dict__["_remove_counter"]


def fs_activations(model: nn.Module) -> list[tuple[str, FSActivation]]:
    """All FSActivation modules of a converted model with their paths."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, FSActivation)]


@contextlib.contextmanager
def original_activations(model: nn.Module) -> Iterator[nn.Module]:
    """Every FS site of ``model`` runs the activation it replaced inside the block (the
    converted model as the original network, with its current weights); FS neurons after."""
    with temporarily((m for _, m in fs_activations(model)), "original", True):
        yield model
