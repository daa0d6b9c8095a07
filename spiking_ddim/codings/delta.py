"""Delta coding across denoising steps: after a run's first step, FS sites send only changes.

:class:`ChangeCoding` is what every coding of changes shares (delta here, graded in
:mod:`.graded`): the encoders' fit, ``spike_weight``, the price of an event (a spike) in units
of the site's mean squared change or value (``price``), counted per event or per
accumulate it causes downstream (``cost``), on the changes of ``images`` images; the fit
:func:`spiking_ddim.calibration.fit_delta`, the runtime (encoders, their state)
:mod:`spiking_ddim.delta`. :class:`DeltaCoding` codes a change as a signed FS code of
``K`` time steps (default min(neurons' K, 8)). Torch-free at import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar, Optional

from fs_neurons.utils.choices import check_choice

from ..errors import SettingError
from .registry import Coding, register_coding

PRICES = ("change", "value")  # what a spike's price is relative to
COSTS = ("spikes", "acs")  # what the price counts: spikes, or the accumulates they cause downstream
MOST_STEPS = 8  # at most this many time steps code a change by default (fewer when K is lower)
# the default price of a spike, per price scale: in units of the site's mean squared change / value
SPIKE_WEIGHTS = {"change": 0.01, "value": 0.0002}


def _count(value: Any, least: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= least


@dataclass(frozen=True)
class ChangeCoding(Coding):
    """A run's first denoising step sends each site's full K-step code; every later step
    only what changed since, by encoders fitted to the pipeline's changes. Subclasses say
    how a change is sent (their encoders, :meth:`make_encoder`, and :meth:`fit_jobs`)."""

    needs_denoiser = True
    fit_event = "delta-fit"
    event: ClassVar[str] = "spike"  # what one unit of the price is

    spike_weight: Optional[float] = field(default=None, metadata={
        "help": "the price of an event (a spike) when fitting the encoders, in units of the site's mean squared "
                "change or value (see price); larger sends fewer events with more error (default: "
                + ", ".join(f"{w:g} per {p}" for p, w in SPIKE_WEIGHTS.items()) + ")", "metavar": "W"})
    price: str = field(default="value", metadata={
        "help": "what the event price is relative to: change (the site's mean squared change between steps: the "
                "codes get finer with more, smaller steps) or value (its mean squared activation: the dead zone "
                "stays put, so more steps send fewer events each)", "choices": PRICES})
    cost: str = field(default="acs", metadata={
        "help": "what the price counts: acs (an event priced by the operations it causes in the layer it feeds, "
                "over the model's mean: wide layers' inputs send fewer events) or spikes (every event alike)",
        "choices": COSTS})
    images: int = field(default=16, metadata={
        "help": "images whose changes the encoders are fitted to", "metavar": "N"})

    def __post_init__(self) -> None:
        def bad(what: str):
            return lambda message: SettingError(self.setting(what), message)

        if self.spike_weight is not None and not (
                isinstance(self.spike_weight, (int, float)) and not isinstance(self.spike_weight, bool)
                and 0 <= self.spike_weight < math.inf):
            raise SettingError(self.setting("spike_weight"),
                               f"the price of a {self.event} must be a finite number >= 0, got {self.spike_weight!r}")
        check_choice("price", self.price, PRICES, bad("price"))
        check_choice("cost", self.cost, COSTS, bad("cost"))
        if not _count(self.images, 1):
            raise SettingError(self.setting("images"),
                               f"the images the encoders are fitted to must be >= 1, got {self.images!r}")

    def resolve(self, K: int) -> "ChangeCoding":
        weight = SPIKE_WEIGHTS[self.price] if self.spike_weight is None else float(self.spike_weight)
        return replace(self, spike_weight=weight)

    def make_encoder(self) -> Any:
        """One site's unfitted encoder."""
        raise NotImplementedError

    def fit_jobs(self, jobs: list, seed: int, search: Any, progress: Optional[Callable]) -> list[dict]:
        """Fit the encoders of ``jobs`` (:class:`spiking_ddim.calibration.delta.Job`) in place; one result each."""
        raise NotImplementedError

    def install(self, model: Any) -> None:
        from ..delta import install_encoders

        install_encoders(model, self.make_encoder)

    def remove(self, model: Any) -> None:
        from ..delta import remove_encoders

        remove_encoders(model)

    def fit(self, pipe: Any, options: Any, seed: int = 0, progress: Optional[Callable] = None) -> list[dict]:
        from ..calibration.delta import fit_delta

        return fit_delta(pipe, options, seed=seed, progress=progress, spike_weight=self.spike_weight,
                         price=self.price, cost=self.cost, images=self.images)

    def fit_seeds(self, seed: int = 0) -> list[list[int]]:
        from ..held_out import delta_fit_seeds

        return delta_fit_seeds(self.images, seed)

    def describe_fit(self, results: list[dict]) -> str:
        spikes = sum(r["spikes_per_change"] for r in results) / len(results)
        return (f"{self.name} coding: {len(results)} encoders fitted to the changes of {self.images} images "
                f"({self.event} weight {self.spike_weight:g} per mean squared {self.price}"
                f"{', by accumulates' if self.cost == 'acs' else ''}; {spikes:.3f} expected {self.event}s per change "
                f"on average)")

    def fit_price(self, fits: list[dict]) -> str:
        """How the last fit priced an event, for model cards ('' without a fit)."""
        if not fits:
            return ""
        f = fits[-1]
        return (f"; the change encoders were fitted with {self.event} weight {f.get('spike_weight', 0):g} per mean "
                f"squared {f.get('price', 'change')}, " + (f"each {self.event} priced by the operations it causes"
                                                           if f.get("cost") == "acs" else f"every {self.event} alike"))


