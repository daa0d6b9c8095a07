"""The operating points of the coding frontier (``eval/delta_frontier.py``): their grammar,
their labels, and the conversion each one names.

A point is ``step:K``, ``if:K`` (the rate-coded IF baseline of T = K steps) or
``delta:K:W[:PRICE[:COST[:DK]]]`` (delta coding, spike weight W, PRICE ``change`` or
``value``, COST ``spikes`` or ``acs``, changes coded in DK steps; defaults change, spikes,
min(K, 8)), the coding followed by ``+all`` (fully spiking, calibrated) or ``+cal``
(Swish sites only, calibrated). Parsed, it is a dict {coding, spiking, calibrated, K,
spike_weight, price, cost, delta_K}, the fields every results point records.
"""

from __future__ import annotations

from typing import Optional

from ..codings import DeltaCoding, as_coding
from ..codings.delta import COSTS, MOST_STEPS, PRICES
from ..spec import ConversionSpec

GRAMMAR = "step[+all|+cal]:K, if:K or delta[+all|+cal]:K:W[:change|value[:spikes|acs[:DK]]]"


def parse_point(text: str) -> dict:
    """The point ``text`` names (see the module docstring); ``ValueError`` naming the grammar."""
    parts = text.split(":")
    coding, *extra = parts[0].split("+")
    try:
        if len(extra) <= 1 and set(extra) <= {"all", "cal"} and not (coding == "if" and extra):
            fields = {"coding": coding, "spiking": "all" if extra == ["all"] else "swish", "calibrated": bool(extra)}
            if coding in ("step", "if") and len(parts) == 2:
                return {**fields, "K": int(parts[1]), "spike_weight": None, "price": None, "cost": None,
                        "delta_K": None}
            pricing_ = parts[3:5] + ["change", "spikes"][len(parts[3:5]):]
            if coding == "delta" and len(parts) in (3, 4, 5, 6) and pricing_[0] in PRICES and pricing_[1] in COSTS:
                K = int(parts[1])
                return {**fields, "K": K, "spike_weight": float(parts[2]), "price": pricing_[0], "cost": pricing_[1],
                        "delta_K": int(parts[5]) if len(parts) == 6 else min(K, MOST_STEPS)}
    except ValueError:
        pass
    raise ValueError(f"a point is {GRAMMAR}, got {text!r}")


def point_text(p: dict) -> str:
    """The text of a results point (the inverse of :func:`parse_point`)."""
    suffix = "+all" if p.get("spiking", "swish") == "all" else "+cal" if calibrated(p) else ""
    if not is_delta(p):
        return f"{p['coding']}{suffix}:{p['K']}"
    return (f"delta{suffix}:{p['K']}:{p['spike_weight']:g}:{price(p)}:{cost(p)}:"
            f"{p.get('delta_K') or min(p['K'], MOST_STEPS)}")


def is_delta(p: dict) -> bool:
    """Whether a point is delta-coded."""
    return p["coding"] == DeltaCoding.name


def price(p: dict) -> Optional[str]:
    """A delta point's spike price scale (points written before it was recorded: change)."""
    return p.get("price", "change") if is_delta(p) else None


def cost(p: dict) -> Optional[str]:
    """What a delta point's spike price counts (points written before it was recorded: spikes)."""
    return p.get("cost", "spikes") if is_delta(p) else None


def calibrated(p: dict) -> bool:
    """Whether a point's model is calibrated (points written before this was recorded: the
    fully spiking ones)."""
    return p.get("calibrated", p.get("spiking", "swish") == "all")


def point_key(p: dict) -> tuple:
    """What names a point: two points of one key are the same measurement."""
    return (p["coding"], p.get("spiking", "swish"), calibrated(p), p["K"], p["spike_weight"], price(p), cost(p),
            p.get("delta_K"))


def pricing(p: dict) -> str:
    """A delta point's price and cost where they are not change and spikes: "value price",
    "by ACs", "value price, by ACs" or ""."""
    return ", ".join((["value price"] if price(p) == "value" else []) + (["by ACs"] if cost(p) == "acs" else []))


def family(p: dict) -> str:
    """A point's coding family, one curve in the frontier plot: its coding, and whether it is
    fully spiking or calibrated (K, W and the price are the table's business)."""
    coding = "rate-coded IF" if p["coding"] == "if" else p["coding"]
    return coding + (" + fully spiking" if p.get("spiking", "swish") == "all" else
                     " (calibrated)" if calibrated(p) else "")


def k_label(p: dict) -> str:
    """``4``, or ``4/8`` for a delta point whose changes are coded in other than min(K, 8) steps."""
    default = not is_delta(p) or p.get("delta_K") in (None, min(p["K"], MOST_STEPS))
    return f"{p['K']}" + ("" if default else f"/{p['delta_K']}")


def point_name(p: dict) -> str:
    """A point's name in tables: its family, K, and a delta point's W and pricing."""
    return f"{family(p)} K={k_label(p)}" + (f", W={p['spike_weight']:g}" if is_delta(p) else "") + (
        f" ({pricing(p)})" if pricing(p) else "")


def short_name(p: dict) -> str:
    """A point's label on the plot: ``delta+all K=4/8 W=0.002``."""
    return (f"{p['coding']}{'+all' if p.get('spiking') == 'all' else ''} K={k_label(p)}"
            + (f" W={p['spike_weight']:g}" if p["spike_weight"] is not None else ""))


def point_spec(p: dict, seed: int = 0) -> ConversionSpec:
    """The conversion a point names (the IF baseline: per-step FS neurons it replaces
    afterwards, :func:`spiking_ddim.calibration.rate_coded_if`); fits from ``seed``."""
    coding = DeltaCoding(K=p["delta_K"], spike_weight=p["spike_weight"], price=p["price"], cost=p["cost"]) \
        if is_delta(p) else as_coding("step")
    return ConversionSpec(K=p["K"], coding=coding, spiking=p["spiking"], calibrate=calibrated(p), seed=seed)
