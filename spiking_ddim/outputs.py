"""Output folders that are written whole or not at all, by one writer at a time.

A run's output folder is never mixed with an older run's or a concurrent run's:

* :func:`staged_output` gives the run a staging folder beside its output
  (``.NAME.<random>.tmp``) and moves it into place only when the run succeeds, replacing an
  old folder only with ``overwrite``; a run that fails or is interrupted (an exception,
  Ctrl-C, SIGTERM through the CLI) leaves the old folder, or none, and no partial one.
* :func:`fresh_run_dir` empties a training run's folder for a new run (``overwrite``): the
  old folder is moved aside in one rename and deleted before anything new is written, so
  no old checkpoint survives into the new run.
* :func:`output_lock` (used by both) holds ``.NAME.lock`` beside the folder, naming the
  writer's host and process; a second writer is refused while the first runs, and a lock
  left by a dead process on this host is taken over.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from pathlib import Path
from typing import Iterator, Union

from fs_neurons.utils.files import atomic_directory

PathLike = Union[str, Path]


class OutputError(RuntimeError):
    """An output folder cannot be written: not empty without overwrite, not a folder, or
    locked by another writer."""


def check_output(path: PathLike, overwrite: bool) -> None:
    """``OutputError`` unless ``path`` is missing, an empty folder, or ``overwrite`` is set."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"output path {path} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise OutputError(f"output directory {path} is not empty; pass --overwrite to replace it (the whole folder "
                          "is replaced, never mixed)")


def _lock_path(path: Path) -> Path:
    return path.parent / f".{path.name}.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def output_lock(path: PathLike) -> Iterator[None]:
    """Hold the lock of output folder ``path`` (``.NAME.lock`` beside it) for the block."""
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock_path(path)
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                host, pid = lock.read_text().split()
            except (OSError, ValueError):
                host, pid = "", "0"
            if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
                lock.unlink(missing_ok=True)  # its writer is gone
                continue
            raise OutputError(f"{path} is being written by process {pid} on {host or 'an unknown host'} (lock "
                              f"{lock}); wait for that run, or delete the lock if it is no longer running") from None
        with os.fdopen(fd, "w") as f:
            f.write(me)
        break
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if lock.read_text() == me:
                lock.unlink()


@contextlib.contextmanager
def staged_output(path: PathLike, overwrite: bool) -> Iterator[Path]:
    """Yield a staging folder for output folder ``path``; on success it replaces ``path``
    whole. Raises :class:`OutputError` (before anything is written) for a non-empty
    ``path`` without ``overwrite`` or a concurrent writer."""
    path = Path(path)
    check_output(path, overwrite)
    with output_lock(path):
        check_output(path, overwrite)  # again, now that no one else can write it
        with atomic_directory(path) as tmp:
            yield tmp


def fresh_run_dir(path: PathLike, overwrite: bool) -> Path:
    """Make ``path`` an empty folder for a new run; with ``overwrite`` an old one is first
    moved aside (one rename) and deleted, so nothing of it survives. The caller holds
    :func:`output_lock`."""
    path = Path(path)
    check_output(path, overwrite)
    if path.is_dir() and any(path.iterdir()):
        old = path.parent / f".{path.name}.{os.getpid()}.old"
        os.replace(path, old)
        shutil.rmtree(old)
    path.mkdir(parents=True, exist_ok=True)
    return path
