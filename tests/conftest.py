"""Shared test helpers: the ``spiking-ddim`` command run in this process, and the tiers.

Tiers: tests marked ``integration`` start other processes (the scripts, torchrun, pip and
a wheel) or train and sample for several seconds; every other test is a unit test.
``pytest -m "not integration"`` runs the unit tier (the contributors' fast loop),
``pytest`` runs both (what CI runs).
"""

from __future__ import annotations

from typing import Callable

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: starts other processes or runs long jobs (the slow tier)")


@pytest.fixture
def cli(capsys) -> Callable[..., tuple[int, str, str]]:
    """``cli(*args)``: run ``spiking-ddim ARGS`` in this process; (exit code, stdout,
    stderr), a SystemExit message counted as stderr. ``cli.train(*args)`` runs ``train.py``
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
    on [-5, 5] (its MSE over the schema's 100,000 points); fitted once per session."""
    from fs_neurons import InputDistribution, fit_ours
    from fs_neurons.bank import BankEntry, write_bank
    from fs_neurons.exact import OursConfig

    K, lo, hi = 20, -5.0, 5.0
    fit = fit_ours("swish", K, InputDistribution.uniform(lo, hi, 20_000),
                   config=OursConfig(pool=64, restarts=1, iters=150, rounds=0, polish_iters=500))
    e = BankEntry(K, "ours", (lo, hi), tuple(fit.h), tuple(fit.d), tuple(fit.T), 0.0)
    e = BankEntry(K, "ours", (lo, hi), e.h, e.d, e.T, e.recompute_mse("swish"))
    path = tmp_path_factory.mktemp("bank") / "swish.json"
    write_bank(path, "swish", [e])
    return str(path), e.mse
