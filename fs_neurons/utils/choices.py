"""The one check of a value against the names it may take, with one wording for every
refusal: ``<what> must be one of a, b, c, got 'x'``."""

from __future__ import annotations

from typing import Callable, Collection, TypeVar

T = TypeVar("T")


def check_choice(what: str, value: T, choices: Collection, error: Callable[[str], Exception] = ValueError) -> T:
    """``value`` if it is one of ``choices``; else raise ``error(message)`` naming ``what``
    (a setting's or flag's name), the choices in their order and the value given."""
    if value not in choices:
        raise error(f"{what} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value
