"""Saving and loading converted models the diffusers way.

A converted model's class becomes ``Spiking<Base>`` (e.g. ``SpikingUNet2DModel``), a
subclass of its diffusers class whose ``save_pretrained`` also writes
``spiking_config.json`` (the conversion: sites, K, method) beside diffusers' ``config.json``
and safetensors weights, which include every FS neuron's h, d and T. ``load_model`` (and
``Spiking<Base>.from_pretrained``) rebuilds the base model from its config, reinstalls the
FS sites and loads the weights strictly, so outputs are identical after a round trip.

Plain diffusers never silently loads the Swish network from such a directory:

* a pipeline's ``model_index.json`` names the component ``["spiking_ddim.modeling",
  "SpikingUNet2DModel"]``; ``DiffusionPipeline.from_pretrained`` loads it through this
  module (FS neurons included) once ``spiking_ddim`` is imported, and otherwise stops with
  diffusers' error naming ``spiking_ddim.modeling`` and asking to import it;
* a model's ``config.json`` carries ``quantization_config = {"quant_method": QUANT_METHOD}``,
  so ``UNet2DModel.from_pretrained(dir)`` stops with "Unknown quantization type, got
  spiking_ddim ..." naming the loader to use.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Union

import diffusers
import torch
from diffusers import ModelMixin  # also looked up here by diffusers' pipeline loader, to find from_pretrained
from safetensors.torch import load_file
from torch import nn

from fs_neurons.files import atomic_directory, atomic_write_text

from .sites import BANK_ACTIVATION, KINDS, apply_structure, fs_activations

SPIKING_CONFIG_NAME = "spiking_config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
FORMAT_VERSION = 2  # 2: the record carries source and history (spiking_ddim.provenance); 1 still loads
READABLE_FORMATS = (1, 2)
# diffusers prints this in its "Unknown quantization type" error when plain diffusers opens a converted model
QUANT_METHOD = "spiking_ddim (a model converted to FS neurons: load it with spiking_ddim.load_model(path))"
_CLASSES: dict[type, type] = {}


class SpikingModelMixin:
    """Behaviour shared by every ``Spiking<Base>`` class."""

    fs_conversion: dict

    def save_pretrained(self, save_directory: Union[str, os.PathLike], **kwargs) -> None:
        """diffusers' save_pretrained (safetensors), plus ``spiking_config.json``; atomic."""
        kwargs.setdefault("safe_serialization", True)
        with atomic_directory(save_directory) as tmp:
            super().save_pretrained(tmp, **kwargs)
            config = json.loads((tmp / "config.json").read_text())
            config["quantization_config"] = {"quant_method": QUANT_METHOD}
            atomic_write_text(tmp / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
            spec = {"format": FORMAT_VERSION, "base_class": type(self).__mro__[2].__name__, **self.fs_conversion}
            atomic_write_text(tmp / SPIKING_CONFIG_NAME, json.dumps(spec, indent=1) + "\n")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], subfolder: Optional[str] = None,
                        torch_dtype: Optional[torch.dtype] = None, **kwargs) -> nn.Module:
        """:func:`load_model`; what ``DiffusionPipeline.from_pretrained`` calls for an FS
        component. Loading options this loader cannot honour (device_map, variant,
        quantization_config, ...) raise instead of being dropped."""
        torch_dtype = torch_dtype or kwargs.pop("dtype", None)
        unsupported = sorted(k for k, v in kwargs.items()
                             if v is not None and v is not False and k not in _IGNORED_LOAD_KWARGS)
        if unsupported:
            raise ValueError(f"{cls.__name__}.from_pretrained does not support {', '.join(unsupported)}; "
                             "load the model with defaults and move it with .to()")
        model = load_model(pretrained_model_name_or_path, subfolder)
        return model.to(torch_dtype) if torch_dtype is not None else model


# harmless options diffusers' pipeline loader passes to every component
_IGNORED_LOAD_KWARGS = {"low_cpu_mem_usage", "cache_dir", "local_files_only", "force_download", "proxies", "token",
                        "revision", "provider", "provider_options", "sess_options", "disable_mmap", "use_safetensors", "output_loading_info"}


def spiking_class(base: type) -> type:
    """The ``Spiking<Base>`` subclass of a diffusers model class (created once), defined in
    this module, so that a pipeline's ``model_index.json`` points here."""
    if issubclass(base, SpikingModelMixin):
        return base
    if base not in _CLASSES:
        _CLASSES[base] = type(f"Spiking{base.__name__}", (SpikingModelMixin, base), {"__module__": __name__})
    return _CLASSES[base]


def __getattr__(name: str) -> type:
    """``Spiking<Base>`` for any diffusers model class, as diffusers' pipeline loader looks
    classes up by the name ``model_index.json`` gives (PEP 562)."""
    base = getattr(diffusers, name[len("Spiking"):], None) if name.startswith("Spiking") else None
    if isinstance(base, type) and issubclass(base, ModelMixin):
        return spiking_class(base)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def mark_converted(model: nn.Module) -> nn.Module:
    """Give a model converted in place its ``Spiking<Base>`` class."""
    model.__class__ = spiking_class(type(model))
    return model


