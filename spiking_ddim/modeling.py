"""Saving and loading converted models the diffusers way.

Converted models are instances of real, importable subclasses of the diffusers classes we
support: :class:`SpikingUNet2DModel`, :class:`SpikingUNet2DConditionModel`,
:class:`SpikingAutoencoderKL`, :class:`SpikingVQModel`. Conversion works in place (a
pipeline keeps the object it holds), so it gives the model its Spiking class
(:func:`as_spiking_class`) and :func:`spiking_ddim.revert_unet` gives the base class back;
each Spiking class names its base in ``base_class``. Their ``save_pretrained`` writes
diffusers' ``config.json`` and safetensors weights (every FS neuron's h, d and T
included) and ``spiking_config.json``, the conversion record
(:class:`spiking_ddim.record.FSConfig`). :func:`load_model` (and ``Spiking*.from_pretrained``)
rebuilds the base model from its config, reinstalls the FS sites, loads the weights
strictly and checks them, so outputs are identical after a round trip.

Plain diffusers never silently loads a different network from such a directory:

* a pipeline's ``model_index.json`` names the component ``["spiking_ddim.modeling",
  "SpikingUNet2DModel"]``; ``DiffusionPipeline.from_pretrained`` loads it through this
  module (FS neurons included) once it is imported (diffusers looks classes up among
  imported modules only), and otherwise stops with diffusers' error asking to import
  ``spiking_ddim.modeling``;
* a model's ``config.json`` gives its activation as ``act_fn`` = :data:`FS_ACT_FN` (it is
  no longer SiLU), so ``UNet2DModel.from_pretrained(dir)`` stops in diffusers'
  ``get_activation`` with an error quoting that value, which names ``spiking_ddim.load_model``.
  The record keeps the original ``act_fn`` to rebuild the base model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Union

import diffusers
import torch
from diffusers import AutoencoderKL, ModelMixin, UNet2DConditionModel, UNet2DModel, VQModel
from safetensors.torch import load_file
from torch import nn

from fs_neurons.utils.files import atomic_directory, atomic_write_text

from .model_card import write_model_card
from .record import FSConfig, RecordError
from .sites import apply_structure, fs_activations
from .synapses import add_scale_buffers, check_on_grid

SPIKING_CONFIG_NAME = "spiking_config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
# config.json's act_fn of a converted model: plain diffusers quotes it in its "activation function ... not found" error
FS_ACT_FN = "fs-neurons (a spiking_ddim model: load it with spiking_ddim.load_model)"


class SpikingModelMixin:
    """Saving and loading shared by every Spiking class; ``base_class`` is the diffusers
    class it extends."""

    base_class: type
    fs_config: FSConfig

    def save_pretrained(self, save_directory: Union[str, os.PathLike], **kwargs) -> None:
        """diffusers' save_pretrained (safetensors), with the FS activation in config.json, the
        record in spiking_config.json and a model card in README.md; atomic."""
        kwargs.setdefault("safe_serialization", True)
        with atomic_directory(save_directory) as tmp:
            super().save_pretrained(tmp, **kwargs)
            config = json.loads((tmp / "config.json").read_text())
            config["_class_name"] = self.base_class.__name__
            if "act_fn" in config:
                config["act_fn"] = FS_ACT_FN
            atomic_write_text(tmp / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
            atomic_write_text(tmp / SPIKING_CONFIG_NAME, json.dumps(self.fs_config.to_json(), indent=1) + "\n")
            write_model_card(tmp, {(self.fs_config.source or {}).get("component") or "model": self.fs_config},
                             pipeline=False)

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
                        "revision", "provider", "provider_options", "sess_options", "disable_mmap", "use_safetensors",
                        "output_loading_info"}


class SpikingDenoiserMixin(SpikingModelMixin):
    """A denoiser with FS neurons: one whose coding keeps state across denoising steps ticks
    its ``run_clock`` (:mod:`spiking_ddim.run_state`) before every eval-mode forward, which starts a new run when the timestep
    does not fall or the batch changes shape."""

    def forward(self, sample: torch.Tensor, timestep, *args, **kwargs):
        clock = getattr(self, "run_clock", None)
        if clock is not None and not self.training:
            clock.tick(self, sample, timestep)
        return super().forward(sample, timestep, *args, **kwargs)


class SpikingUNet2DModel(SpikingDenoiserMixin, UNet2DModel):
    """A UNet2DModel (DDPM, DDIM, latent diffusion) with FS neurons."""

    base_class = UNet2DModel


class SpikingUNet2DConditionModel(SpikingDenoiserMixin, UNet2DConditionModel):
    """A UNet2DConditionModel (Stable Diffusion) with FS neurons."""

    base_class = UNet2DConditionModel


class SpikingAutoencoderKL(SpikingModelMixin, AutoencoderKL):
    """An AutoencoderKL whose decoder has FS neurons."""

    base_class = AutoencoderKL


class SpikingVQModel(SpikingModelMixin, VQModel):
    """A VQModel whose decoder has FS neurons."""

    base_class = VQModel


SPIKING_CLASSES: dict[type, type] = {c.base_class: c for c in (SpikingUNet2DModel, SpikingUNet2DConditionModel,
                                                              SpikingAutoencoderKL, SpikingVQModel)}


def check_convertible(model: nn.Module) -> None:
    """``ValueError`` for a diffusers model of a class without a Spiking class: it could not
    be saved without plain diffusers loading it as a different network. (A plain torch
    module converts; it is never saved the diffusers way.)"""
    if isinstance(model, ModelMixin) and not isinstance(model, SpikingModelMixin) and type(model) not in SPIKING_CLASSES:
        supported = ", ".join(c.__name__ for c in SPIKING_CLASSES)
        raise ValueError(f"spiking_ddim converts the diffusers models {supported}; not {type(model).__name__}")


def as_spiking_class(model: nn.Module) -> nn.Module:
    """Give a diffusers model converted in place its Spiking class (a plain torch module keeps its own)."""
    spiking = SPIKING_CLASSES.get(type(model))
    if spiking is not None:
        model.__class__ = spiking
    return model


def as_base_class(model: nn.Module) -> nn.Module:
    """Undo :func:`as_spiking_class`."""
    if isinstance(model, SpikingModelMixin):
        model.__class__ = model.base_class
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


def _load_weights(model: nn.Module, weights: Path, spiking: Path, record: FSConfig) -> None:
    """Load the converted ``model``'s weights from ``weights``, checking they fit its record
    (``spiking``, for the errors) and that every FS parameter is finite."""
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
        raise ValueError(f"{weights} does not match {spiking} (K={record.K}): {first}") from None
    if missing or unexpected:
        raise ValueError(f"{weights} does not match the converted model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, act in fs_activations(model):
        for i, neuron in enumerate(act.neurons):
            for p in ("h", "d", "T"):
                if not torch.isfinite(getattr(neuron, p)).all():
                    raise ValueError(f"{weights}: FS site {name}[{i}] has NaN or infinite values in its parameter {p}")


def load_model(name_or_path: Union[str, os.PathLike], subfolder: Optional[str] = None,
               device: Union[str, torch.device, None] = None) -> nn.Module:
    """Load a diffusers model, converted (``spiking_config.json`` present) or plain.

    Raises ``ValueError`` naming the problem for a record that is malformed or does not fit
    the model, weights of another shape (an edited K) and non-finite FS parameters."""
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
        record = FSConfig.from_json(json.loads(spiking.read_text()), spiking)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"corrupt {spiking}: {e}") from None
    except RecordError as e:
        raise ValueError(str(e)) from None
    base = getattr(diffusers, record.base_class, None)
    if not (isinstance(base, type) and issubclass(base, ModelMixin)):
        raise ValueError(f"{spiking}: unknown base class {record.base_class!r}")
    if config.get("_class_name") not in (record.base_class, f"Spiking{record.base_class}"):
        raise ValueError(f"{spiking}: base class {record.base_class!r} does not match config.json's "
                         f"{config.get('_class_name')!r}")
    init = {k: v for k, v in config.items() if not k.startswith("_") and k != "quantization_config"}
    if "act_fn" in init:  # FS_ACT_FN (format 3) stands for the activation the record keeps
        init["act_fn"] = record.act_fn or "silu"
    model = base.from_config(init)
    try:
        apply_structure(model, record.modules, record.K, record.method, from_bank=False)
        record.coding.install(model)
        if record.weight_bits:
            add_scale_buffers(model)
    except ValueError as e:
        raise ValueError(f"{spiking} does not fit the model in {path}: {e}") from None
    _load_weights(model, path / WEIGHTS_NAME, spiking, record)
    if record.weight_bits:
        check_on_grid(model, record.weight_bits, record.layer_bits or {})
    model.fs_config = record
    as_spiking_class(model)
    model.eval()
    return model.to(device) if device is not None else model
