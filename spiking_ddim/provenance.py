"""Where a converted model comes from: how a record names its source model, and a digest
of that model's weights.

The ``source`` of a conversion record (:class:`spiking_ddim.record.FSConfig`) is
``{"model": hub id, absolute path or EMBEDDED, "component": "unet" | "vae" | "vqvae",
"class": diffusers class, "weights_sha256": digest}``. The digest (:func:`weights_digest`)
covers the names, shapes and values of every weight except the FS neurons', so the
source's and the converted model's agree until fine-tuning changes a weight.
"""

from __future__ import annotations

import hashlib
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from .embedded import EMBEDDED_MODELS

EMBEDDED = EMBEDDED_MODELS["digits"].name  # the source name of the shipped default model (its path moves with the install)


def package_version() -> str:
    try:
        return version("spiking-ddim")
    except PackageNotFoundError:
        return "unknown"


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of ``model``'s weights and buffers (sorted by name: name, shape, and the bytes
    of the values, floating point ones widened to float32 so that a half-precision copy of
    the same weights hashes alike), leaving out FS neurons' parameters; a hex string."""
    h = hashlib.sha256()
    for name, t in sorted(network_state(model).items()):
        t = (t.float() if t.is_floating_point() else t).contiguous()  # fp16 / bf16 widen exactly
        h.update(f"{name}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def network_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s weights and buffers (on the CPU, detached) without the FS neurons', by name."""
    from .fs_activation import FSActivation

    skip = tuple(f"{n}." for n, m in model.named_modules() if isinstance(m, FSActivation))
    return {name: t.detach().to("cpu") for name, t in model.state_dict().items() if not name.startswith(skip)}


# A reference whose weights differ from the model's by more than this (median over weight
# tensors of |w_ref - w| / |w|) is not a version of it: fine-tuning moves weights by far less,
# two independently trained networks differ by about sqrt(2).
UNRELATED_DISTANCE = 0.5


def unrelated(model: nn.Module, other: nn.Module) -> Optional[str]:
    """Why ``other`` cannot be a version of ``model`` (another architecture, or weights that
    share nothing), or None when it may be: the check behind a reference given by path."""
    mine, theirs = network_state(model), network_state(other)
    shapes = {k: tuple(v.shape) for k, v in mine.items()}
    differ = [k for k in shapes.keys() | theirs.keys() if shapes.get(k) != (tuple(theirs[k].shape) if k in theirs else None)]
    if differ:
        return (f"another architecture ({len(differ)} of {len(shapes.keys() | theirs.keys())} weight tensors missing "
                f"or shaped differently, e.g. {sorted(differ)[0]})")
    distances = sorted(float((theirs[k].float() - v.float()).norm() / v.float().norm().clamp_min(1e-12))
                       for k, v in mine.items() if v.is_floating_point() and v.ndim >= 2)
    if distances and distances[len(distances) // 2] > UNRELATED_DISTANCE:
        return (f"unrelated weights (the median weight tensor differs by {distances[len(distances) // 2]:.2f} of its "
                f"norm; a fine-tuned copy of the same model differs by far less than {UNRELATED_DISTANCE})")
    return None


def source_name(name_or_path: Union[str, os.PathLike]) -> str:
    """How a record names a model: an embedded model's record name (e.g. :data:`EMBEDDED`
    for the shipped default), the absolute path of a local directory, a hub id as given."""
    from .embedded import embedded_model

    model = embedded_model(name_or_path)
    if model is not None:
        return model.name
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.exists() else str(name_or_path)


def source_location(name: str) -> Union[str, Path]:
    """What :func:`source_name` wrote, as something ``load_pipeline`` takes."""
    from .embedded import model_location

    return model_location(name)


def recorded_source(path: Union[str, os.PathLike]) -> Optional[str]:
    """The source a saved converted pipeline (or model) directory names for its UNet, read
    from its ``spiking_config.json`` without loading it; None when there is none."""
    import json

    for candidate in (Path(path) / "unet" / "spiking_config.json", Path(path) / "spiking_config.json"):
        try:
            return (json.loads(candidate.read_text()).get("source") or {}).get("model")
        except (OSError, ValueError, AttributeError):
            continue
    return None


def describe_source(name: Optional[str]) -> str:
    from .embedded import embedded_model

    model = embedded_model(name) if name and name.startswith("embedded:") else None
    return model.words if model is not None else (name or "an unrecorded model")


def source_record(model: nn.Module, name_or_path: Optional[Union[str, os.PathLike]], component: str) -> dict:
    """The ``source`` entry for ``model`` (not yet converted), loaded from ``name_or_path``
    (None when it did not come from a directory or the hub)."""
    return {"model": None if name_or_path is None else source_name(name_or_path), "component": component,
            "class": type(model).__name__, "weights_sha256": weights_digest(model)}