def resolve_model_dir(name_or_path: Union[str, os.PathLike], subfolder: Optional[str] = None) -> Path:
    """A local model directory: ``name_or_path`` itself, or a hub snapshot of it.

    Raises ``FileNotFoundError`` for a missing local path and ``OSError`` naming the repo
    when a hub id cannot be fetched (offline, unknown repo)."""
    path = Path(name_or_path)
    if path.exists() or str(name_or_path).startswith((".", "/", "~")) or str(name_or_path).count("/") != 1:
        path = path.expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"model directory not found: {path}")
    else:
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(str(name_or_path)))
        except Exception as e:  # noqa: BLE001 - offline, unknown repo, auth: one message
            raise OSError(
                f"cannot fetch model {name_or_path!r} from the Hugging Face hub "
                f"({type(e).__name__}: {' '.join(str(e).split())}). "
                "Offline? Pass a local diffusers model directory instead."
            ) from None
    if subfolder:
        path = path / subfolder
    if (path / "model_index.json").is_file() and (path / "unet").is_dir():
        path = path / "unet"  # a pipeline: take its UNet
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a diffusers model directory (no config.json)")
    return path


def check_record(spec: object, where: Union[str, Path]) -> None:
    """``ValueError`` naming the first field of a ``spiking_config.json`` record that is
    missing or malformed."""
    def bad(what: str) -> ValueError:
        return ValueError(f"{where}: {what}")

    if not isinstance(spec, dict):
        raise bad("must be a JSON object")
    if spec.get("format") not in READABLE_FORMATS:
        raise bad(f"unsupported format {spec.get('format')!r} (this version reads {', '.join(map(str, READABLE_FORMATS))})")
    for key in ("base_class", "K", "method", "modules"):
        if key not in spec:
            raise bad(f"missing field {key!r}")
    K = spec["K"]
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise bad(f"K must be an integer >= 1, got {K!r}")
    if not isinstance(spec["method"], str) or not isinstance(spec["base_class"], str):
        raise bad("method and base_class must be strings")
    if not isinstance(spec["modules"], list) or not spec["modules"]:
        raise bad("modules must be a non-empty list")
    for i, m in enumerate(spec["modules"]):
        if not isinstance(m, dict) or not all(k in m for k in ("path", "kind", "activation", "signatures")):
            raise bad(f"modules[{i}] must have path, kind, activation and signatures")
        if m["kind"] not in KINDS:
            raise bad(f"modules[{i}] ({m['path']}): kind must be one of {', '.join(KINDS)}, got {m['kind']!r}")
        if m["activation"] not in BANK_ACTIVATION:
            raise bad(f"modules[{i}] ({m['path']}): activation must be one of {', '.join(BANK_ACTIVATION)}, "
                      f"got {m['activation']!r}")
        sigs = m["signatures"]
        if not (isinstance(sigs, list) and sigs and all(
                isinstance(g, list) and len(g) == 2 and all(isinstance(v, int) and v >= 1 for v in g) for g in sigs)):
            raise bad(f"modules[{i}] ({m['path']}): signatures must be a non-empty list of [ndim, channels]")


def load_model(name_or_path: Union[str, os.PathLike], subfolder: Optional[str] = None,
               device: Union[str, torch.device, None] = None) -> nn.Module:
    """Load a diffusers model, converted (``spiking_config.json`` present) or plain."""
    path = resolve_model_dir(name_or_path, subfolder)
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"corrupt model config {path / 'config.json'}: {e}") from None
    spiking = path / SPIKING_CONFIG_NAME
    if not spiking.is_file():
        cls = getattr(diffusers, config.get("_class_name", ""), None)
        if cls is None:
            raise ValueError(f"{path}: unknown diffusers model class {config.get('_class_name')!r}")
        model = cls.from_pretrained(path)
        return model.to(device) if device is not None else model
    try:
        spec = json.loads(spiking.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"corrupt {spiking}: {e}") from None
    check_record(spec, spiking)
    base = getattr(diffusers, spec["base_class"], None)
    if not (isinstance(base, type) and issubclass(base, ModelMixin)):
        raise ValueError(f"{spiking}: unknown base class {spec['base_class']!r}")
    if config.get("_class_name") not in (spec["base_class"], f"Spiking{spec['base_class']}"):
        raise ValueError(f"{spiking}: base class {spec['base_class']!r} does not match config.json's "
                         f"{config.get('_class_name')!r}")
    model = base.from_config({k: v for k, v in config.items() if not k.startswith("_") and k != "quantization_config"})
    try:
        apply_structure(model, spec["modules"], spec["K"], spec["method"], from_bank=False)
    except ValueError as e:
        raise ValueError(f"{spiking} does not fit the model in {path}: {e}") from None
    model.fs_conversion = {k: v for k, v in spec.items() if k not in ("format", "base_class")}
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"weights not found: {weights}")
    try:
        state = load_file(str(weights))
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise ValueError(f"corrupt weights file {weights}: {e}") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shapes differ, e.g. K edited in spiking_config.json
        first = " ".join(str(e).split())[:400]
        raise ValueError(f"{weights} does not match {spiking} (K={spec['K']}): {first}") from None
    if missing or unexpected:
        raise ValueError(f"{weights} does not match the converted model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, act in fs_activations(model):
        for i, neuron in enumerate(act.neurons):
            for p in ("h", "d", "T"):
                if not torch.isfinite(getattr(neuron, p)).all():
                    raise ValueError(f"{weights}: FS site {name}[{i}] has NaN or infinite values in its parameter {p}")
    mark_converted(model)
    model.eval()
    return model.to(device) if device is not None else model
