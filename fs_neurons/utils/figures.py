"""Figures without pyplot's global state: made from ``matplotlib.figure.Figure`` (no
backend is chosen at import, nothing is left open) and written atomically as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Union

from .files import atomic_write

PathLike = Union[str, Path]


def new_figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (7.0, 4.0), **subplots: Any):
    """(figure, axes) as ``pyplot.subplots`` returns them, on a Figure of its own."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **subplots)


def save_figure(fig, path: PathLike, dpi: int = 110) -> Path:
    """Lay ``fig`` out and write it to ``path`` as a PNG, atomically."""
    path = Path(path)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    return path
