"""Tendency fits: a simple curve through a parameter's values over the time steps t = 1..K.

TBPI fits one of these to each of h(t), d(t), T(t) of a pre-trained neuron and
re-initialises the neuron from the fitted curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import least_squares

from .names import TENDENCIES
from .utils.choices import check_choice

N_COEFFS = {"log": 2, "quadratic": 3, "cubic": 4, "exponential": 3}


@dataclass(frozen=True)
class TendencyFit:
    """A fitted curve: ``values`` at t = 1..K, ``rmse`` of the fit on the data and
    ``loo_rmse``, the leave-one-out prediction error (nan when there are too few points)."""

    kind: str
    coeffs: tuple[float, ...]
    values: tuple[float, ...]
    rmse: float
    loo_rmse: float

    def formula(self) -> str:
        c = self.coeffs
        if self.kind == "log":
            return f"{c[0]:.4g}*ln(t) + {c[1]:.4g}"
        if self.kind == "exponential":
            return f"{c[0]:.4g}*exp({c[1]:.4g}*t) + {c[2]:.4g}"
        terms = [f"{a:.4g}*t^{len(c) - 1 - i}" for i, a in enumerate(c[:-2])]
        return " + ".join(terms + [f"{c[-2]:.4g}*t", f"{c[-1]:.4g}"])


def _design(kind: str, t: np.ndarray) -> np.ndarray:
    if kind == "log":
        return np.stack([np.log(t), np.ones_like(t)], 1)
    degree = {"quadratic": 2, "cubic": 3}[kind]
    return np.stack([t**p for p in range(degree, -1, -1)], 1)


def _fit_coeffs(kind: str, t: np.ndarray, y: np.ndarray) -> np.ndarray:
    if kind != "exponential":
        return np.linalg.lstsq(_design(kind, t), y, rcond=None)[0]
    # y = a*exp(b*t) + c: for each b on a grid (a, c) is linear; refine the best.
    best = None
    for b in np.linspace(-3.0, 3.0, 121) / max(t.max(), 1.0):
        A = np.stack([np.exp(b * t), np.ones_like(t)], 1)
        (a, c), *_ = np.linalg.lstsq(A, y, rcond=None)
        err = float(np.sum((A @ np.array([a, c]) - y) ** 2))
        if best is None or err < best[0]:
            best = (err, np.array([a, b, c]))
    res = least_squares(lambda p: p[0] * np.exp(p[1] * t) + p[2] - y, best[1])
    return res.x if np.sum(res.fun**2) <= best[0] else best[1]


def _evaluate(kind: str, coeffs: np.ndarray, t: np.ndarray) -> np.ndarray:
    if kind == "exponential":
        return coeffs[0] * np.exp(coeffs[1] * t) + coeffs[2]
    return _design(kind, t) @ coeffs


def evaluate_tendency(fit: TendencyFit, t: np.ndarray) -> np.ndarray:
    """The fitted curve at (possibly fractional) steps ``t`` (for plotting)."""
    return _evaluate(fit.kind, np.asarray(fit.coeffs), np.asarray(t, dtype=float))


def fit_tendency(values: Sequence[float], kind: str) -> TendencyFit:
    """Fit a ``kind`` curve (log, quadratic, cubic, exponential) to values at t = 1..K."""
    check_choice("tendency", kind, TENDENCIES)
    y = np.asarray(values, dtype=float)
    if y.ndim != 1 or y.size < 2:
        raise ValueError("a tendency needs at least 2 values")
    if not np.all(np.isfinite(y)):
        raise ValueError("tendency values contain NaN or infinite entries")
    t = np.arange(1, y.size + 1, dtype=float)
    coeffs = _fit_coeffs(kind, t, y)
    fitted = _evaluate(kind, coeffs, t)
    rmse = float(np.sqrt(np.mean((fitted - y) ** 2)))
    loo = float("nan")
    if y.size > N_COEFFS[kind]:
        errs = []
        for i in range(y.size):
            m = np.arange(y.size) != i
            errs.append(_evaluate(kind, _fit_coeffs(kind, t[m], y[m]), t[i : i + 1])[0] - y[i])
        loo = float(np.sqrt(np.mean(np.square(errs))))
    return TendencyFit(kind, tuple(map(float, coeffs)), tuple(map(float, fitted)), rmse, loo)


def fit_tendencies(params: dict[str, Sequence[float]], kind: str = "auto") -> dict[str, TendencyFit]:
    """Fit one tendency family to each of several parameter curves (e.g. h, d, T).

    ``kind="auto"`` picks the family with the smallest summed leave-one-out error over the
    curves among families with fewer coefficients than points, so a curve that merely
    interpolates the data is never preferred.
    """
    if kind != "auto":
        return {name: fit_tendency(v, kind) for name, v in params.items()}
    n = min(len(v) for v in params.values())
    candidates = [k for k in TENDENCIES if N_COEFFS[k] < n]
    if not candidates:
        raise ValueError(f"K={n} is too small for an automatic tendency choice; pass a kind")
    fits = {k: {name: fit_tendency(v, k) for name, v in params.items()} for k in candidates}
    return min(fits.values(), key=lambda f: sum(x.loo_rmse for x in f.values()))
