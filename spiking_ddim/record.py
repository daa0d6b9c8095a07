"""The conversion record: what a converted model is and where it comes from, as one typed value.

:class:`FSConfig` (frozen) is created by conversion (:func:`spiking_ddim.convert_unet`)
and attached to the model as ``model.fs_config``; it changes only through
:func:`add_event`, which replaces it with a copy holding one more history event. It is
saved as ``spiking_config.json`` beside diffusers' ``config.json`` and read back by
:meth:`FSConfig.from_json`, which checks every field and the format version.

Fields: the diffusers ``base_class`` and the ``act_fn`` its config had; ``K``; the bank
``method``; the ``coding`` of the FS sites, a :class:`~spiking_ddim.codings.Coding` with its
settings (``step``: every neuron sends its whole K-step code at every denoising step;
``delta``: after a run's first step, only changes, see :mod:`spiking_ddim.delta`), written as
``{"name": ..., **settings}``; ``per_site`` (one neuron per call site); ``modules``, the
replaced modules (:class:`SiteModule`; with ``spiking`` ``all``, also the conv / linear
layers whose analog input a signed FS encoder codes, kind ``input``); ``source``, the model it was converted from (see
:mod:`spiking_ddim.provenance`); ``history``, one dict per event, oldest first, with
``event`` (``convert``, ``calibrate``, ``delta-fit``, ``widths``, ``finetune``), ``time`` (UTC), ``version`` (this
package's) and the event's settings and outcome; ``weight_bits`` and ``layer_bits``, the
synapses' integer widths (:mod:`spiking_ddim.synapses`); ``widths``, the accumulator and
state widths checked while sampling (:mod:`spiking_ddim.widths`). Format 4; formats 1 to 3 still load (a
coding written as its name, with ``delta_K`` beside it and the rest of a delta coding's
settings from its last fit; formats 1 and 2 without a history: one rebuilt from their
flags, marked ``"inferred": true``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from torch import nn

from fs_neurons.utils.choices import check_choice

from .codings import Coding, StepCoding, coding_class, coding_from_json, row_fields
from .defaults import SPIKING
from .widths import check_widths

FORMAT = 4
READABLE_FORMATS = (1, 2, 3, 4)
# the replaced module itself, diffusers' GELU / GEGLU around it, or the input of a conv / linear layer
KINDS = ("module", "projected", "geglu", "input")
ACTIVATIONS = ("swish", "gelu", "gelu_tanh", "identity")


class RecordError(ValueError):
    """A conversion record (``spiking_config.json``) is missing a field or malformed."""


@dataclass(frozen=True)
class SiteModule:
    """One replaced module: its dotted ``path``, ``kind``, ``activation`` and one (ndim,
    channels) ``signature`` per call site (one FS neuron each)."""

    path: str
    kind: str
    activation: str
    signatures: tuple[tuple[int, int], ...]

    def to_json(self) -> dict:
        return {"path": self.path, "kind": self.kind, "activation": self.activation,
                "signatures": [list(s) for s in self.signatures]}


@dataclass(frozen=True)
class FSConfig:
    """A converted model's record (see the module docstring)."""

    base_class: str
    K: int
    method: str
    modules: tuple[SiteModule, ...]
    coding: Coding = StepCoding()
    spiking: str = "swish"  # "all": the analog inputs of conv / linear layers are FS-coded too (kind "input")
    per_site: bool = True
    act_fn: Optional[str] = None
    source: Optional[dict] = None
    history: tuple[dict, ...] = field(default_factory=tuple)
    weight_bits: Optional[int] = None  # conv / linear weights quantised to this many bits (spiking_ddim.synapses)
    layer_bits: Optional[dict] = None  # layers at another width than weight_bits, name -> bits
    widths: Optional[dict] = None  # accumulator and state widths by name, checked while sampling (spiking_ddim.widths)

    @property
    def synapses(self) -> str:
        """``8-bit synapses`` (``, conv_out 16-bit`` for each layer at its own width), or ''."""
        if not self.weight_bits:
            return ""
        return f"{self.weight_bits}-bit synapses" + "".join(f", {n} {b}-bit" for n, b in (self.layer_bits or {}).items())

    @property
    def num_sites(self) -> int:
        return sum(len(m.signatures) for m in self.modules)

    def events(self, kind: str) -> list[dict]:
        return [e for e in self.history if e["event"] == kind]

    @property
    def calibrated(self) -> bool:
        return bool(self.events("calibrate"))

    @property
    def finetuned(self) -> bool:
        return bool(self.events("finetune"))

    @property
    def budget(self) -> Optional[dict]:
        """The budget of the latest calibration ({"kind", "value"}), or None."""
        found = self.events("calibrate")
        return found[-1].get("budget") if found else None

    @property
    def evaluation(self) -> Optional[dict]:
        """The figures of the last ``evaluate`` event, if no event that changes the model
        (calibration, a delta or IF fit, fine-tuning) came after it; else None."""
        for e in reversed(self.history):
            if e["event"] == "evaluate":
                return e
            if e["event"] in CHANGES_MODEL:
                return None
        return None

    @property
    def source_model(self) -> Optional[str]:
        return (self.source or {}).get("model")

    @property
    def label(self) -> str:
        """The model's name in plots and tables: ``FS K=<K> <method>``, ``+cal`` when
        calibrated, ``+ft`` when fine-tuned, then its coding when not per-step and ``fully
        spiking``."""
        return (f"FS K={self.K} {self.method}{'+cal' if self.calibrated else ''}{'+ft' if self.finetuned else ''}"
                f"{'' if self.coding == StepCoding() else ' ' + self.coding.label}"
                f"{' fully spiking' if self.spiking == 'all' else ''}"
                f"{f' {self.synapses}' if self.weight_bits else ''}")

    def summary(self) -> str:
        """One line: K, method, source, calibration (and budget), fine-tuning runs."""
        from .provenance import describe_source

        coding = self.coding.summary()
        parts = [f"K={self.K}, {self.method}" + (f", {coding}" if coding else "")
                 + (", fully spiking" if self.spiking == "all" else "")
                 + (f", {self.synapses}" if self.weight_bits else "")
                 + (f", {_width_summary(self.widths)}" if self.widths else ""),
                 f"converted from {describe_source(self.source_model)}"]
        for e in self.events("calibrate"):
            b = e.get("budget")
            parts.append("calibrated" + (f" under the {b['kind']} budget {b['value']:g}" if b else ""))
        for e in self.events("finetune"):
            what = "weights and neurons" if e.get("train_unet") and not e.get("freeze_neurons") else (
                "weights" if e.get("train_unet") else "neurons")
            steps = f", {e['steps']} steps" if e.get("steps") is not None else ""
            parts.append(f"fine-tuned ({what}{steps}" + (f", run {e['run']})" if e.get("run") else ")"))
        return "; ".join(parts)

    def provenance(self) -> dict:
        """What metrics.json and model cards say about the model."""
        return {"K": self.K, "method": self.method, **row_fields(self.coding), "coding_settings": self.coding.to_json(),
                "spiking": self.spiking, "weight_bits": self.weight_bits, "layer_bits": self.layer_bits,
                "widths": self.widths, "source": self.source,
                "calibrated": self.calibrated, "budget": self.budget, "finetuned": self.finetuned,
                "history": list(self.history), "summary": self.summary()}

    def to_json(self) -> dict:
        return {"format": FORMAT, "base_class": self.base_class, "act_fn": self.act_fn, "K": self.K,
                "method": self.method, "coding": self.coding.to_json(), "spiking": self.spiking,
                "weight_bits": self.weight_bits, "layer_bits": self.layer_bits, "widths": self.widths,
                "per_site": self.per_site,
                "modules": [m.to_json() for m in self.modules], "source": self.source, "history": list(self.history)}

    @classmethod
    def from_json(cls, data: Any, where: Union[str, object] = "spiking_config.json") -> "FSConfig":
        """The record of a ``spiking_config.json`` (format 1 to 4); :class:`RecordError`
        naming the first missing or malformed field."""
        def bad(what: str) -> RecordError:
            return RecordError(f"{where}: {what}")

        if not isinstance(data, dict):
            raise bad("must be a JSON object")
        if data.get("format") not in READABLE_FORMATS:
            raise bad(f"unsupported format {data.get('format')!r} (this version reads "
                      f"{', '.join(map(str, READABLE_FORMATS))})")
        for key in ("base_class", "K", "method", "modules"):
            if key not in data:
                raise bad(f"missing field {key!r}")
        K = data["K"]
        if isinstance(K, bool) or not isinstance(K, int) or K < 1:
            raise bad(f"K must be an integer >= 1, got {K!r}")
        if not isinstance(data["method"], str) or not isinstance(data["base_class"], str):
            raise bad("method and base_class must be strings")
        spiking = check_choice("spiking", data.get("spiking", "swish"), SPIKING, bad)
        if not isinstance(data["modules"], list) or not data["modules"]:
            raise bad("modules must be a non-empty list")
        modules = []
        for i, m in enumerate(data["modules"]):
            if not isinstance(m, dict) or not all(k in m for k in ("path", "kind", "activation", "signatures")):
                raise bad(f"modules[{i}] must have path, kind, activation and signatures")
            check_choice(f"modules[{i}] ({m['path']}): kind", m["kind"], KINDS, bad)
            check_choice(f"modules[{i}] ({m['path']}): activation", m["activation"], ACTIVATIONS, bad)
            sigs = m["signatures"]
            if not (isinstance(sigs, list) and sigs and all(
                    isinstance(g, list) and len(g) == 2 and all(isinstance(v, int) and v >= 1 for v in g)
                    for g in sigs)):
                raise bad(f"modules[{i}] ({m['path']}): signatures must be a non-empty list of [ndim, channels]")
            modules.append(SiteModule(str(m["path"]), m["kind"], m["activation"], tuple(tuple(g) for g in sigs)))
        history = data.get("history")
        if history is None:  # formats 1 and 2 without one: rebuilt from the flags they kept
            history = [{"event": "convert", "K": K, "method": data["method"], "inferred": True}]
            if data.get("calibrated"):
                history.append({"event": "calibrate", "budget": data.get("budget"), "inferred": True})
            if data.get("finetuned"):
                history.append({"event": "finetune", "inferred": True})
        if not (isinstance(history, list) and all(isinstance(e, dict) and "event" in e for e in history)):
            raise bad("history must be a list of events")
        source = data.get("source")
        if source is not None and not isinstance(source, dict):
            raise bad("source must be an object")
        coding = _read_coding(data, history, bad)
        bits = data.get("weight_bits")
        if bits is not None and (isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16):
            raise bad(f"weight_bits must be null or an integer from 2 to 16, got {bits!r}")
        layer_bits = data.get("layer_bits")
        if layer_bits is not None and not (bits and isinstance(layer_bits, dict) and all(
                isinstance(b, int) and not isinstance(b, bool) and 2 <= b <= 16 for b in layer_bits.values())):
            raise bad(f"layer_bits must be null, or with weight_bits an object of layer -> bits from 2 to 16, "
                      f"got {layer_bits!r}")
        try:
            widths = check_widths(data.get("widths"))
        except ValueError as e:
            raise bad(str(e)) from None
        return cls(data["base_class"], K, data["method"], tuple(modules), coding, spiking,
                   bool(data.get("per_site", True)), data.get("act_fn"), source, tuple(history), bits, layer_bits,
                   widths)


