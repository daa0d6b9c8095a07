"""``python train.py fs``: outputs, refusal to overwrite, clear errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.integration
def test_fs_all_methods_writes_fits_and_plots(tmp_path):
    out = tmp_path / "fit"
    r = run("fs", "--K", "3", "--method", "all", "--epochs", "40", "--lr", "0.01", "--points", "3000",
            "--pool", "32", "--rounds", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    fits = json.loads((out / "fits.json").read_text())
    assert [f["method"] for f in fits] == ["random", "gaussian", "tbpi", "ours"]
    assert all(len(f["h"]) == 3 and f["mse"] > 0 for f in fits)
    for png in ("approximation.png", "losses.png", "tendency.png", "ours_search.png"):
        assert (out / png).stat().st_size > 1000, png
    assert "MSE x100" in r.stdout and "ours" in r.stdout

    again = run("fs", "--K", "3", "--method", "ours", "--out", str(out))
    assert again.returncode != 0 and "--overwrite" in again.stderr


def test_fs_bad_arguments_give_clear_errors(tmp_path, cli):
    for args, message in ((["--K", "0"], "K (time steps) must be an integer >= 1"),
                          (["--activation", "swishy"], "activation must be one of"),
                          (["--samples", tmp_path / "missing.pt"], "samples file not found")):
        code, _, err = cli("train", "fs", *args, "--out", tmp_path / "a")
        assert code != 0 and message in err and "Traceback" not in err
