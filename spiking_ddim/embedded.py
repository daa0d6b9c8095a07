"""The models the package ships, reachable by name; importable without torch.

``embedded:digits`` (the default of every command: a 16x16 grayscale DDIM trained on
scikit-learn's digits) and ``embedded:photos`` (a 32x32 RGB DDIM with attention at 16x16,
trained on crops of the photographs scikit-image and scikit-learn ship,
:mod:`spiking_ddim.photos`). Each names the built-in held-out set its generation metrics
compare against (``--real``'s default) and the name records give it, which does not move
with the install.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from .defaults import DEFAULT_MODEL

PACKAGE = Path(__file__).resolve().parent
PREFIX = "embedded:"


@dataclass(frozen=True)
class EmbeddedModel:
    """A shipped DDIMPipeline: its record name, directory, built-in real set, how reports
    name it and its real set."""

    name: str  # what records write, e.g. embedded:digits-ddim
    directory: Path
    real: str  # the built-in held-out images of its metrics (spiking_ddim.data.load_images)
    words: str
    real_words: str


EMBEDDED_MODELS = {
    "digits": EmbeddedModel("embedded:digits-ddim", DEFAULT_MODEL, "digits", "the embedded digits DDIM",
                            "held-out digits"),
    "photos": EmbeddedModel("embedded:photos-ddim", PACKAGE / "photos_model", "photos", "the embedded photos DDIM",
                            "crops of two held-out photographs"),
}


def embedded_model(name_or_path: Union[str, os.PathLike, None]) -> Optional[EmbeddedModel]:
    """The shipped model that ``name_or_path`` names (``embedded:photos``, its record name
    ``embedded:photos-ddim``, or its directory or UNet directory), else None. An
    ``embedded:`` name that names none is a ``ValueError`` listing those that exist."""
    if name_or_path is None:
        return None
    text = str(name_or_path)
    if text.startswith(PREFIX):
        for key, model in EMBEDDED_MODELS.items():
            if text in (PREFIX + key, model.name):
                return model
        raise ValueError(f"no embedded model {text!r}; the package ships "
                         f"{', '.join(PREFIX + key for key in EMBEDDED_MODELS)}")
    path = Path(text).expanduser()
    if not path.exists():
        return None
    path = path.resolve()
    return next((m for m in EMBEDDED_MODELS.values() if path in (m.directory, m.directory / "unet")), None)


def model_location(name_or_path: Union[str, os.PathLike]) -> Union[str, os.PathLike]:
    """The directory of an ``embedded:`` name; anything else as given."""
    text = str(name_or_path)
    return embedded_model(text).directory if text.startswith(PREFIX) else name_or_path


def results_model(data: dict) -> EmbeddedModel:
    """The embedded model a benchmark's results were measured on (``data["model"]``; the
    digits DDIM for results that predate the field)."""
    return embedded_model(data.get("model", PREFIX + "digits"))


def model_flag(model: EmbeddedModel) -> str:
    """The flag that names ``model`` on a benchmark's or ``spiking-ddim sample``'s command
    line, with a leading space (``" --model embedded:photos"``); empty for the default."""
    key = next(k for k, m in EMBEDDED_MODELS.items() if m == model)
    return "" if model.directory == DEFAULT_MODEL else f" --model {PREFIX}{key}"
