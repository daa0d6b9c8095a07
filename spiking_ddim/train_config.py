"""The settings of the training loop (:mod:`spiking_ddim.training`), importable without torch."""

from __future__ import annotations

from dataclasses import dataclass

from fs_neurons.utils.choices import check_choice

LR_SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine")  # names of diffusers' get_scheduler


@dataclass
class TrainConfig:
    """Optimizer steps, images per step and process, AdamW learning rate and weight decay,
    the learning-rate schedule (diffusers' ``get_scheduler``: constant, constant_with_warmup,
    linear, cosine) and its warm-up steps, gradient accumulation, EMA decay of the kept
    weights, and every how many steps to checkpoint (keeping the last ``keep_checkpoints``),
    log and validate; the seed of weights, batches and noise."""

    steps: int = 4000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_accum: int = 1
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 25
    validate_every: int = 100
    seed: int = 0
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0

    def validate(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "checkpoint_every", "keep_checkpoints", "log_every",
                     "validate_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not (0.0 <= self.ema_decay < 1.0):
            raise ValueError(f"ema-decay must be in [0, 1), got {self.ema_decay}")
        if not 0 < self.lr < float("inf"):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        check_choice("lr-scheduler", self.lr_scheduler, LR_SCHEDULES)
        if not 0 <= self.lr_warmup_steps <= self.steps:
            raise ValueError(f"lr-warmup-steps must be in [0, steps], got {self.lr_warmup_steps}")
        if not 0 <= self.weight_decay < float("inf"):
            raise ValueError(f"weight-decay must be a finite number >= 0, got {self.weight_decay}")