def _width_summary(widths: dict) -> str:
    """``accumulators 3 x 16-bit, 40 x 32-bit; states ...``."""
    def counts(table: dict) -> str:
        return ", ".join(f"{list(table.values()).count(b)} x {b}-bit" for b in sorted(set(table.values())))

    return f"accumulators {counts(widths['accumulators']) or 'none'}; states {counts(widths['states']) or 'none'}"


def _read_coding(data: dict, history: list, bad) -> Coding:
    """The record's coding: an object (format 4), or a name (formats 1 to 3) read by its
    class from the record and its fit events (:meth:`Coding.from_legacy`)."""
    coding = data.get("coding", "step")
    if isinstance(coding, dict):
        return coding_from_json(coding, bad)
    cls = coding_class(coding, bad)
    try:
        return cls.from_legacy(data, [e for e in history if e["event"] == cls.fit_event])
    except ValueError as e:
        raise bad(str(e)) from None


# History events after which a model computes differently (its earlier figures no longer hold)
CHANGES_MODEL = ("convert", "calibrate", "delta-fit", "if-baseline", "finetune")


def add_event(model: nn.Module, event: str, **fields: Any) -> dict:
    """Give ``model`` a record with one more history event (time, version and ``fields``); returns the event."""
    from .provenance import package_version

    entry = {"event": event, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "version": package_version(),
             **fields}
    model.fs_config = dataclasses.replace(model.fs_config, history=(*model.fs_config.history, entry))
    return entry


def record_of(model: nn.Module) -> Optional[FSConfig]:
    """``model``'s conversion record, or None for a model that is not converted."""
    return getattr(model, "fs_config", None)
