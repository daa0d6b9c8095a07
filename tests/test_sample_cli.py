"""``sample.py``: the main job end to end, several processes, clear errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--num-images", "6", "--batch-size", "2", "--steps", "3", "--K", "8"]


def run(*args, torchrun=False):
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] if torchrun
           else [sys.executable]) + [str(ROOT / "sample.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_default_main_job_end_to_end(tmp_path):
    out = tmp_path / "s"
    r = run(*SMALL, "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert len(list((out / "original").glob("*.png"))) == 6 and len(list((out / "fs").glob("*.png"))) == 6
    assert (out / "comparison.png").stat().st_size > 500
    assert m["K"] == 8 and m["sites"] > 0 and 0 < m["spikes_per_neuron_per_call"] <= 8
    assert m["psnr"] > 5 and m["mse"] > 0
    assert set(m["kid"]) == {"original", "fs"} and m["kid"]["fs"]["label"].startswith("KID (")
    assert "PSNR" in r.stdout and "KID (" in r.stdout and "spikes" in r.stdout

    again = run(*SMALL, "--out", str(out))
    assert again.returncode != 0 and "--overwrite" in again.stderr


def test_two_processes_write_exactly_what_one_writes(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    args = [*SMALL, "--real", "none", "--eta", "0.5"]
    r1 = run(*args, "--out", str(one))
    r2 = run(*args, "--out", str(two), torchrun=True)
    assert r1.returncode == 0, r1.stderr[-3000:]
    assert r2.returncode == 0, r2.stderr[-3000:]
    for sub in ("original", "fs"):
        names = sorted(p.name for p in (one / sub).iterdir())
        assert names == sorted(p.name for p in (two / sub).iterdir()) and len(names) == 6
        for n in names:
            assert (one / sub / n).read_bytes() == (two / sub / n).read_bytes(), (sub, n)
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert m2["processes"] == 2 and m1["per_image"] == m2["per_image"]
    assert m1["spikes_per_image"] == pytest.approx(m2["spikes_per_image"], rel=1e-9)


@pytest.mark.parametrize("args,message", [
    (["--model", "/nonexistent/model"], "model directory not found"),
    (["--K", "0"], "K (time steps) must be an integer >= 1"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--model", "someone/ddim-offline-test"], "cannot fetch model"),
])
def test_clear_errors(tmp_path, args, message):
    r = subprocess.run([sys.executable, str(ROOT / "sample.py"), *args, "--out", str(tmp_path / "x")],
                       capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr
