"""Package attributes imported on first use (PEP 562), so that importing a package, and a
command line's ``--help``, does not load torch."""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose attribute ``name`` lives in its
    submodule ``exports[name]``; a looked-up attribute is cached in the package."""
    namespace = import_module(package).__dict__

    def getattr_(name: str) -> Any:
        if name in exports:
            value = getattr(import_module(f"{package}.{exports[name]}"), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return getattr_, dir_

