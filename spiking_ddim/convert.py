"""Convert a diffusers model's Swish (and optionally GELU) activations to FS neurons.

``convert_unet`` walks any ``nn.Module`` (diffusers' UNet2DModel and UNet2DConditionModel
first), finds every Swish module (``nn.SiLU``, diffusers' ``FP32SiLU``, whatever
``get_activation("silu")`` returns) and, on request, GELU modules (``nn.GELU``, diffusers'
``GELU`` and ``GEGLU``), traces one forward pass to learn how many places call each of
them, and replaces each with an :class:`FSActivation` holding one FS neuron per call site,
initialised from the shipped bank. A second traced pass checks that no Swish is left,
including Swish computed functionally (``F.silu``) outside any module.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from fs_neurons.names import UNET_METHOD
from fs_neurons.neuron import FSNeuron, check_K
from fs_neurons.utils.choices import check_choice

from .codings import Coding, as_coding
from .defaults import SPIKING
from .errors import SettingError
from .fs_activation import SiteSignature
from .layer_types import LAYER_TYPES, PASS_THROUGH
from .modeling import as_base_class, as_spiking_class, check_convertible
from .provenance import source_record
from .record import FSConfig, SiteModule, add_event
from .run_state import check_denoiser
from .sites import (
    GELU_TYPES,
    SWISH_TYPES,
    activation_name,
    apply_structure,
    is_autoencoder,
    remove_structure,
    site_kind,
)
from .synapses import check_layer_bits, check_weight_bits, quantize_weights


@dataclass
class SiteReport:
    """One converted call site; errors are MSE of the neuron on the site's own inputs."""

    name: str
    activation: str
    signature: list[int]
    mse_before: Optional[float] = None
    mse_after: Optional[float] = None
    spikes_before: Optional[float] = None  # expected spikes per call on the site's inputs
    spikes_after: Optional[float] = None


@dataclass
class ConversionReport:
    """What a conversion changed and what it could not."""

    K: int
    method: str
    modules: list[str] = field(default_factory=list)
    sites: list[SiteReport] = field(default_factory=list)
    functional_calls: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)  # layers whose analog input got an FS encoder (spiking "all")

    @property
    def complete(self) -> bool:
        """True when no Swish (module or functional) is left in the traced forward pass."""
        return not self.functional_calls and not self.remaining

    def summary(self) -> str:
        lines = [f"converted {len(self.modules)} modules, {len(self.sites)} call sites to FS neurons "
                 f"(K={self.K}, method={self.method})"]
        if self.inputs:
            lines.append(f"fully spiking: the analog inputs of {len(self.inputs)} conv / linear layers get signed FS "
                         "encoders (calibrate to fit them)")
        if self.remaining:
            lines.append(f"NOT converted (Swish modules left): {', '.join(self.remaining)}")
        if self.functional_calls:
            lines.append(f"Swish computed functionally (F.silu), not converted: {', '.join(sorted(set(self.functional_calls)))}")
        return "\n".join(lines)


@dataclass
class _Found:
    path: str
    owner: nn.Module
    attr: str
    module: nn.Module


def find_activations(model: nn.Module, types: tuple[type, ...]) -> list[_Found]:
    """Every registration of a module of ``types`` as a child of some module in ``model``."""
    found = []
    for owner_path, owner in model.named_modules():
        for attr, child in owner.named_children():
            if isinstance(child, types):
                found.append(_Found(f"{owner_path}.{attr}" if owner_path else attr, owner, attr, child))
    return found