@register_coding
@dataclass(frozen=True)
class DeltaCoding(ChangeCoding):
    """A run's first denoising step sends each site's full K-step code; every later step a
    signed FS code of what changed since (see :mod:`spiking_ddim.delta`)."""

    name = "delta"
    description = ("a denoiser's FS sites send their full code at a run's first step, then only signed spike codes "
                   "of what changed since (their encoders are fitted to the pipeline's changes)")

    K: Optional[int] = field(default=None, metadata={
        "help": "time steps of the code of a change (default: the smaller of --K and 8)", "metavar": "K"})

    def __post_init__(self) -> None:
        if self.K is not None and not _count(self.K, 1):
            raise SettingError(self.setting("K"), f"the steps of a change's code must be an integer >= 1, got {self.K!r}")
        super().__post_init__()

    def resolve(self, K: int) -> "DeltaCoding":
        from fs_neurons.neuron import check_K

        steps = min(K, MOST_STEPS) if self.K is None else self.K
        try:
            check_K(steps)
        except ValueError as e:
            raise SettingError(self.setting("K"), f"the steps of a change's code: {e}") from None
        return replace(super().resolve(K), K=steps)

    def make_encoder(self) -> Any:
        from ..delta import DeltaEncoder

        return DeltaEncoder(self.K)

    def fit_jobs(self, jobs: list, seed: int, search: Any, progress: Optional[Callable]) -> list[dict]:
        from ..calibration.delta import fit_fs_jobs

        return fit_fs_jobs(jobs, self, seed, search, progress)

    def summary(self) -> str:
        return f"delta coding (K={self.K})"

    def describe(self, fits: list[dict]) -> str:
        return (f"`delta` coding: each site sends its full K-step code at a run's first denoising step, and at every "
                f"later step only a signed spike code of what changed since, in {self.K} time steps"
                f"{self.fit_price(fits)}")

    def most_spikes(self, K: int) -> str:
        return f"{K} + {self.K} in a run's first step, {self.K} after"

    @classmethod
    def from_legacy(cls, record: dict, fits: list[dict]) -> "DeltaCoding":
        K = record.get("delta_K")
        if not _count(K, 1):
            raise ValueError(f"delta_K must be an integer >= 1 for coding 'delta', got {K!r}")
        last = {"price": "change", "cost": "spikes", **fits[-1]} if fits else {}  # before price, cost were recorded
        return cls(K=K, **{k: last[k] for k in ("spike_weight", "price", "cost", "images") if k in last})

    def row_fields(self) -> dict:
        return {"coding": self.name, "delta_K": self.K}
