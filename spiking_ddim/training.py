"""A training loop on Accelerate for diffusion UNets (plain or converted).

One loop serves ``train.py ann`` (a UNet from scratch) and ``train.py snn`` (FS
fine-tuning): the caller supplies the loss of one batch. The loop runs on one CPU, one
GPU or several processes (``accelerate launch`` / ``torchrun``), with mixed precision,
gradient accumulation, EMA, a JSON-lines log and a progress bar on the main process, and
checkpoints every N steps that resume exactly:

* every step draws its batch, noise and timesteps from a generator seeded by
  (seed, step, process), so nothing depends on how many steps ran before a resume;
* ``accelerator.save_state`` writes model, optimizer, EMA and step into a temporary
  directory that is renamed into place only when complete, so a kill while writing leaves
  the previous checkpoint valid.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from tqdm import tqdm

from fs_neurons.files import atomic_write_text

CHECKPOINT_RE = re.compile(r"^step_(\d{8})$")


@dataclass
class TrainConfig:
    steps: int = 4000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_accum: int = 1
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 25
    seed: int = 0

    def validate(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "checkpoint_every", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not (0.0 <= self.ema_decay < 1.0):
            raise ValueError(f"ema-decay must be in [0, 1), got {self.ema_decay}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


@dataclass
class Counter:
    """The step counter, checkpointed with the rest of the training state."""

    step: int = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


LossFn = Callable[[torch.nn.Module, torch.Generator, int], torch.Tensor]


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The generator of one (step, process): batches and noise of a step never depend on history."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1009 + rank)


def checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and CHECKPOINT_RE.match(p.name)), key=lambda p: p.name)


def save_checkpoint(accelerator: Accelerator, root: Path, step: int, keep: int) -> Path:
    """``accelerator.save_state`` into ``root/.step_N.tmp``, then rename to ``root/step_N``."""
    final = root / f"step_{step:08d}"
    tmp = root / f".step_{step:08d}.tmp"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def train(
    accelerator: Accelerator,
    model: torch.nn.Module,
    params: list[torch.nn.Parameter],
    loss_fn: LossFn,
    config: TrainConfig,
    out_dir: Path,
    resume: Optional[Path] = None,
) -> tuple[torch.nn.Module, EMAModel, list[dict]]:
    """Optimise ``params`` of ``model`` with AdamW on ``loss_fn(model, generator, step)``.

    Writes ``out_dir/checkpoints/step_N`` every ``checkpoint_every`` steps and
    ``out_dir/log.jsonl``. Returns the unwrapped model (EMA not applied), the EMA and the
    log records. ``resume`` is a checkpoint directory to continue from.
    """
    config.validate()
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    ema = EMAModel(params, decay=config.ema_decay)
    counter = Counter()
    model, opt = accelerator.prepare(model, opt)
    ema.to(accelerator.device)
    accelerator.register_for_checkpointing(ema, counter)
    if resume is not None:
        if not resume.is_dir():
            raise FileNotFoundError(f"checkpoint not found: {resume}")
        accelerator.load_state(str(resume))
    log_path = out_dir / "log.jsonl"
    records = _read_log(log_path, counter.step) if accelerator.is_main_process else []
    bar = tqdm(total=config.steps, initial=counter.step, desc="train", unit="step", dynamic_ncols=True,
               disable=not accelerator.is_main_process)
    t0, running = time.perf_counter(), []
    while counter.step < config.steps:
        step = counter.step
        for micro in range(config.grad_accum):
            with accelerator.accumulate(model):
                g = step_generator(config.seed, step * config.grad_accum + micro, accelerator.process_index)
                with accelerator.autocast():
                    loss = loss_fn(model, g, step)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower the learning rate")
                accelerator.backward(loss)
                opt.step()
                opt.zero_grad(set_to_none=True)
            running.append(loss.detach())
        ema.step(params)
        counter.step += 1
        bar.update(1)
        if counter.step % config.log_every == 0 or counter.step == config.steps:
            mean = accelerator.reduce(torch.stack(running).mean(), reduction="mean").item()
            running = []
            if accelerator.is_main_process:
                records.append({"step": counter.step, "loss": mean, "seconds": round(time.perf_counter() - t0, 2)})
                atomic_write_text(log_path, "".join(json.dumps(r) + "\n" for r in records))
                bar.set_postfix(loss=f"{mean:.4f}")
        if counter.step % config.checkpoint_every == 0 or counter.step == config.steps:
            save_checkpoint(accelerator, out_dir / "checkpoints", counter.step, config.keep_checkpoints)
    bar.close()
    _write_rank_checksums(accelerator, params, out_dir / "param_checksums.json")
    return accelerator.unwrap_model(model), ema, records


def _write_rank_checksums(accelerator: Accelerator, params: list[torch.nn.Parameter], path: Path) -> None:
    """Each process's checksum of the trained parameters, in one file: data-parallel ranks
    must end identical."""
    from accelerate.utils import gather_object

    with torch.no_grad():
        checksum = float(sum(p.detach().double().sum() + p.detach().double().abs().sum() for p in params))
    sums = gather_object([checksum])
    if accelerator.is_main_process:
        atomic_write_text(path, json.dumps({"processes": accelerator.num_processes, "checksums": sums}) + "\n")


def _read_log(path: Path, upto: int) -> list[dict]:
    """Log records up to step ``upto`` (those after a resumed checkpoint are dropped)."""
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r["step"] <= upto]


def config_json(config: TrainConfig) -> dict:
    return asdict(config)
