"""The coding registry: how FS sites code across denoising steps, one class per coding.

A coding is a frozen dataclass, a subclass of :class:`Coding` registered under its
``name`` by :func:`register_coding`; its fields are its settings (a delta coding's time
steps per change, spike price, ...), each with a ``help`` in its field metadata, from which
the command line builds one flag per field (``--<name>-<field>``). A converted model's
record (:class:`spiking_ddim.record.FSConfig`) holds its coding object, written as
``{"name": ..., **fields}`` (:meth:`Coding.to_json`, :func:`coding_from_json`).

A coding owns what depends on it: :meth:`~Coding.install` and :meth:`~Coding.remove` put
its per-site encoders (modules with ``transmit(neuron, x, exact)``, see
:class:`spiking_ddim.fs_activation.FSActivation`) and its cross-step state into a model;
:meth:`~Coding.fit` fits them to a pipeline's runs and records the event;
:meth:`~Coding.describe`, :attr:`~Coding.label` and :meth:`~Coding.row_fields` are what
records, model cards and results tables say of it. Neuron updates and state are counted
by the energy meter from the encoders themselves (their ``graded`` flag and
``updates_per_element``). This module, and every coding module at import, is torch-free:
the command line's ``--help`` lists codings and their flags without loading torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional, TypeVar, Union

from fs_neurons.utils.choices import check_choice

from ..errors import SettingError

_REGISTRY: dict[str, type["Coding"]] = {}
C = TypeVar("C", bound=type)


@dataclass(frozen=True)
class Coding:
    """Base of every coding (see the module docstring). Subclasses set ``name`` and
    ``description`` and override what differs from per-step coding's defaults here."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""  # one line for --help
    needs_denoiser: ClassVar[bool] = False  # codes across denoising steps: only a UNet called once per step
    fit_event: ClassVar[Optional[str]] = None  # the history event of its fit, if it has one

    @classmethod
    def setting(cls, field: str) -> str:
        """The one name of the setting ``field`` (errors, flags): ``<coding>_<field>``; its
        flag is ``--`` and the name with dashes."""
        return f"{cls.name}_{field}"

    def resolve(self, K: int) -> "Coding":
        """The coding with the defaults that depend on the neurons' ``K`` filled in, checked
        against it (:class:`SettingError` naming the setting)."""
        return self

    def install(self, model: Any) -> None:
        """Give a converted ``model`` this coding's encoders and state (nothing for per-step)."""

    def remove(self, model: Any) -> None:
        """Undo :meth:`install`."""

    def fit(self, pipe: Any, options: Any, seed: int = 0, progress: Optional[Callable] = None) -> list[dict]:
        """Fit the encoders of a converted ``pipe`` to ``options``' runs, record the fit in the
        model's history and return one dict per encoder (nothing to fit: [])."""
        return []

    def fit_seeds(self, seed: int = 0) -> list[list[int]]:
        """The [first, end) image-seed ranges :meth:`fit` draws from (held out of scoring)."""
        return []

    def describe_fit(self, results: list[dict]) -> str:
        """What :meth:`fit` did, in words, from its per-encoder ``results``."""
        return f"{self.name} coding: {len(results)} encoders fitted"

    @property
    def label(self) -> str:
        """The coding in tables and model names."""
        return self.name

    def summary(self) -> str:
        """What a record's one-line summary says of the coding ("" for per-step)."""
        return ""

    def describe(self, fits: list[dict]) -> str:
        """A sentence for model cards: how the sites code across steps; ``fits``: the record's
        events of :attr:`fit_event`, oldest first."""
        raise NotImplementedError

    def most_spikes(self, K: int) -> str:
        """The most spikes a neuron sends per call, in words."""
        return f"{K}"

    def row_fields(self) -> dict:
        """What a results row records of the coding (:func:`row_fields` gives every row
        the keys of every coding)."""
        return {"coding": self.name}

    def to_json(self) -> dict:
        return {"name": self.name, **dataclasses.asdict(self)}

    @classmethod
    def from_legacy(cls, record: dict, fits: list[dict]) -> "Coding":
        """The coding of a record written before codings were objects (format 1 to 3): the
        record's JSON and its fit events, oldest first."""
        return cls()


def register_coding(cls: C) -> C:
    """Class decorator: register a :class:`Coding` subclass under its ``name``."""
    if not (isinstance(cls, type) and issubclass(cls, Coding) and cls.name):
        raise TypeError("register_coding takes a Coding subclass with a name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a coding named {cls.name!r} is already registered ({_REGISTRY[cls.name].__qualname__})")
    _REGISTRY[cls.name] = cls
    return cls


def unregister_coding(name: str) -> None:
    """Remove the coding ``name`` from the registry (a coding registered for a test)."""
    _REGISTRY.pop(name, None)


def coding_names() -> tuple[str, ...]:
    """The registered codings' names, in registration order."""
    return tuple(_REGISTRY)


def coding_class(name: str, error: Callable[[str], Exception] = lambda m: SettingError("coding", m)) -> type[Coding]:
    """The coding class registered as ``name``; ``error`` (default :class:`SettingError`
    naming ``coding``) for an unknown name."""
    check_choice("coding", name, coding_names(), error)
    return _REGISTRY[name]


def as_coding(coding: Union[str, Coding, None]) -> Coding:
    """A :class:`Coding` from a coding object, a registered name (its defaults) or None (per-step)."""
    if isinstance(coding, Coding):
        return coding
    return coding_class("step" if coding is None else coding)()


def coding_from_json(data: Any, error: Callable[[str], Exception] = ValueError) -> Coding:
    """The coding written by :meth:`Coding.to_json`; ``error`` for a malformed one."""
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise error(f"coding must be an object with a name, got {data!r}")
    cls = coding_class(data["name"], error)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known - {"name"})
    if unknown:
        raise error(f"coding {data['name']!r} has no setting {unknown[0]!r}")
    try:
        return cls(**{k: v for k, v in data.items() if k != "name"})
    except SettingError as e:
        raise error(f"coding {data['name']!r}: {e}") from None


def row_fields(coding: Optional[Coding]) -> dict:
    """A results row's coding keys: those of every registered coding (None where ``coding``
    does not set them: one set of keys in every row), then ``coding``'s own values; all None
    for a model without a coding (the original)."""
    keys = dict.fromkeys(k for cls in _REGISTRY.values() for k in cls().row_fields())
    return {**keys, **(coding.row_fields() if coding is not None else {})}


def coding_fields(cls: type[Coding]) -> list[dataclasses.Field]:
    """The settings of a coding class: its dataclass fields, in order."""
    return list(dataclasses.fields(cls))
