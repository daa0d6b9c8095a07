"""Shared test helpers: the ``spiking-ddim`` command run in this process, and the tiers.

Tiers: tests marked ``integration`` start other processes (the scripts, torchrun, pip and
a wheel) or train and sample for several seconds; every other test is a unit test.
``pytest -m "not integration"`` runs the unit tier (the contributors' fast loop),
``pytest`` runs both (what CI runs, spread over the CPU cores by pytest-xdist's ``-n auto``;
each worker then gives torch its share of the cores, so the workers do not oversubscribe them).
"""

from __future__ import annotations

import os
from typing import Callable

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: starts other processes or runs long jobs (the slow tier)")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture
def cli(capsys) -> Callable[..., tuple[int, str, str]]:
    """``cli(*args)``: run ``spiking-ddim ARGS`` in this process; (exit code, stdout,
    stderr), a SystemExit message counted as stderr. ``cli("train", ...)`` runs what ``train.py`` runs
    (the same commands as ``spiking-ddim train``)."""
    from spiking_ddim.cli import main

    def run(*args) -> tuple[int, str, str]:
        try:
            code, err = main([str(a) for a in args]), ""
        except SystemExit as e:
            code, err = (e.code, "") if isinstance(e.code, int) or e.code is None else (1, str(e.code))
        out = capsys.readouterr()
        return code or 0, out.out, out.err + err

    return run


@pytest.fixture(scope="session")
def fine_bank(tmp_path_factory) -> tuple[str, float]:
    """(path, MSE) of a bank whose only entry is an 'ours' Swish neuron of K=20 fitted finely
    on [-5, 5] (its MSE over the schema's 100,000 points); fitted once per session, shared by
    pytest-xdist's workers (the first fits it, under a file lock, the others read it)."""
    from filelock import FileLock

    from fs_neurons import InputDistribution, fit_ours
    from fs_neurons.bank import BankEntry, load_bank, write_bank
    from fs_neurons.exact import OursConfig

    shared = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        shared = shared.parent  # the session's folder, above the workers' own
    path = shared / "fine_bank" / "swish.json"
    path.parent.mkdir(exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            K, lo, hi = 20, -5.0, 5.0
            fit = fit_ours("swish", K, InputDistribution.uniform(lo, hi, 20_000),
                           config=OursConfig(pool=64, restarts=1, iters=150, rounds=0, polish_iters=500))
            e = BankEntry(K, "ours", (lo, hi), tuple(fit.h), tuple(fit.d), tuple(fit.T), 0.0)
            write_bank(path, "swish", [BankEntry(K, "ours", (lo, hi), e.h, e.d, e.T, e.recompute_mse("swish"))])
    return str(path), load_bank("swish", path)[0].mse
