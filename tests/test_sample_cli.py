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


@pytest.mark.integration
def test_default_main_job_end_to_end(tmp_path):
    out = tmp_path / "s"
    r = run(*SMALL, "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert len(list((out / "original").glob("*.png"))) == 6 and len(list((out / "fs").glob("*.png"))) == 6
    assert (out / "comparison.png").stat().st_size > 500
    assert m["K"] == 8 and m["sites"] > 0 and 0 < m["spikes_per_neuron_per_call"] <= 8
    assert m["psnr"] > 5 and m["mse"] > 0
    # the per-image spread beside the mean-MSE PSNR, from the per-image rows it summarises
    per_image = sorted(r["psnr"] for r in m["per_image"])
    assert m["psnr_median"] == per_image[2] and m["psnr_p5"] == per_image[0]  # lower median and 5th pct of 6
    assert m["share_below_30db"] == sum(p < 30 for p in per_image) / 6
    assert f"median {m['psnr_median']:.2f}" in r.stdout and "% below 30 dB" in r.stdout
    for key in ("fid", "kid", "is"):
        assert set(m[key]) == {"original", "fs"} and m[key]["fs"]["label"].startswith(key.upper() + " (")
    assert m["fid"]["fs"]["value"] > 0 and m["kid"]["fs"]["subset_size"] == 6
    assert any("FID unreliable" in n for n in m["metric_notes"]["fs"])  # 6 images
    e = m["energy"]
    for key in ("ann_macs_per_image", "snn_macs_per_image", "snn_acs_per_image", "neuron_updates_per_image",
                "ann_joules_per_image", "snn_joules_per_image", "ratio"):
        assert e[key] > 0, key
    assert e["constants"] == {"mac_pj": 4.6, "ac_pj": 0.9, "int8_mac_pj": 0.23,
                              "source": "45 nm, 32-bit float (Horowitz, ISSCC 2014)"}
    assert e["ratio_int8"] == pytest.approx(e["snn_joules_per_image"] / e["ann_int8_joules_per_image"])
    assert 0 < e["memory"]["ratio"] and e["memory"]["ann_int8_joules_per_image"] < e["memory"]["ann_joules_per_image"]
    assert e["forwards_per_image"] == 3 and len(e["sites"]) == m["sites"]
    assert e["snn_joules_per_image"] == pytest.approx(
        (e["snn_macs_per_image"] * 4.6 + e["snn_acs_per_image"] * 0.9) * 1e-12)
    assert e["ratio"] == pytest.approx(e["snn_joules_per_image"] / e["ann_joules_per_image"])
    assert e["spikes_per_image"] == pytest.approx(m["spikes_per_image"])
    assert {s["part"] for s in e["sites"]} >= {"time", "down", "mid", "up", "out"}
    for png in ("comparison.png", "firing_rates.png", "energy.png"):
        assert (out / png).stat().st_size > 500, png
    for text in ("PSNR", "FID (digits features)", "KID (digits features)", "IS (digits classifier)", "spikes",
                 "J/image", "ratio"):
        assert text in r.stdout, text

    again = run(*SMALL, "--out", str(out))
    assert again.returncode != 0 and "--overwrite" in again.stderr


@pytest.mark.integration
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
    e1, e2 = m1["energy"], m2["energy"]
    assert [s["name"] for s in e1["sites"]] == [s["name"] for s in e2["sites"]]
    for key in ("ann_macs_per_image", "snn_macs_per_image", "snn_acs_per_image", "neuron_updates_per_image"):
        assert e1[key] == pytest.approx(e2[key], rel=1e-12), key
    assert m1["fid"] == m2["fid"] == {}  # --real none: no generation metrics


@pytest.mark.parametrize("args,message", [
    (["--model", "/nonexistent/model"], "model directory not found"),
    (["--K", "0"], "K (time steps) must be an integer >= 1"),
    (["--steps", "0"], "--steps must be >= 1"),
    (["--model", "someone/ddim-offline-test"], "cannot fetch model"),
    (["--energy", "sram=5"], "unknown energy constant 'sram=5'"),
    (["--energy", "ac=-1"], "energy constant ac must be a finite number of picojoules >= 0"),
    (["--coding", "sigma"], "invalid choice: 'sigma'"),
    (["--delta-spike-weight", "0.1"], "--delta-spike-weight applies to --coding delta"),
    (["--delta-price", "value"], "--delta-price applies to --coding delta"),
    (["--coding", "delta", "--delta-price", "values"], "invalid choice: 'values'"),
    (["--delta-cost", "acs"], "--delta-cost applies to --coding delta"),
    (["--coding", "delta", "--delta-cost", "macs"], "invalid choice: 'macs'"),
    (["--coding", "delta", "--delta-images", "0"], "--delta-images: the images the encoders are fitted to must be >= 1"),
    (["--coding", "delta", "--delta-K", "0"], "--delta-K: the steps of a change's code must be an integer >= 1"),
    (["--coding", "delta", "--delta-spike-weight", "-1"], "--delta-spike-weight: the price of a spike must be a finite number >= 0"),
])
def test_clear_errors(tmp_path, cli, monkeypatch, args, message):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # read when called, not at import
    code, _, err = cli("sample", *args, "--out", tmp_path / "x")
    assert code != 0 and message in err and "Traceback" not in err
