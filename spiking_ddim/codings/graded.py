"""Graded changes: after a run's first step, each changed element sends one b-bit value.

A run's first denoising step sends each site's full K-step FS code (binary spikes, as
delta coding does) and the graded correction of its error; every later step sends, per element whose change since the value sent
so far reaches the dead zone, one event carrying the change rounded to the encoder's step,
``bits`` wide (Loihi 2's graded spikes, sigma-delta networks; :mod:`fs_neurons.graded`).
An event costs one multiply-accumulate per output it reaches instead of an accumulate per
spike. The encoders (step and dead zone) are fitted to the changes the sites see, with the
same price per event as delta coding's per spike (:class:`~.delta.ChangeCoding`;
:func:`spiking_ddim.calibration.graded.fit_graded_jobs`). Torch-free at import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..errors import SettingError
from .delta import ChangeCoding, _count
from .registry import register_coding


@register_coding
@dataclass(frozen=True)
class GradedCoding(ChangeCoding):
    """A run's first step sends the full K-step code; every later step one ``bits``-bit
    value per element that changed beyond its site's dead zone."""

    name = "graded"
    description = ("a denoiser's FS sites send their full code at a run's first step, then one graded event (a "
                   "b-bit value, a MAC per output it reaches) per element that changed beyond a fitted dead zone")
    event = "event"

    bits: int = field(default=8, metadata={"help": "bits of the value a graded event carries", "metavar": "BITS"})

    def __post_init__(self) -> None:
        if not _count(self.bits, 2) or self.bits > 16:
            raise SettingError(self.setting("bits"), f"an event's bits must be an integer from 2 to 16, got {self.bits!r}")
        super().__post_init__()

    def make_encoder(self) -> Any:
        from ..delta import GradedEncoder

        return GradedEncoder(self.bits)

    def fit_jobs(self, jobs: list, seed: int, search: Any, progress: Optional[Callable]) -> list[dict]:
        from ..calibration.graded import fit_graded_jobs

        return fit_graded_jobs(jobs, self, progress)

    def summary(self) -> str:
        return f"graded coding ({self.bits}-bit events)"

    def describe(self, fits: list[dict]) -> str:
        return (f"`graded` coding: each site sends its full K-step code at a run's first denoising step, and at every "
                f"later step one {self.bits}-bit event per element whose change reached its dead zone"
                f"{self.fit_price(fits)}")

    def most_spikes(self, K: int) -> str:
        return f"{K} in a run's first step, 1 event after"

    def row_fields(self) -> dict:
        return {"coding": self.name, "graded_bits": self.bits}