def example_call(model: nn.Module, example_inputs: Optional[tuple[tuple, dict]] = None) -> Callable[[], Any]:
    """One small forward pass of the part of ``model`` that sampling runs: ``model(*args,
    **kwargs)`` for given ``example_inputs``; a UNet on one noisy sample (with text
    embeddings and class labels when its config asks for them); an autoencoder's ``decode``
    of one 8x8 latent. Tensors go to the model's device and dtype."""
    if example_inputs is not None:
        args, kwargs = example_inputs
        return lambda: model(*args, **kwargs)
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(cfg, "in_channels"):
        raise ValueError("cannot build example inputs for this model; pass example_inputs=(args, kwargs)")
    try:
        p = next(model.parameters())
        device, dtype = p.device, p.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    g = torch.Generator().manual_seed(0)
    if is_autoencoder(model):
        z = torch.randn(1, cfg.get("vq_embed_dim", None) or cfg.latent_channels, 8, 8, generator=g).to(device, dtype)
        return lambda: model.decode(z)
    size = cfg.get("sample_size", None) or 32
    size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    sample = torch.randn(1, cfg.in_channels, *size, generator=g).to(device, dtype)
    kwargs: dict[str, Any] = {}
    if cfg.get("cross_attention_dim", None) is not None:
        dim = cfg.cross_attention_dim
        dim = dim[0] if isinstance(dim, (list, tuple)) else dim
        kwargs["encoder_hidden_states"] = torch.randn(1, 4, dim, generator=g).to(device, dtype)
    if cfg.get("num_class_embeds", None) is not None or cfg.get("class_embed_type", None) is not None:
        kwargs["class_labels"] = torch.zeros(1, dtype=torch.long, device=device)
    timestep = torch.tensor([10], device=device)
    return lambda: model(sample, timestep, **kwargs)


class _FunctionalSpy(TorchFunctionMode):
    """Records calls of the watched functionals made outside the watched modules."""

    def __init__(self, functions: tuple[Callable, ...], inside: Callable[[], Optional[str]], current: Callable[[], str]):
        super().__init__()
        self.functions, self.inside, self.current = functions, inside, current
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.functions and self.inside() is None:
            self.calls.append(self.current() or "<model>")
        return func(*args, **(kwargs or {}))


def trace(model: nn.Module, watched: list[_Found], run: Callable[[], Any],
          functions: tuple[Callable, ...] = (F.silu,)) -> tuple[dict[int, list[SiteSignature]], list[str]]:
    """Run ``run()`` (a forward pass of ``model``); returns, per watched module (by id), the
    input signature of each call site, and the places that called a watched functional
    outside watched modules."""
    names = {id(m): n for n, m in model.named_modules()}
    stack: list[str] = []
    active: list[int] = []
    calls: dict[int, list[SiteSignature]] = defaultdict(list)
    owner_calls: dict[int, int] = defaultdict(int)
    watched_ids = {id(f.module) for f in watched}
    owner_of = {id(f.module): id(f.owner) for f in watched}
    owners = set(owner_of.values())

    def pre(module, inputs):
        stack.append(names.get(id(module), type(module).__name__))
        if id(module) in owners:
            owner_calls[id(module)] += 1
        if id(module) in watched_ids:
            active.append(id(module))
            x = inputs[0] if inputs else None
            if isinstance(x, torch.Tensor):
                calls[id(module)].append(SiteSignature.of(x))

    def post(module, inputs, output):
        stack.pop()
        if active and active[-1] == id(module):
            active.pop()

    handles = [nn.modules.module.register_module_forward_pre_hook(pre),
               nn.modules.module.register_module_forward_hook(post)]
    spy = _FunctionalSpy(functions, lambda: active[-1] if active else None, lambda: stack[-1] if stack else "")
    try:
        with torch.no_grad(), spy:
            run()
    finally:
        for h in handles:
            h.remove()
    sites = {}
    for mid, sigs in calls.items():
        per_owner = max(owner_calls[owner_of[mid]], 1)
        n = len(sigs) // per_owner
        consistent = n > 0 and len(sigs) == n * per_owner and all(
            sigs[k * n:(k + 1) * n] == sigs[:n] for k in range(per_owner))
        sites[mid] = sigs[:n] if consistent else sigs[:1]
    return sites, spy.calls


def check_settings(K: int, method: str = UNET_METHOD, coding: Union[str, Coding] = "step", spiking: str = "swish",
                   bank_path: Optional[str] = None) -> Coding:
    """Check the settings of :func:`convert_unet` that need no model, before any work:
    ``K`` a number of time steps the bank holds a Swish entry ``method`` for, ``coding`` a
    registered coding (:mod:`spiking_ddim.codings`: a name or a coding object) and
    ``spiking`` a known name. Raises :class:`SettingError` naming the setting; returns the
    coding with its defaults for ``K`` filled in (:meth:`Coding.resolve`)."""
    from fs_neurons.bank import BankError, load_bank

    try:
        check_K(K)
    except ValueError as e:
        raise SettingError("K", str(e)) from None
    try:
        entries = load_bank("swish", bank_path)
    except BankError:
        entries = None  # another activation's bank: its entries are checked when the neurons are made
    if entries is not None:
        have = sorted(e.K for e in entries if e.method == method)
        if K not in have:
            held = f"K = {', '.join(map(str, have))}" if have else "no entry of that method"
            raise SettingError("K", f"the bank has no {method} entry for K={K} (it holds {held})")
    check_choice("spiking", spiking, SPIKING, lambda m: SettingError("spiking", m))
    return as_coding(coding).resolve(K)


def _check_synapses(model: nn.Module, weight_bits: Optional[int], layer_bits: Optional[dict[str, int]]) -> None:
    """:class:`SettingError` for a bad ``weight_bits``, or ``layer_bits`` naming no layer, a bad
    width, or given without ``weight_bits``."""
    if weight_bits is not None:
        check_weight_bits(weight_bits)
        check_layer_bits(model, layer_bits or {})
    elif layer_bits:
        raise SettingError("layer_bits", "layer widths apply to quantised synapses: give weight_bits too")


def convert_unet(
    model: nn.Module,
    K: int = 8,
    method: str = UNET_METHOD,
    per_site: bool = True,
    convert_gelu: bool = False,
    example_inputs: Optional[tuple[tuple, dict]] = None,
    bank_path: Optional[str] = None,
    scope: Optional[str] = None,
    source: Optional[str] = None,
    component: str = "unet",
    coding: Union[str, Coding] = "step",
    spiking: str = "swish",
    weight_bits: Optional[int] = None,
    layer_bits: Optional[dict[str, int]] = None,
) -> ConversionReport:
    """Replace every Swish (and, with ``convert_gelu``, GELU) module of ``model`` in place by
    FS neurons from the bank entry (activation, K, method; by default ``ours-unet``, fitted to
    the Swish inputs of diffusion UNets); one neuron per call site unless
    ``per_site=False``. ``scope`` limits the conversion to one submodule (a dotted path);
    an autoencoder (AutoencoderKL, VQModel) is converted in its ``decoder`` by default, the
    part that sampling runs. ``source`` (a hub id or directory the model was loaded from)
    and ``component`` (its name in a pipeline) go into the record with a digest of the
    weights (:mod:`spiking_ddim.provenance`). ``coding``: how the sites code across
    denoising steps (:mod:`spiking_ddim.codings`; a name or a coding object with its
    settings): ``step`` (every call sends its full FS code) or ``delta`` (a denoiser's sites
    send only changes; fit its encoders with :meth:`Coding.fit` before sampling).
    ``spiking``: ``swish`` (the replaced activations spike; every other layer input stays
    analog) or ``all`` (a denoiser's conv / linear layers fed by analog values also read a
    signed FS code of it, except the first layer, which reads the model's input; attention
    score matmuls stay analog); fit those encoders by calibrating. ``weight_bits`` (say 8):
    every conv / linear weight of the model quantised per output channel to that many bits
    (:mod:`spiking_ddim.synapses`; None keeps float32 weights), the layers ``layer_bits``
    names to their own widths (say ``{"conv_out": 16}``). Returns a
    :class:`ConversionReport`.

    All or nothing: on any error the model is left unconverted. Raises ``ValueError`` for a
    bad K, an unknown bank entry or scope, a model already converted, or nothing to convert.
    """
    coding = check_settings(K, method, coding, spiking, bank_path)
    _check_synapses(model, weight_bits, layer_bits)
    scope = _check_model(model, coding, spiking, scope)
    types = SWISH_TYPES + (GELU_TYPES if convert_gelu else ())
    found = _in_scope(find_activations(model, types), scope)
    if not found:
        what = "Swish (SiLU)" + (" or GELU" if convert_gelu else "")
        where = f" under {scope!r}" if scope else ""
        raise ValueError(f"{type(model).__name__} has no {what} activation modules{where} to convert")
    run = example_call(model, example_inputs)
    report = ConversionReport(K, method)
    spec = _site_modules(model, found, run, per_site, report)
    origin = source_record(model, source, component)
    installed = list(spec)  # every site that may be in the model, for the rollback
    weights = {k: v.clone() for k, v in model.state_dict().items()} if weight_bits else None
    try:
        apply_structure(model, spec, K, method, bank_path)
        _check_remaining(model, run, scope, spec, report)
        if spiking == "all":
            inputs = analog_inputs(model, run)
            installed += inputs
            apply_structure(model, inputs, K, method)
            spec += inputs
            report.inputs = [s.path for s in inputs]
        coding.install(model)
        layers = quantize_weights(model, weight_bits, layer_bits or {}) if weight_bits else 0
        config = getattr(model, "config", None)
        model.fs_config = FSConfig(type(model).__name__, K, method, tuple(spec), coding=coding, spiking=spiking,
                                   per_site=per_site, act_fn=config.get("act_fn", None) if config is not None else None,
                                   source=origin, weight_bits=weight_bits, layer_bits=layer_bits or None)
        add_event(model, "convert", K=K, method=method, coding=coding.to_json(), spiking=spiking,
                  per_site=per_site, bank=str(bank_path) if bank_path else "shipped", sites=len(report.sites),
                  scope=scope, weight_bits=weight_bits, layer_bits=layer_bits or None, quantized_layers=layers)
        as_spiking_class(model)  # a converted diffusers model saves and loads as Spiking<Base>
    except BaseException:  # all or nothing: whatever stage failed, the model is left as it came
        coding.remove(model)
        remove_structure(model, installed)
        if weights is not None:
            _restore_weights(model, weights)
        model.__dict__.pop("fs_config", None)
        as_base_class(model)
        raise
    return report


def _restore_weights(model: nn.Module, weights: dict) -> None:
    """Put back the weights ``model`` had before its conv / linear layers were quantised."""
    for layer in model.modules():
        layer._buffers.pop("weight_scale", None)
    model.load_state_dict(weights)


def _check_model(model: nn.Module, coding: Coding, spiking: str, scope: Optional[str]) -> Optional[str]:
    """``ValueError`` for a model :func:`convert_unet` cannot convert with these settings;
    the scope to convert in (an autoencoder's decoder by default)."""
    check_convertible(model)
    if coding.needs_denoiser or spiking == "all":
        check_denoiser(model, f"coding {coding.name!r}" if coding.needs_denoiser else "spiking 'all'")
    if hasattr(model, "fs_config"):
        raise ValueError(f"{type(model).__name__} is already converted (K={model.fs_config.K})")
    if scope is None and is_autoencoder(model):
        scope = "decoder"
    if scope is not None and scope not in dict(model.named_modules()):
        raise ValueError(f"{type(model).__name__} has no submodule {scope!r} to convert")
    return scope


