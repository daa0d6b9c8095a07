"""The effort settings of the exact-gradient search (``ours``), importable without torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OursConfig:
    """Effort of :func:`search`, in counts only: every phase runs to its count, so a fit
    never depends on how long it took or how busy the machine was. Scales are fractions of
    the input span (swish-tuned)."""

    pool: int = 2048  # structured and random starting neurons per restart
    restarts: int = 2  # independent pools whose elites are merged
    random_share: float = 0.125  # share of the pool with unstructured random starts
    iters: int = 300  # exact-gradient steps for the pool
    lr: float = 0.03
    cull_at: float = 0.2  # the pool is cut to `keep` after this share of its steps
    keep: float = 0.15
    elite: int = 8  # best neurons carried between phases
    elite_iters: int = 600  # refinement of the elite right after the pool
    elite_lr: float = 0.01
    rounds: int = 3  # mutation rounds after the pools
    mutants: int = 512  # children per round
    round_iters: int = 200
    round_lr: float = 0.01
    polish_iters: int = 1000  # final refinement of the best neuron
    polish_lr: float = 0.005

    @property
    def iterations(self) -> int:
        """Exact-gradient steps of one search, every phase counted: what its progress counts."""
        return (self.restarts * (self.iters + self.elite_iters) + self.rounds * self.round_iters
                + self.polish_iters)

    def validate(self) -> None:
        """``ValueError`` naming the first setting out of range."""
        for name in ("pool", "restarts", "elite"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("iters", "elite_iters", "rounds", "mutants", "round_iters", "polish_iters"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "elite_lr", "round_lr", "polish_lr"):
            if not (0 < getattr(self, name) < float("inf")):
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)}")
        if not (0 <= self.random_share <= 1 and 0 <= self.cull_at <= 1 and 0 < self.keep <= 1):
            raise ValueError("random_share and cull_at must be in [0, 1], keep in (0, 1]")
