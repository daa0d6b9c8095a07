"""A training run's folder: its record (``train_config.json``), its checkpoints, and what a
resume may change.

The record holds every setting of the run (the command's flags, the training loop's
configuration) and, for each resume, where it resumed from. A resume continues one run:
it may extend it (``steps``) or change how often it logs and checkpoints; any other
setting that differs from the record (learning rate, weight decay, EMA decay, K, what is
trained, the model, the data ...) is refused, because the checkpoint's optimizer and model
carry the old ones. The record of a resumed run is rewritten only after the checkpoint
has loaded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

from fs_neurons.utils.files import atomic_write_text

RECORD_NAME = "train_config.json"
RESUMABLE = ("steps", "log_every", "checkpoint_every", "resume", "overwrite")  # may differ on resume
_NOT_SETTINGS = ("command", "train", "trainable_parameters", "resumes", "run", "reference_used")


def is_checkpoint(path: Path) -> bool:
    """Whether ``path`` holds a training checkpoint (Accelerate's saved state)."""
    if not path.is_dir() or not (path / "optimizer.bin").is_file():
        return False
    return any(path.glob("model*.safetensors")) or any(path.glob("pytorch_model*.bin"))


def run_of_checkpoint(checkpoint: Path) -> Path:
    """The run folder a checkpoint (``RUN/checkpoints/step_N``) belongs to."""
    return checkpoint.resolve().parent.parent


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def settings(args: dict) -> dict:
    """The settings of a run from its flags (argparse namespace as a dict), JSON-normalised."""
    return {k: _plain(v) for k, v in args.items() if k not in _NOT_SETTINGS}


def read_record(run: Path) -> dict:
    """A run's record; ``ValueError`` when it is missing or unreadable."""
    path = run / RECORD_NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{run} has no {RECORD_NAME}: not a run of spiking-ddim train") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None


def changed_settings(record: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """(setting, recorded value, new value) for every setting a resume may not change."""
    old = {k: v for k, v in record.items() if k not in _NOT_SETTINGS}
    if isinstance(old.get("reference"), dict):  # written before reference_used: the resolved reference, not the flag
        old.pop("reference")
    return [(k, old[k], new[k]) for k in sorted(set(old) & set(new))
            if k not in RESUMABLE and old[k] != new[k]]


def check_resume(checkpoint: Path, command: str, new: dict) -> dict:
    """The record of the run ``checkpoint`` belongs to, after checking that resuming it with
    settings ``new`` (:func:`settings`) continues that run; ``ValueError`` naming each
    changed setting otherwise."""
    if not is_checkpoint(checkpoint):
        raise ValueError(f"{checkpoint} is not a training checkpoint (no optimizer.bin and model weights); pass a "
                         "RUN/checkpoints/step_N folder or 'latest'")
    if not (checkpoint / "scheduler.bin").is_file():
        raise ValueError(f"{checkpoint} was written by an older spiking-ddim, without a learning-rate schedule; "
                         "start a new run (another --out, or --overwrite)")
    run = run_of_checkpoint(checkpoint)
    record = read_record(run)
    if record.get("command") != command:
        raise ValueError(f"{checkpoint} is a checkpoint of `train {record.get('command')}`, not `train {command}`")
    changed = changed_settings(record, new)
    if changed:
        flags = "; ".join(f"--{k.replace('_', '-')} was {old!r}, now {now!r}" for k, old, now in changed)
        raise ValueError(f"resuming {run} with changed settings ({flags}): the checkpoint carries the recorded "
                         "ones. Resume with the same settings (only --steps, --log-every and --checkpoint-every may "
                         "change), or start a new run (another --out, or --overwrite)")
    return record


def write_record(out: Path, command: str, new: dict, extra: dict, resumed_from: Optional[Path] = None,
                 previous: Optional[dict] = None) -> None:
    """Write ``out/train_config.json``: the settings, ``extra`` (training configuration,
    counts, what the run resolved: keys of :data:`_NOT_SETTINGS`, so a resume never reads
    them as flags), and the resumes so far plus this one."""
    stray = sorted(set(extra) - set(_NOT_SETTINGS))
    if stray:
        raise ValueError(f"run record: {', '.join(stray)} would be read as settings on resume; record them under "
                         "a key of run_record._NOT_SETTINGS")
    resumes = list((previous or {}).get("resumes", []))
    if resumed_from is not None:
        resumes.append({"from": str(resumed_from), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "changed": {k: new[k] for k in RESUMABLE if k in new and (previous or {}).get(k) != new[k]}})
    atomic_write_text(out / RECORD_NAME, json.dumps({"command": command, **new, **_plain(extra), "resumes": resumes},
                                                    indent=1) + "\n")