def _site_modules(model: nn.Module, found: list[_Found], run: Callable[[], Any], per_site: bool,
                  report: ConversionReport) -> list[SiteModule]:
    """The modules of ``found`` that ``run`` calls, with their call sites' signatures (one
    site each without ``per_site``); the others go into ``report.remaining``."""
    sites, _ = trace(model, found, run)
    spec = []
    for f in found:
        sigs = sites.get(id(f.module))
        if not sigs:
            report.remaining.append(f"{f.path} (never called in the traced forward pass)")
            continue
        spec.append(SiteModule(f.path, site_kind(f.module), activation_name(f.module),
                               tuple(tuple(s.to_json()) for s in (sigs if per_site else sigs[:1]))))
    return spec


def _check_remaining(model: nn.Module, run: Callable[[], Any], scope: Optional[str], spec: list[SiteModule],
                     report: ConversionReport) -> None:
    """Fill ``report`` with the converted sites and what Swish is left (modules, functional calls)."""
    report.modules = [s.path for s in spec]
    report.sites = [SiteReport(f"{s.path}[{i}]", s.activation, list(sig))
                    for s in spec for i, sig in enumerate(s.signatures)]
    left = find_activations(model, SWISH_TYPES)
    _, functional = trace(model, left, run)
    report.remaining += [f.path for f in _in_scope(left, scope)]
    report.functional_calls = [c for c in functional if scope is None or _under(c, scope)]


def analog_inputs(model: nn.Module, run: Callable[[], Any]) -> list[SiteModule]:
    """The conv / linear layers of a converted ``model`` that read analog values in the call
    ``run`` makes (not an FS neuron's output, nor one handed on by a pass-through module such
    as ``nn.Dropout``), except the one reading the model's own input: one ``input`` site each,
    with its input's signature, in the order first called."""
    spikes: dict[int, torch.Tensor] = {}  # FS outputs of the forward in progress, by id (kept alive)
    first: list[int] = []  # id of the model's input in the first call
    signatures: dict[str, Optional[SiteSignature]] = {}
    analog: dict[str, bool] = {}

    def start(_m, args, kwargs):
        spikes.clear()
        if not first:
            first.append(id(args[0] if args else kwargs["sample"]))

    def spiking(_m, _args, out):
        spikes[id(out)] = out

    def handed_on(_m, args, out):
        if args and id(args[0]) in spikes and isinstance(out, torch.Tensor):
            spikes[id(out)] = out

    def seen(path, _m, args):
        x = args[0]
        signatures.setdefault(path, SiteSignature.of(x))
        if id(x) in first:
            signatures[path] = None  # reads the model's input: stays analog
        analog[path] = analog.get(path, False) or spikes.get(id(x)) is not x

    handles = [model.register_forward_pre_hook(start, with_kwargs=True)]
    for path, module in model.named_modules():
        if isinstance(module, FSNeuron):
            handles.append(module.register_forward_hook(spiking))
        elif isinstance(module, PASS_THROUGH):
            handles.append(module.register_forward_hook(handed_on))
        elif isinstance(module, LAYER_TYPES):
            handles.append(module.register_forward_pre_hook(functools.partial(seen, path)))
    try:
        run()
    finally:
        for h in handles:
            h.remove()
        spikes.clear()
    return [SiteModule(path, "input", "identity", (tuple(signatures[path].to_json()),))
            for path, reads_analog in analog.items() if reads_analog and signatures[path] is not None]


def _under(path: str, scope: str) -> bool:
    return path == scope or path.startswith(scope + ".")


def _in_scope(found: list[_Found], scope: Optional[str]) -> list[_Found]:
    return found if scope is None else [f for f in found if _under(f.path, scope)]


def revert_unet(model: nn.Module) -> nn.Module:
    """Undo :func:`convert_unet` in place: every FS site gets back the module it replaced."""
    record = getattr(model, "fs_config", None)
    if record is None:
        raise ValueError("this model was not converted by convert_unet")
    record.coding.remove(model)
    remove_structure(model, record.modules)
    del model.fs_config
    return as_base_class(model)
