"""Where a converted model comes from and what was done to it, read from the model itself.

A converted model's record (``model.fs_conversion``) carries two entries that every
figure about it needs:

* ``source``: the model it was converted from, ``{"model": hub id, absolute path or
  EMBEDDED, "component": "unet" | "vae" | "vqvae", "class": diffusers class,
  "weights_sha256": digest}``. The digest (:func:`weights_digest`) covers the names,
  shapes and values of every weight except the FS neurons', so the source's and
  the converted model's agree until fine-tuning changes a weight.
* ``history``: what was done to it, oldest first, one dict per event with ``event``
  (``convert``, ``calibrate``, ``finetune``), ``time`` (UTC, ISO 8601), ``version`` (this
  package's) and the event's settings and outcome.

Models saved before this record existed (format 1) get a history rebuilt from their flags,
marked ``"inferred": True``, and no source.
"""

from __future__ import annotations

import hashlib
import os
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

EMBEDDED = "embedded:digits-ddim"  # the source name of the shipped default model (its path moves with the install)


def package_version() -> str:
    try:
        return version("spiking-ddim")
    except PackageNotFoundError:
        return "unknown"


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of ``model``'s weights and buffers (sorted by name: name, shape, and the bytes
    of the values, floating point ones widened to float32 so that a half-precision copy of
    the same weights hashes alike), leaving out FS neurons' parameters; a hex string."""
    from .fs_activation import FSActivation

    skip = {f"{n}." for n, m in model.named_modules() if isinstance(m, FSActivation)}
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if any(name.startswith(s) for s in skip):
            continue
        t = t.detach().to("cpu")
        t = (t.float() if t.is_floating_point() else t).contiguous()  # fp16 / bf16 widen exactly
        h.update(f"{name}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def source_name(name_or_path: Union[str, os.PathLike]) -> str:
    """How a record names a model: :data:`EMBEDDED` for the shipped default, the absolute
    path of a local directory, a hub id as given."""
    from .defaults import DEFAULT_MODEL

    path = Path(name_or_path).expanduser()
    if path.exists():
        path = path.resolve()
        return EMBEDDED if path in (DEFAULT_MODEL, DEFAULT_MODEL / "unet") else str(path)
    return str(name_or_path)


def source_location(name: str) -> Union[str, Path]:
    """What :func:`source_name` wrote, as something ``load_pipeline`` takes."""
    from .defaults import DEFAULT_MODEL

    return DEFAULT_MODEL if name == EMBEDDED else name


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
    return "the embedded digits DDIM" if name == EMBEDDED else (name or "an unrecorded model")


def source_record(model: nn.Module, name_or_path: Optional[Union[str, os.PathLike]], component: str) -> dict:
    """The ``source`` entry for ``model`` (not yet converted), loaded from ``name_or_path``
    (None when it did not come from a directory or the hub)."""
    return {"model": None if name_or_path is None else source_name(name_or_path), "component": component,
            "class": type(model).__name__, "weights_sha256": weights_digest(model)}


def add_event(model: nn.Module, event: str, **fields: Any) -> dict:
    """Append an event to ``model``'s history; returns it."""
    entry = {"event": event, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "version": package_version(),
             **fields}
    model.fs_conversion.setdefault("history", []).append(entry)
    return entry


def history(record: dict) -> list[dict]:
    """The events of a conversion record; for a format-1 record, rebuilt from its flags."""
    if "history" in record:
        return list(record["history"])
    events = [{"event": "convert", "K": record.get("K"), "method": record.get("method"), "inferred": True}]
    if record.get("calibrated"):
        events.append({"event": "calibrate", "budget": record.get("budget"), "inferred": True})
    if record.get("finetuned"):
        events.append({"event": "finetune", "inferred": True})
    return events


def events(record: dict, kind: str) -> list[dict]:
    return [e for e in history(record) if e["event"] == kind]


def is_calibrated(record: dict) -> bool:
    return bool(events(record, "calibrate"))


def is_finetuned(record: dict) -> bool:
    return bool(events(record, "finetune"))


def budget(record: dict) -> Optional[dict]:
    """The budget of the latest calibration ({"kind", "value"}), or None."""
    found = events(record, "calibrate")
    return found[-1].get("budget") if found else None


def summary(record: dict) -> str:
    """One line: K, method, source, calibration (and budget), fine-tuning runs."""
    parts = [f"K={record.get('K')}, {record.get('method')}",
             f"converted from {describe_source((record.get('source') or {}).get('model'))}"]
    for e in events(record, "calibrate"):
        b = e.get("budget")
        parts.append("calibrated" + (f" under the {b['kind']} budget {b['value']:g}" if b else ""))
    for e in events(record, "finetune"):
        what = "weights and neurons" if e.get("train_unet") and not e.get("freeze_neurons") else (
            "weights" if e.get("train_unet") else "neurons")
        steps = f", {e['steps']} steps" if e.get("steps") is not None else ""
        parts.append(f"fine-tuned ({what}{steps}" + (f", run {e['run']})" if e.get("run") else ")"))
    return "; ".join(parts)


def provenance(record: dict) -> dict:
    """What metrics.json and model cards say about a model: source, history and the flags
    derived from it."""
    return {"K": record.get("K"), "method": record.get("method"), "source": record.get("source"),
            "calibrated": is_calibrated(record), "budget": budget(record), "finetuned": is_finetuned(record),
            "history": history(record), "summary": summary(record)}
