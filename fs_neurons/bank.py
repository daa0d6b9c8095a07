"""The shipped bank of fitted FS parameters: ``fs_neurons/bank/<activation>.json``.

Schema::

    {"activation": str,
     "entries": [{"K": int, "method": str, "range": [lo, hi],
                  "h": [...], "d": [...], "T": [...], "mse": float,
                  "distribution": str (optional)}]}

with the spike-loop semantics of :mod:`fs_neurons.simulate`; ``mse`` is the plain MSE
over 100,000 evenly spaced points on ``range`` (float64 simulation), or, for an entry
with a ``distribution``, the MSE over that distribution: a file beside the bank
(``{"description": str, "points": [...]}``, equally weighted sorted points) such as
``swish_unet_inputs.json``, the pooled Swish inputs of diffusion UNets that the
``ours-unet`` entries are fitted to.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from .distribution import InputDistribution
from .metrics import fs_mse
from .names import PAPER_POINTS, PAPER_RANGE
from .targets import resolve_activation
from .utils.files import atomic_write_text

BANK_DIR = Path(__file__).resolve().parent / "bank"
ENTRY_KEYS = ("K", "method", "range", "h", "d", "T", "mse")


@dataclass(frozen=True)
class BankEntry:
    K: int
    method: str
    range: tuple[float, float]
    h: tuple[float, ...]
    d: tuple[float, ...]
    T: tuple[float, ...]
    mse: float
    distribution: Optional[str] = None

    def recompute_mse(self, activation: str, points: int = PAPER_POINTS) -> float:
        """The MSE the entry records, recomputed: over its ``distribution`` file, or over
        ``points`` evenly spaced points on ``range``."""
        _, target = resolve_activation(activation)
        dist = (load_distribution(self.distribution) if self.distribution
                else InputDistribution.uniform(*self.range, points))
        return fs_mse(self.h, self.d, self.T, target, dist)

    def to_json(self) -> dict:
        e = asdict(self)
        if self.distribution is None:
            del e["distribution"]
        e["range"] = list(self.range)
        for k in ("h", "d", "T"):
            e[k] = list(e[k])
        return e


class BankError(ValueError):
    """A bank file is missing, unreadable or does not follow the schema."""


def _parse_entry(raw: dict, where: str) -> BankEntry:
    if not isinstance(raw, dict):
        raise BankError(f"{where}: entry must be an object")
    missing = [k for k in ENTRY_KEYS if k not in raw]
    if missing:
        raise BankError(f"{where}: entry is missing {', '.join(missing)}")
    K = raw["K"]
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise BankError(f"{where}: K must be a positive integer, got {K!r}")
    vecs = {}
    for k in ("h", "d", "T"):
        v = raw[k]
        if not isinstance(v, list) or len(v) != K:
            raise BankError(f"{where}: {k} must be a list of K={K} numbers, got {len(v) if isinstance(v, list) else type(v).__name__}")
        if not all(isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) for a in v):
            raise BankError(f"{where}: {k} contains a non-finite or non-numeric value")
        vecs[k] = tuple(float(a) for a in v)
    rng = raw["range"]
    if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(a, (int, float)) for a in rng) and rng[0] < rng[1]):
        raise BankError(f"{where}: range must be [lo, hi] with lo < hi, got {rng!r}")
    mse = raw["mse"]
    if not isinstance(mse, (int, float)) or not math.isfinite(mse) or mse < 0:
        raise BankError(f"{where}: mse must be a non-negative number, got {mse!r}")
    dist = raw.get("distribution")
    if dist is not None and not (isinstance(dist, str) and dist.endswith(".json") and "/" not in dist):
        raise BankError(f"{where}: distribution must name a .json file beside the bank, got {dist!r}")
    return BankEntry(K, str(raw["method"]), (float(rng[0]), float(rng[1])), vecs["h"], vecs["d"], vecs["T"], float(mse),
                     dist)


def load_distribution(name: str, folder: Path = BANK_DIR) -> InputDistribution:
    """An input distribution shipped beside the bank (``folder / name``)."""
    path = folder / name
    if not path.is_file():
        raise BankError(f"distribution file not found: {path}")
    try:
        data = json.loads(path.read_text())
        x = torch.tensor(data["points"], dtype=torch.float64)
        return InputDistribution(x, torch.ones_like(x), str(data["description"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BankError(f"distribution file {path} is not valid: {e}") from None


def write_distribution(path: Union[str, Path], dist: InputDistribution) -> None:
    """Write an equally weighted distribution (its points, 6 significant digits) atomically."""
    if not torch.all(dist.w == dist.w[0]):
        raise ValueError("only equally weighted distributions can be written")
    points = [float(f"{v:.6g}") for v in dist.x.tolist()]
    atomic_write_text(Path(path), json.dumps({"description": dist.description, "points": points}) + "\n")


def bank_path(activation: str) -> Path:
    name, _ = resolve_activation(activation)
    return BANK_DIR / f"{name}.json"


def load_bank(activation: str = "swish", path: Optional[Union[str, Path]] = None) -> list[BankEntry]:
    """All entries of a bank file (the shipped one for ``activation`` unless ``path``)."""
    path = Path(path) if path is not None else bank_path(activation)
    if not path.is_file():
        raise BankError(f"bank file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BankError(f"bank file {path} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list) or "activation" not in data:
        raise BankError(f"bank file {path} must be an object with 'activation' and a list 'entries'")
    try:
        holds, wanted = resolve_activation(str(data["activation"]))[0], resolve_activation(activation)[0]
    except ValueError as e:
        raise BankError(f"bank file {path}: {e}") from None
    if holds != wanted:
        raise BankError(f"bank file {path} holds {holds} neurons, not {wanted}")
    return [_parse_entry(raw, f"{path} entry {i}") for i, raw in enumerate(data["entries"])]


def bank_activation(path: Union[str, Path]) -> str:
    """The activation a bank file says it holds (resolved name); :class:`BankError` if unreadable."""
    try:
        return resolve_activation(str(json.loads(Path(path).read_text())["activation"]))[0]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise BankError(f"bank file {path} names no valid activation: {e}") from None


MSE_TOLERANCE = 1e-6  # relative: a recorded MSE further than this from the recomputed one fails the load


def load_entry(
    activation: str = "swish",
    K: int = 8,
    method: str = "ours",
    range: Optional[Sequence[float]] = None,
    path: Optional[Union[str, Path]] = None,
) -> BankEntry:
    """The bank entry for (activation, K, method), optionally on a given range, its recorded
    MSE checked against its parameters.

    Raises :class:`BankError` listing what the bank has when there is no such entry, and
    when the file holds another activation or the entry's MSE does not match.
    """
    entries = load_bank(activation, path)
    want = tuple(float(r) for r in range) if range is not None else None
    hits = [e for e in entries if e.K == K and e.method == method and (want is None or e.range == want)]
    if not hits:
        have = sorted({(e.method, e.K) for e in entries})
        listing = ", ".join(f"{m}/K={k}" for m, k in have)
        raise BankError(f"no bank entry for activation={activation!r}, K={K}, method={method!r}"
                        f"{'' if want is None else f', range={list(want)}'}; available: {listing}")
    # Prefer the paper's range when several ranges exist.
    hits.sort(key=lambda e: (e.range != PAPER_RANGE, e.mse))
    entry = hits[0]
    actual = entry.recompute_mse(activation)
    if not math.isclose(actual, entry.mse, rel_tol=MSE_TOLERANCE, abs_tol=1e-12):
        raise BankError(f"bank entry activation={activation!r}, K={K}, method={method!r} in "
                        f"{path or bank_path(activation)} records MSE {entry.mse:.6g}, but its parameters give "
                        f"{actual:.6g}: the file was edited or corrupted")
    return entry


def write_bank(path: Union[str, Path], activation: str, entries: Sequence[BankEntry]) -> None:
    """Write a bank file atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"activation": activation, "entries": [e.to_json() for e in entries]}
    atomic_write_text(path, json.dumps(payload, indent=1) + "\n")
