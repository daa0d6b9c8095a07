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

With a validation function the loop also scores the EMA weights every ``validate_every``
steps (the start included) and returns the best-scoring ones, so fine-tuning can never
leave the model worse on held-out data than it began. The learning rate follows diffusers'
``get_scheduler`` (constant by default; warm-up, linear and cosine on request) and is
logged; loss, learning rate and validation also go to the Accelerator's trackers (e.g.
TensorBoard), when it has any.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from accelerate import Accelerator
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm import tqdm

from fs_neurons.utils.files import atomic_write_text

from .train_config import TrainConfig

CHECKPOINT_RE = re.compile(r"^step_(\d{8})$")


@dataclass
class Counter:
    """The step counter, checkpointed with the rest of the training state."""

    step: int = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


class BestWeights:
    """The weights with the lowest validation error offered so far (CPU copies) and the step
    they come from; checkpointed with the rest of the training state."""

    def __init__(self) -> None:
        self.error, self.step, self.weights = math.inf, -1, None

    def offer(self, step: int, error: float, weights: list[torch.Tensor]) -> None:
        if error < self.error:
            self.error, self.step = error, step
            self.weights = [w.detach().to("cpu", copy=True) for w in weights]

    def state_dict(self) -> dict:
        return {"error": self.error, "step": self.step, "weights": self.weights}

    def load_state_dict(self, state: dict) -> None:
        self.error, self.step, self.weights = float(state["error"]), int(state["step"]), state["weights"]


@dataclass
class TrainResult:
    """What :func:`train` hands back: the unwrapped model, the weights to keep (for
    ``params``, in order: the best validated ones, else the EMA), the step they come from,
    and the log records (``loss`` every ``log_every`` steps, ``validation`` when scored)."""

    model: torch.nn.Module
    weights: list[torch.Tensor]
    step: int
    records: list[dict]

    def apply(self, params: list[torch.nn.Parameter]) -> None:
        """Copy the kept weights into ``params``."""
        with torch.no_grad():
            for p, w in zip(params, self.weights):
                p.copy_(w.to(p.device, p.dtype))


LossFn = Callable[[torch.nn.Module, torch.Generator, int], torch.Tensor]
ValidateFn = Callable[[], float]


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


class _RunLog:
    """``log.jsonl`` of a run (main process: rewritten whole at every record) and its progress bar."""

    def __init__(self, accelerator: Accelerator, path: Path, config: TrainConfig, step: int, resumed: bool):
        self.accelerator, self.path = accelerator, path
        # a resumed run continues its log; a fresh one (over an old run only with --overwrite) starts a new one
        self.records = _read_log(path, step) if accelerator.is_main_process and resumed else []
        self.bar = tqdm(total=config.steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
                        disable=not accelerator.is_main_process)

    def add(self, record: dict, **postfix: str) -> None:
        if self.accelerator.is_main_process:
            self.records.append(record)
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.records))
            self.bar.set_postfix(**postfix)


def _optimise(accelerator: Accelerator, model: torch.nn.Module, opt, schedule, loss_fn: LossFn, config: TrainConfig,
              step: int) -> list[torch.Tensor]:
    """One optimizer step of ``config.grad_accum`` micro-batches; their losses."""
    losses = []
    for micro in range(config.grad_accum):
        with accelerator.accumulate(model):
            g = step_generator(config.seed, step * config.grad_accum + micro, accelerator.process_index)
            with accelerator.autocast():
                loss = loss_fn(model, g, step)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower the learning rate")
            accelerator.backward(loss)
            opt.step()
            schedule.step()
            opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    return losses


def _prepared(accelerator: Accelerator, model: torch.nn.Module, params: list[torch.nn.Parameter], config: TrainConfig,
              resume: Optional[Path]):
    """(model, optimizer, schedule, EMA, step counter, best weights), prepared by Accelerate and
    loaded from the checkpoint ``resume`` if given."""
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    # Accelerate steps a prepared schedule once per process for every optimizer step, as diffusers' scripts count it
    n = accelerator.num_processes
    schedule = get_scheduler(config.lr_scheduler, opt, num_warmup_steps=config.lr_warmup_steps * n,
                             num_training_steps=config.steps * n)
    ema = EMAModel(params, decay=config.ema_decay)
    counter, best = Counter(), BestWeights()
    model, opt, schedule = accelerator.prepare(model, opt, schedule)
    ema.to(accelerator.device)
    accelerator.register_for_checkpointing(ema, counter, best)
    if resume is not None:
        if not resume.is_dir():
            raise FileNotFoundError(f"checkpoint not found: {resume}")
        accelerator.load_state(str(resume))
    return model, opt, schedule, ema, counter, best


def train(
    accelerator: Accelerator,
    model: torch.nn.Module,
    params: list[torch.nn.Parameter],
    loss_fn: LossFn,
    config: TrainConfig,
    out_dir: Path,
    resume: Optional[Path] = None,
    validate: Optional[ValidateFn] = None,
    on_start: Optional[Callable[[int], None]] = None,
) -> TrainResult:
    """Optimise ``params`` of ``model`` with AdamW on ``loss_fn(model, generator, step)``.

    Writes ``out_dir/checkpoints/step_N`` every ``checkpoint_every`` steps and
    ``out_dir/log.jsonl``. ``resume`` is a checkpoint directory to continue from. With
    ``validate`` (the error of ``model``'s current weights on held-out data, lower is better;
    every process computes the same) the EMA weights are scored at the start and every
    ``validate_every`` steps and the best are kept; otherwise the final EMA weights are.
    """
    config.validate()
    model, opt, schedule, ema, counter, best = _prepared(accelerator, model, params, config, resume)
    if on_start is not None:
        on_start(counter.step)
    log = _RunLog(accelerator, out_dir / "log.jsonl", config, counter.step, resume is not None)
    t0, running = time.perf_counter(), []

    def score() -> None:  # the EMA weights on the validation data
        ema.store(params)
        ema.copy_to(params)
        model.eval()
        with torch.no_grad():
            error = float(validate())
        model.train()
        ema.restore(params)
        best.offer(counter.step, error, ema.shadow_params)
        accelerator.log({"validation": error}, step=counter.step)
        log.add({"step": counter.step, "validation": error}, validation=f"{error:.3g}")

    if validate is not None and best.step < 0:
        score()  # the start
    while counter.step < config.steps:
        running += _optimise(accelerator, model, opt, schedule, loss_fn, config, counter.step)
        ema.step(params)
        counter.step += 1
        log.bar.update(1)
        last = counter.step == config.steps
        if counter.step % config.log_every == 0 or last:
            mean = accelerator.reduce(torch.stack(running).mean(), reduction="mean").item()
            running, lr = [], schedule.get_last_lr()[0]
            accelerator.log({"loss": mean, "lr": lr}, step=counter.step)
            log.add({"step": counter.step, "loss": mean, "lr": lr, "seconds": round(time.perf_counter() - t0, 2)},
                    loss=f"{mean:.4f}")
        if validate is not None and (counter.step % config.validate_every == 0 or last):
            score()
        if counter.step % config.checkpoint_every == 0 or last:
            save_checkpoint(accelerator, out_dir / "checkpoints", counter.step, config.keep_checkpoints)
    log.bar.close()
    _write_rank_checksums(accelerator, params, out_dir / "param_checksums.json")
    if validate is not None:
        return TrainResult(accelerator.unwrap_model(model), best.weights, best.step, log.records)
    return TrainResult(accelerator.unwrap_model(model), [w.detach().clone() for w in ema.shadow_params], counter.step,
                       log.records)


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
