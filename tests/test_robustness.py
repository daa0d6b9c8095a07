"""Figures a researcher can publish without re-checking (issue 21): every case asserts the
right figure, the clear one-line error, or the untouched previous output.

The commands run in this process (``spiking_ddim.cli.main``) on the embedded digits DDIM
with a handful of images and denoising steps, so the whole file stays in the fast tier.
"""

import errno
import json
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from spiking_ddim.defaults import DEFAULT_MODEL

SMALL = ["--num-images", "4", "--batch-size", "2", "--steps", "2"]


def png_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


@pytest.fixture(scope="module")
def tuned_model(tmp_path_factory):
    """The embedded DDIM converted (K=4), then 'fine-tuned': one conv weight moved, and a
    calibration and a fine-tuning event in its history, as those commands record them."""
    from spiking_ddim import convert_pipeline, load_pipeline, save_pipeline
    from spiking_ddim.record import add_event

    pipe = load_pipeline(DEFAULT_MODEL)
    convert_pipeline(pipe, K=4)
    with torch.no_grad():
        pipe.unet.conv_in.weight.mul_(1.05)
    add_event(pipe.unet, "calibrate", budget={"kind": "energy", "value": 0.5}, images=16)
    add_event(pipe.unet, "finetune", run="runs/ft", steps=10, train_unet=True, freeze_neurons=False)
    path = tmp_path_factory.mktemp("tuned") / "model"
    save_pipeline(pipe, path)
    return path


# --- 1, 2: the reference and the model's history -------------------------------------------------------------------


def test_a_fine_tuned_model_is_scored_against_the_model_it_came_from(tmp_path, cli, tuned_model):
    code, out, err = cli("sample", *SMALL, "--real", "none", "--out", tmp_path / "plain")
    assert code == 0, err
    code, out, err = cli("sample", "--model", tuned_model, *SMALL, "--real", "none", "--out", tmp_path / "ft")
    assert code == 0, err
    # the reference images are the original DDIM's, not the tuned weights run with Swish
    assert png_bytes(tmp_path / "ft" / "original") == png_bytes(tmp_path / "plain" / "original")
    m = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert m["reference"]["kind"] == "source" and m["reference"]["model"] == "embedded:digits-ddim"
    assert "embedded digits DDIM" in out
    code, _, err = cli("sample", "--model", tuned_model, *SMALL, "--real", "none", "--reference", "self",
                       "--out", tmp_path / "self")
    assert code == 0, err
    assert png_bytes(tmp_path / "self" / "original") != png_bytes(tmp_path / "plain" / "original")
    assert json.loads((tmp_path / "self" / "metrics.json").read_text())["reference"]["kind"] == "self"


def test_metrics_json_carries_the_models_real_history(tmp_path, cli, tuned_model):
    code, out, err = cli("sample", "--model", tuned_model, *SMALL, "--real", "none", "--out", tmp_path / "s")
    assert code == 0, err
    m = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert m["calibrated"] is True and m["finetuned"] is True and m["budget"] == {"kind": "energy", "value": 0.5}
    assert [e["event"] for e in m["history"]] == ["convert", "calibrate", "finetune"]
    assert m["source"]["weights_sha256"] and m["scheduler"]["class"] == "DDIMScheduler"
    assert "calibrated under the energy budget 0.5" in out and "fine-tuned" in out
    from spiking_ddim.provenance import recorded_source

    assert recorded_source(tuned_model) == "embedded:digits-ddim"  # so --real defaults to the held-out digits


def test_a_changed_source_is_refused_not_silently_used(tmp_path, cli):
    from spiking_ddim import convert_pipeline, load_pipeline, save_pipeline

    src = tmp_path / "src"
    shutil.copytree(DEFAULT_MODEL, src)
    pipe = load_pipeline(src)
    convert_pipeline(pipe, K=4)
    save_pipeline(pipe, tmp_path / "fs")
    assert pipe.unet.fs_config.source_model == str(src.resolve())
    changed = load_pipeline(src)
    with torch.no_grad():
        changed.unet.conv_in.bias.add_(0.1)
    changed.save_pretrained(src)
    code, _, err = cli("sample", "--model", tmp_path / "fs", *SMALL, "--real", "none", "--out", tmp_path / "o")
    assert code != 0 and "differ from those recorded" in err and "--reference" in err
    assert not (tmp_path / "o").exists()


def test_calibration_records_itself_in_the_history(tmp_path):
    from spiking_ddim import SamplingOptions, convert_pipeline, load_pipeline
    from spiking_ddim.calibration import CALIBRATION_SEARCH, calibrate

    pipe = load_pipeline(DEFAULT_MODEL)
    convert_pipeline(pipe, K=2)
    search = CALIBRATION_SEARCH.__class__(pool=4, restarts=1, iters=2, elite=1, elite_iters=2, rounds=0, polish_iters=2)
    calibrate(pipe, SamplingOptions(steps=2), num_images=2, search=search)
    record = pipe.unet.fs_config
    assert record.calibrated and record.budget is None
    event = record.history[-1]
    assert event["event"] == "calibrate" and event["images"] == 2 and event["steps"] == 2
    assert event["summed_mse_after"] <= event["summed_mse_before"]


# --- 3: output folders written whole --------------------------------------------------------------------------------


def test_overwrite_replaces_the_whole_folder(tmp_path, cli):
    out = tmp_path / "s"
    assert cli("sample", "--num-images", "6", "--batch-size", "3", "--steps", "2", "--out", out)[0] == 0
    (out / "notes.txt").write_text("the user's")
    code, _, err = cli("sample", *SMALL, "--out", out)
    assert code != 0 and "--overwrite" in err and len(png_bytes(out / "fs")) == 6  # untouched
    assert cli("sample", *SMALL, "--out", out, "--overwrite")[0] == 0
    assert len(png_bytes(out / "fs")) == len(png_bytes(out / "original")) == 4 and not (out / "notes.txt").exists()
    m = json.loads((out / "metrics.json").read_text())
    assert m["images_written"] == {"original": 4, "fs": 4} and m["kid"]["fs"]["subset_size"] == 4


def test_an_interrupted_run_publishes_nothing(tmp_path, cli, monkeypatch):
    import spiking_ddim.comparison as sample

    real = sample.sample_pairs

    def interrupted(original, converted, batches, options, seed, on_batch):
        real(original, converted, batches[:1], options, seed, on_batch)  # one batch written, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(sample, "sample_pairs", interrupted)
    code, _, err = cli("sample", *SMALL, "--out", tmp_path / "new")
    assert code == 130 and "interrupted" in err
    assert list(tmp_path.iterdir()) == []  # no partial folder, no staging folder, no lock


def test_a_second_writer_is_refused_while_the_first_runs(tmp_path, cli):
    from spiking_ddim.outputs import output_lock

    with output_lock(tmp_path / "s"):
        code, _, err = cli("sample", *SMALL, "--out", tmp_path / "s")
    assert code != 0 and "is being written by process" in err
    assert cli("sample", *SMALL, "--out", tmp_path / "s")[0] == 0  # the lock is gone with its holder


def test_a_full_disk_is_a_one_line_error_and_leaves_nothing(tmp_path, cli, monkeypatch):
    import spiking_ddim.comparison as sample

    calls = []

    def full(image, path):
        calls.append(path)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        Image.fromarray(image[..., 0]).save(path, format="PNG")

    monkeypatch.setattr(sample, "save_png", full)
    code, _, err = cli("sample", *SMALL, "--out", tmp_path / "s")
    assert code == 1 and "No space left on device" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_metrics_refuses_a_folder_changed_since_its_run(tmp_path, cli):
    out = tmp_path / "s"
    assert cli("sample", *SMALL, "--real", "none", "--out", out)[0] == 0
    (out / "fs" / "00003.png").unlink()
    code, _, err = cli("metrics", "--real", "digits", "--fake", out / "fs")
    assert code == 2 and "recorded 4" in err


# --- 4: tables that would mix settings -------------------------------------------------------------------------------


def test_table_update_refuses_rows_of_other_settings(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(DEFAULT_MODEL.parents[1] / "eval"))
    import ddim_table

    (tmp_path / "ddim_table.json").write_text(json.dumps([{"K": None, "method": "original", "finetuned": False,
                                                           "num_images": 1000, "steps": 20}]))
    code = ddim_table.main(["--update", "--num-images", "4", "--steps", "2", "--K", "4", "--methods", "ours",
                            "--out", str(tmp_path)])
    assert code == 2 and "num_images: 1000 in the table, 4 now" in capsys.readouterr().err
    assert json.loads((tmp_path / "ddim_table.json").read_text())[0]["num_images"] == 1000



@pytest.mark.parametrize("flags, refused", [([], None), (["--steps", "7"], None),
                                            (["--model", "embedded:digits"], "--model"),
                                            (["--num-images", "10"], "--num-images"), (["--seed", "3"], "--seed")])
def test_added_rows_are_measured_as_the_existing_ones(tmp_path, capsys, flags, refused):
    import argparse

    from spiking_ddim.benchmarks.args import add_run_args, existing_results
    from spiking_ddim.embedded import embedded_model

    p = argparse.ArgumentParser()
    add_run_args(p, tmp_path)
    p.add_argument("--add", action="store_true")
    path = tmp_path / "results.json"
    with pytest.raises(SystemExit):  # nothing to add to
        existing_results(p, p.parse_args(["--add"]), path)
    assert "there is no" in capsys.readouterr().err
    path.write_text(json.dumps({"model": "embedded:photos-ddim", "num_images": 50, "steps": 7, "seed": 2, "rows": []}))
    args = p.parse_args(["--add", *flags])
    if refused:
        with pytest.raises(SystemExit):
            existing_results(p, args, path)
        assert f"was measured with {refused}" in capsys.readouterr().err
    else:  # defaults, and flags that agree with the file, take the file's settings
        assert existing_results(p, args, path)["rows"] == []
        assert embedded_model(args.model).name == "embedded:photos-ddim"
        assert (args.num_images, args.steps, args.seed) == (50, 7, 2)
    fresh = p.parse_args(flags)
    assert existing_results(p, fresh, path) is None  # without --add: a new table, with the defaults where not given
    assert (fresh.model, fresh.num_images) == ("embedded:digits", 10 if "--num-images" in flags else 1000)

# --- 5: metrics that cannot mean anything ----------------------------------------------------------------------------


def test_kid_and_is_are_flagged_or_refused():
    from spiking_ddim.data import digits
    from spiking_ddim.metrics import check_metric_args, generation_metrics

    real, fake = digits(16, "test"), digits(16, "train")[:8]
    r = generation_metrics(real, fake, "digits")
    assert r.isc_mean != pytest.approx(1.0)  # was 1.000 +- 0.000 with 10 images or fewer
    assert any(n.startswith("IS unreliable") for n in r.notes)
    assert any("KID from subsets of 8" in n for n in r.notes)
    same = generation_metrics(real, real, "digits")
    if same.kid_mean < 0:
        assert any(n.startswith("KID below 0") for n in same.notes)
    with pytest.raises(ValueError, match="KID subsets must be >= 1"):
        check_metric_args(10, 10, ["kid"], kid_subsets=0)
    with pytest.raises(ValueError, match="larger than the number of images"):
        check_metric_args(None, 4, ["kid"], kid_subset_size=5)
    with pytest.raises(ValueError, match="more than 3 images"):
        check_metric_args(None, 3, ["prc"])
    with pytest.raises(ValueError, match="at least 2 images"):
        check_metric_args(None, 1, ["fid"])


def test_a_negative_kid_is_flagged():
    from spiking_ddim.metrics.generation import _kid_notes

    notes = _kid_notes(-1.19, 0.5, 8)
    assert notes[0].startswith("KID below 0") and any("subsets of 8" in n for n in notes)
    assert _kid_notes(0.02, 0.001, 500) == []


# --- 6: inputs read rightly or refused ------------------------------------------------------------------------------


def test_sixteen_bit_pngs_keep_their_values(tmp_path):
    from spiking_ddim.data import load_image_folder

    a = np.linspace(0, 65535, 64).reshape(8, 8).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "a.png")
    x = load_image_folder(tmp_path)
    assert x.shape == (1, 1, 8, 8)
    assert torch.allclose(x[0, 0], torch.from_numpy(a.astype(np.float32) / 65535 * 2 - 1), atol=1e-6)


def _saved_fs_model(tmp_path):
    from spiking_ddim import convert_pipeline, load_pipeline, save_pipeline

    pipe = load_pipeline(DEFAULT_MODEL)
    convert_pipeline(pipe, K=4)
    save_pipeline(pipe, tmp_path / "fs")
    return tmp_path / "fs"


def _edit_config(path, edit):
    cfg = path / "unet" / "spiking_config.json"
    spec = json.loads(cfg.read_text())
    edit(spec)
    cfg.write_text(json.dumps(spec))


@pytest.mark.parametrize("edit,message", [
    (lambda s: s["modules"][0].__setitem__("activation", "relu"), "activation must be one of"),
    (lambda s: s.__setitem__("K", 6), "does not match"),
    (lambda s: s.pop("modules"), "missing field 'modules'"),
    (lambda s: s["modules"][0].__setitem__("kind", "odd"), "kind must be one of"),
    (lambda s: s["modules"][0].__setitem__("activation", "gelu"), "recorded as gelu"),
    (lambda s: s.__setitem__("format", 9), "unsupported format 9"),
])
def test_an_edited_spiking_config_is_refused(tmp_path, cli, edit, message):
    path = _saved_fs_model(tmp_path)
    _edit_config(path, edit)
    code, _, err = cli("sample", "--model", path, *SMALL, "--out", tmp_path / "o")
    assert code != 0 and message in err and "Traceback" not in err


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_fs_parameters_are_refused_at_load(tmp_path, value):
    from safetensors.torch import load_file, save_file

    from spiking_ddim import load_pipeline

    path = _saved_fs_model(tmp_path)
    weights = path / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    key = next(k for k in state if k.endswith("neurons.0.d"))
    state[key][1] = value
    save_file(state, str(weights))
    with pytest.raises(ValueError, match="NaN or infinite values in its parameter d"):
        load_pipeline(path)


def test_an_autoencoder_is_not_taken_for_a_unet(tmp_path, cli):
    from diffusers import AutoencoderKL

    AutoencoderKL(block_out_channels=(8,), norm_num_groups=4, latent_channels=2).save_pretrained(tmp_path / "vae")
    code, _, err = cli("convert", "--model", tmp_path / "vae", "--out", tmp_path / "o")
    assert code != 0 and "holds a AutoencoderKL, not a UNet" in err
    assert not (tmp_path / "o").exists()


def test_a_bare_unet_records_the_scheduler_it_got(tmp_path):
    from spiking_ddim import load_pipeline
    from spiking_ddim.pipelines import scheduler_record

    shutil.copytree(DEFAULT_MODEL / "unet", tmp_path / "unet")
    assert "DEFAULT" in scheduler_record(load_pipeline(tmp_path / "unet"))["source"]
    beside = load_pipeline(DEFAULT_MODEL / "unet")  # a pipeline's UNet finds the scheduler beside it
    assert scheduler_record(beside)["source"].endswith("scheduler/scheduler_config.json")


def test_bank_files_are_checked(tmp_path):
    from fs_neurons.bank import BankError, bank_path, load_entry

    gelu = tmp_path / "gelu.json"
    shutil.copy(bank_path("gelu"), gelu)
    with pytest.raises(BankError, match="holds gelu neurons, not swish"):
        load_entry("swish", 4, "ours", path=gelu)
    edited = tmp_path / "swish.json"
    data = json.loads(bank_path("swish").read_text())
    entry = next(e for e in data["entries"] if e["K"] == 8 and e["method"] == "ours")
    entry["mse"] *= 0.5
    edited.write_text(json.dumps(data))
    with pytest.raises(BankError, match="records MSE .* but its parameters give"):
        load_entry("swish", 8, "ours", path=edited)


# --- 7: calibration outcomes in words that cannot be misread ---------------------------------------------------------


def test_calibration_outcomes_are_described_plainly():
    from spiking_ddim.calibration import SpikeBudget
    from spiking_ddim.cli.common import describe_calibration

    with pytest.raises(ValueError, match="must be a finite number > 0"):
        SpikeBudget("spikes", 0.0)
    budget = SpikeBudget("spikes", 0.5)
    worse = describe_calibration({"sites": 3, "summed_mse_before": 1.0, "summed_mse_after": 3.4,
                                  "silent_sites": ["a[0]", "b[0]"]}, budget)
    assert "3.40x HIGHER" in worse and "down" not in worse and "2 of 3 sites never spike" in worse
    better = describe_calibration({"sites": 3, "summed_mse_before": 1.0, "summed_mse_after": 0.25, "silent_sites": []},
                                  None)
    assert "4.00x lower" in better and "WARNING" not in better


def test_a_zero_spike_budget_is_refused_before_any_work(tmp_path, cli):
    code, _, err = cli("sample", *SMALL, "--calibrate", "--spike-budget", "0", "--out", tmp_path / "s")
    assert code != 0 and "must be a finite number > 0" in err and not (tmp_path / "s").exists()


# --- 8: the noise floor beside ranked tables -------------------------------------------------------------------------


def test_ranked_tables_state_the_noise_floor():
    from spiking_ddim.benchmarks import noise as noise_floor

    order = {"psnr": 0.5, "psnr_median": 0.01, "kid_mean": 0.001}
    cpu = {"psnr": 0.7, "psnr_median": 0.02, "kid_mean": 0.003}
    line = noise_floor.floor_line({"num_images": 1000, "steps": 20, "cpu_capabilities": ["avx512", "avx2"],
                                   "spread": {"8": {noise_floor.ORDER: order, noise_floor.CPU: cpu},
                                              "16": {noise_floor.ORDER: {**order, "psnr": 0.6}}}})
    assert line.startswith("Noise floor")
    order_part, cpu_part = line.split("another CPU")
    assert "0.5 / 0.6 dB (K=8 / 16)" in order_part and "median per-image PSNR by 0.01 / 0.01 dB" in order_part
    assert "0.7 dB (K=8)" in cpu_part and "avx512, avx2" in cpu_part and "KID by 0.003" in cpu_part
    assert "not measured" in noise_floor.floor_line(None)  # no measurement yet: said so


# --- 9, 10, 11: lost work --------------------------------------------------------------------------------------------

TINY = ["--block-out-channels", "8", "16", "--layers-per-block", "1", "--image-size", "8", "--attention-level", "-1",
        "--batch-size", "4", "--samples", "0"]


def _checkpoints(out):
    return sorted(p.name for p in (out / "checkpoints").iterdir())


def test_overwrite_removes_the_old_run_before_the_new_one_writes(tmp_path, cli):
    out = tmp_path / "run"
    assert cli("train", "ann", *TINY, "--steps", "4", "--checkpoint-every", "2", "--out", out)[0] == 0
    assert _checkpoints(out) == ["step_00000002", "step_00000004"]
    code, _, err = cli("train", "ann", *TINY, "--steps", "2", "--checkpoint-every", "1", "--out", out,
                       "--overwrite")
    assert code == 0, err
    assert _checkpoints(out) == ["step_00000001", "step_00000002"]  # the old step 4 would have won 'latest'
    record = json.loads((out / "train_config.json").read_text())
    assert record["steps"] == 2 and record["resumes"] == []


def test_resume_refuses_changed_settings_and_keeps_the_record(tmp_path, cli):
    out = tmp_path / "run"
    assert cli("train", "ann", *TINY, "--steps", "2", "--checkpoint-every", "2", "--out", out)[0] == 0
    before = (out / "train_config.json").read_text()
    for flag, value in (("--lr", "0.01"), ("--weight-decay", "0.1"), ("--ema-decay", "0.5")):
        code, _, err = cli("train", "ann", *TINY, "--steps", "4", flag, value, "--resume", "latest",
                           "--out", out)
        assert code != 0 and f"{flag} was" in err and "Traceback" not in err
        assert (out / "train_config.json").read_text() == before
    code, _, err = cli("train", "ann", *TINY, "--steps", "4", "--resume", "latest", "--out", out)
    assert code == 0, err
    record = json.loads((out / "train_config.json").read_text())
    assert record["steps"] == 4 and len(record["resumes"]) == 1 and record["resumes"][0]["changed"]["steps"] == 4


def test_resume_refuses_a_folder_that_is_not_a_checkpoint(tmp_path, cli):
    (tmp_path / "run" / "checkpoints" / "step_00000001").mkdir(parents=True)
    code, _, err = cli("train", "ann", *TINY, "--resume", tmp_path / "run" / "checkpoints" / "step_00000001",
                       "--out", tmp_path / "run")
    assert code != 0 and "is not a training checkpoint" in err


@pytest.mark.parametrize("k_max", ["0", "1"])
def test_an_empty_bank_is_never_written(tmp_path, cli, k_max):
    from fs_neurons.bank import bank_path

    shipped = bank_path("swish").read_bytes()
    code, _, err = cli("train", "bank", "--K-max", k_max, "--out", tmp_path / "b.json", "--overwrite")
    assert code != 0 and "--K-max must be >= 2" in err and not (tmp_path / "b.json").exists()
    code, _, err = cli("train", "bank", "--overwrite")
    assert code != 0 and "pass --out FILE" in err
    assert bank_path("swish").read_bytes() == shipped


# --- tracebacks that must be one-line errors -----------------------------------------------------------------------


@pytest.mark.parametrize("args,message", [
    (["sample", "--device", "cuda:99"], "CUDA"),
    (["sample", "--device", "tpu"], "is not a device"),
    (["sample", "--eta", "inf"], "eta must be in [0, 1]"),
    (["sample", "--eta", "1e9"], "eta must be in [0, 1]"),
    (["sample", "--steps", "2000"], "steps must be at most the scheduler's 1000"),
    (["sample", "--real", "/nonexistent/real"], "image folder not found"),
    (["sample", "--num-images", "1"], "at least 2 images"),
    (["sample", "--num-images", "4", "--kid-subset-size", "5"], "larger than the number of images"),
    (["sample", "--num-images", "3", "--metrics", "prc"], "more than 3 images"),
    (["metrics", "--real", "digits", "--fake", "{tmp}", "--kid-subsets", "-3"], "KID subsets must be >= 1"),
    (["train", "fs", "--pool", "0", "--method", "ours", "--out", "{tmp}/fs"], "pool must be >= 1"),
])
def test_bad_input_is_a_one_line_error_before_any_work(tmp_path, cli, args, message):
    for i in range(4):
        Image.fromarray(np.full((8, 8), 60 * i, np.uint8)).save(tmp_path / f"{i}.png")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = tmp_path / "out"
    code, _, err = cli(*args, *(["--out", out] if args[0] == "sample" else []))
    assert code != 0 and message in err and "Traceback" not in err
    assert not out.exists()


# --- also -------------------------------------------------------------------------------------------------------------


def test_an_eval_model_runs_with_autograd_on():
    from spiking_ddim import convert_pipeline, load_pipeline

    pipe = load_pipeline(DEFAULT_MODEL)
    convert_pipeline(pipe, K=4)
    unet = pipe.unet.eval()
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)).requires_grad_()  # fixed: a spike may flip
    out = unet(x, torch.tensor([10])).sample
    out.square().mean().backward()  # was: "Can't call numpy() on Tensor that requires grad"
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with torch.no_grad():
        assert torch.allclose(unet(x, torch.tensor([10])).sample, out.detach(), atol=1e-4)


def test_a_failed_conversion_leaves_the_model_unconverted():
    from tiny_models import tiny_cond_unet

    from spiking_ddim import convert_unet
    from spiking_ddim.sites import GELU_TYPES, SWISH_TYPES

    unet = tiny_cond_unet()
    before = [type(m) for m in unet.modules()]
    with pytest.raises(ValueError, match="no bank entry"):
        convert_unet(unet, K=12, convert_gelu=True)  # the GELU bank has no K=12
    assert [type(m) for m in unet.modules()] == before and not hasattr(unet, "fs_config")
    report = convert_unet(unet, K=8, convert_gelu=True)  # a retry converts every site once, recorded
    assert report.complete and unet.fs_config.K == 8
    assert not [m for m in unet.modules() if isinstance(m, SWISH_TYPES + GELU_TYPES)]


def test_the_lookup_keeps_torchs_thread_count():
    from fs_neurons import FSNeuron

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(8)
        FSNeuron.from_bank("swish", 8, "ours").eval()(torch.randn(50_000))
        assert torch.get_num_threads() == 8
    finally:
        torch.set_num_threads(threads)


def test_comparison_png_is_a_figure_a_reader_can_use(tmp_path, cli):
    out = tmp_path / "s"
    assert cli("sample", *SMALL, "--real", "none", "--out", out)[0] == 0
    with Image.open(out / "comparison.png") as im:
        assert im.width >= 400 and im.height >= 250  # was 273 x 69 of unlabelled 16-pixel tiles
    m = json.loads((out / "metrics.json").read_text())
    assert math.isfinite(m["psnr"])


def test_delta_frontier_points_name_their_coding_price_cost_and_change_steps(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(DEFAULT_MODEL.parents[1] / "eval"))
    import delta_frontier

    from spiking_ddim.benchmarks import points

    p = points.parse_point("delta+all:4:0.005:value:acs:8")
    assert (p["coding"], p["spiking"], p["calibrated"], p["K"], p["delta_K"]) == ("delta", "all", True, 4, 8)
    assert (p["spike_weight"], p["price"], p["cost"]) == (0.005, "value", "acs")
    assert points.point_name(p) == "delta + fully spiking K=4/8, W=0.005 (value price, by ACs)"
    plain = points.parse_point("delta:4:0.01")  # the defaults: change price, every spike alike, min(K, 8)
    assert (plain["price"], plain["cost"], plain["delta_K"]) == ("change", "spikes", 4)
    assert points.point_name(plain) == "delta K=4, W=0.01"
    for bad in ("delta:4:0.01:values", "delta:4:0.01:value:macs", "step+all", "if+all:8", "delta:4:0.01:value:acs:x"):
        with pytest.raises(ValueError, match="a point is step"):
            points.parse_point(bad)
    with pytest.raises(SystemExit):
        delta_frontier.parse_args(["--points", "delta:4"])
    assert "a point is step" in capsys.readouterr().err
    # --remeasure reads every point back into the grammar: the text of a point parses to that point
    for text in ("step:16", "step+all:8", "if:8", "delta:4:0.01", "delta+cal:4:0.01", "delta+all:4:0.005:value:acs:8",
                 "delta:16:0.0002:value:spikes"):
        point = points.parse_point(text)
        assert points.parse_point(points.point_text(point)) == point, text


# --- refusals that the flags alone decide come before anything is loaded (issue 29) ----------------------------------


@pytest.fixture
def no_loading(monkeypatch):
    """Fails the test if a command loads a pipeline: its refusal came after the loader."""
    import spiking_ddim.pipelines as pipelines

    def loader(*_args, **_kwargs):
        raise AssertionError("the pipeline was loaded before the flags were checked")

    monkeypatch.setattr(pipelines, "load_pipeline", loader)


CONVERTING = ["sample", "convert", "train snn"]
EARLY_REFUSALS = [(command, args, message) for command in CONVERTING for args, message in [
    (["--coding", "delta", "--delta-spike-weight", "-1"], "--delta-spike-weight: the price of a spike"),
    (["--coding", "delta", "--delta-spike-weight", "nan"], "--delta-spike-weight"),
    (["--coding", "delta", "--delta-K", "1000"], "--delta-K: the steps of a change's code"),
    (["--coding", "delta", "--delta-K", "0"], "--delta-K"),
    (["--coding", "delta", "--delta-images", "0"], "--delta-images"),
    (["--delta-K", "4"], "--delta-K applies to --coding delta"),
    (["--K", "1000"], "--K: K (time steps) must be an integer >= 1 and at most 24"),
    (["--K", "0"], "--K: K (time steps)"),
    (["--K", "20"], "--K: the bank has no ours-unet entry for K=20"),
    (["--K", "6", "--method", "tbpi"], "--K: the bank has no tbpi entry for K=6 (it holds K = 4, 8, 12, 16)"),
    (["--convert", "vqvae", "--coding", "delta"], "--coding: coding 'delta' applies to the UNet"),
    (["--convert", "unet,text_encoder"], "--convert: 'text_encoder' is not a component"),
    (["--spiking", "all"], "--spiking: spiking 'all' needs calibration (calibrate, --calibrate)"),
    (["--guidance-scale", "0.5"], "--guidance-scale"),
    (["--calibrate", "--energy-budget", "0"], "--energy-budget"),
]] + [("sample", ["--eta", "2"], "--eta: eta must be in [0, 1]")]


@pytest.mark.parametrize("command,args,message", EARLY_REFUSALS)
def test_flag_refusals_come_before_the_model_loads_and_name_the_flag(tmp_path, cli, no_loading, command, args,
                                                                     message):
    out = tmp_path / "out"
    code, _, err = cli(*command.split(), *args, "--out", out)
    assert code != 0 and message in err and "Traceback" not in err, err
    assert not out.exists()  # nothing written, no empty run folder


def test_a_second_writer_is_refused_before_the_model_loads(tmp_path, cli, no_loading):
    from spiking_ddim.outputs import output_lock

    out = tmp_path / "out"
    with output_lock(out):
        code, _, err = cli("sample", *SMALL, "--out", out)
    assert code != 0 and "lock" in err.lower() and "Traceback" not in err


def test_a_failed_training_run_leaves_no_empty_folder(tmp_path, cli):
    out = tmp_path / "run"
    code, _, err = cli("train", "snn", "--model", tmp_path / "nonexistent", "--out", out)
    assert code != 0 and "not found" in err
    assert not out.exists()
    code, _, err = cli("train", "snn", "--log-with", "tensorboard", "--out", out)  # refused or run: never half a folder
    assert code == 0 or not out.exists()


def test_metrics_takes_real_none_as_sample_does(tmp_path, cli):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(np.full((8, 8), 60 * i + (name == "b"), np.uint8)).save(tmp_path / name / f"{i}.png")
    code, out, err = cli("metrics", "--real", "none", "--fake", tmp_path / "b", "--original", tmp_path / "a")
    assert code == 0, err
    assert "median" in out and "FID" not in out


# --- a reference that cannot be the model's source is flagged (issue 29) ---------------------------------------------


def _tiny_ddim(seed, channels=(8, 16)):
    from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=channels, layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4)
    return DDIMPipeline(unet=unet, scheduler=DDIMScheduler(num_train_timesteps=50))


def test_a_reference_of_another_architecture_or_unrelated_weights_is_flagged(tmp_path):
    import copy

    from spiking_ddim import convert_pipeline
    from spiking_ddim.provenance import unrelated
    from spiking_ddim.reference import reference_pipeline

    source = _tiny_ddim(0)
    tuned = copy.deepcopy(source)
    with torch.no_grad():
        for p in tuned.unet.parameters():
            p.mul_(1.05)  # a fine-tune's worth of change
    other, wider = _tiny_ddim(1), _tiny_ddim(0, channels=(16, 16))
    for name, pipe in (("source", source), ("tuned", tuned), ("other", other), ("wider", wider)):
        pipe.save_pretrained(tmp_path / name)
    assert unrelated(source.unet, tuned.unet) is None
    assert unrelated(source.unet, other.unet).startswith("unrelated weights")
    assert unrelated(source.unet, wider.unet).startswith("another architecture")
    fs = copy.deepcopy(source)
    convert_pipeline(fs, K=4)
    assert unrelated(fs.unet, source.unet) is None  # the FS neurons are no part of the comparison
    for name, flagged in (("source", False), ("tuned", False), ("other", True), ("wider", True)):
        _, record = reference_pipeline(fs, str(tmp_path / name))
        assert bool(record["warnings"]) is flagged, (name, record["warnings"])
        assert all("cannot be the unet this model was converted from" in w for w in record["warnings"])


# --- no scored image shares a seed with an image a fit saw (issue 29) ------------------------------------------------


def test_fit_streams_are_held_out_from_every_scored_range():
    from spiking_ddim.held_out import calibration_seeds, check_held_out, delta_fit_seeds, trajectory_seeds

    fitted = [("calibration", *r) for r in calibration_seeds(16, 0, budget=True)]
    fitted += [("delta encoder fit", *r) for r in delta_fit_seeds(16)] + [("fine-tuning", *r) for r in
                                                                         trajectory_seeds(64, 16)]
    # as the streams place them: 10000.., 20000, 30000..30001, 1000000..
    assert sorted((lo, hi) for _, lo, hi in fitted) == [(10_000, 10_016), (10_000, 10_016), (20_000, 20_001),
                                                         (30_000, 30_002), (1_000_000, 1_000_080)]
    check_held_out(fitted, 0, 10_000)  # the main job, the benchmarks and ten times more: held out
    for seed, n in [(9_990, 11), (10_015, 1), (19_999, 2), (29_000, 1_001), (999_999, 5)]:
        with pytest.raises(ValueError, match="scored images must be held out"):
            check_held_out(fitted, seed, n)
    for seed, n in [(9_990, 10), (10_016, 3_984), (20_001, 9_999), (30_002, 900_000)]:
        check_held_out(fitted, seed, n)  # next to a fitted range, not in it


def test_sample_refuses_a_seed_whose_images_a_fit_saw(tmp_path, cli, no_loading):
    code, _, err = cli("sample", "--calibrate", "--seed", "9990", "--num-images", "20", "--out", tmp_path / "a")
    assert code != 0 and "--seed: images 9990..10009 would include seeds 10000..10009" in err and "calibration" in err
    code, _, err = cli("sample", "--coding", "delta", "--seed", "10015", "--num-images", "4", "--out", tmp_path / "b")
    assert code != 0 and "delta encoder fit" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_converted_models_fits_are_held_out_when_it_is_scored(tmp_path, cli, tuned_model):
    # tuned_model's history has a calibration of 16 images (seed 0), recorded before image_seeds existed
    code, _, err = cli("sample", "--model", tuned_model, "--seed", "10010", *SMALL, "--real", "none",
                       "--out", tmp_path / "s")
    assert code != 0 and "images 10010..10013 would include seeds 10010..10013" in err
    assert not (tmp_path / "s").exists()


def test_fits_record_the_image_seeds_they_saw():
    import copy

    from fs_neurons.exact import OursConfig
    from spiking_ddim import SamplingOptions, convert_pipeline
    from spiking_ddim.calibration import calibrate, fit_delta
    from spiking_ddim.held_out import fitted_seeds

    pipe = _tiny_ddim(0)
    options = SamplingOptions(steps=2)
    quick = OursConfig(pool=4, restarts=1, iters=2, elite=1, elite_iters=2, rounds=0, polish_iters=2)
    fs = copy.deepcopy(pipe)
    convert_pipeline(fs, K=4, coding="delta")
    calibrate(fs, options, num_images=3, seed=5, search=quick)
    fit_delta(fs, options, images=2, seed=7, search=quick)
    assert fitted_seeds(fs.unet.fs_config) == [("calibration", 10_005, 10_008), ("delta encoder fit", 10_007, 10_009)]


# --- model cards describe the model beside them, with its figures (issue 29) -----------------------------------------


def test_convert_writes_a_card_that_describes_the_model_and_carries_its_figures(tmp_path, cli):
    import yaml

    from spiking_ddim import load_pipeline

    _tiny_ddim(0).save_pretrained(tmp_path / "ddim")
    out = tmp_path / "delta"
    code, stdout, err = cli("convert", "--model", tmp_path / "ddim", "--K", "4", "--coding", "delta",
                            "--delta-spike-weight", "0.003", "--delta-images", "2", "--steps", "2",
                            "--eval-images", "3", "--out", out)
    assert code == 0, err
    unet = load_pipeline(out).unet
    card = (out / "README.md").read_text()
    # delta coding described as delta coding, with the fit's price as the record keeps it
    assert "every neuron sends its K-step code at every denoising step" not in card
    assert "only a signed spike code of what changed since, in 4 time steps" in card
    assert "spike weight 0.003 per mean squared value, priced by accumulates" in card  # the history line
    # the figures of the evaluation, as recorded, on held-out seeds
    e = unet.fs_config.evaluation
    assert e is not None and e["images"] == 3 and e["image_seeds"] == [[2_000_000, 2_000_003]]
    assert f"| PSNR against the source (of the mean MSE) | {e['psnr']:.2f} dB |" in card
    assert f"{e['psnr_median']:.2f} / {e['psnr_p5']:.2f} dB" in card and f"| {e['energy_ratio']:.3f} |" in card
    assert "delta encoder fit: 10000..10001" in card and "seeds 2000000..2000002" in card
    meta = yaml.safe_load(card.split("---")[1])
    metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert metrics["psnr"] == pytest.approx(e["psnr"]) and metrics["energy_ratio"] == pytest.approx(e["energy_ratio"])
    assert "evaluated on 3 held-out images" in stdout

    code, _, err = cli("convert", "--model", tmp_path / "ddim", "--K", "4", "--steps", "2", "--eval-images", "0",
                       "--out", tmp_path / "plain")
    assert code == 0, err
    card = (tmp_path / "plain" / "README.md").read_text()
    assert "Figures measured" not in card and "model-index" not in card
    assert "every neuron sends its full K-step code at every denoising step" in card
    assert "No fit of this model saw an image" in card


def test_a_card_drops_figures_that_a_later_change_made_stale():
    from spiking_ddim.model_card import card_text
    from spiking_ddim.record import FSConfig, SiteModule

    figures = {"event": "evaluate", "images": 2, "image_seeds": [[2_000_000, 2_000_002]], "steps": 2, "psnr": 30.0,
               "psnr_median": 31.0, "psnr_p5": 29.0, "share_below_30db": 0.5, "spikes_per_neuron": 1.0,
               "energy_ratio": 0.5, "energy_ratio_int8": 10.0, "memory_ratio": 1.2, "memory_ratio_int8": 5.0}
    record = FSConfig("UNet2DModel", 4, "ours-unet", (SiteModule("a", "module", "swish", ((4, 8),)),),
                      history=({"event": "convert", "K": 4}, figures))
    assert record.evaluation == figures and "30.00 dB" in card_text({"unet": record}, True)
    stale = FSConfig("UNet2DModel", 4, "ours-unet", record.modules,
                     history=(*record.history, {"event": "calibrate", "images": 16, "seed": 0}))
    assert stale.evaluation is None and "Figures measured" not in card_text({"unet": stale}, True)
    assert "calibration: 10000..10015" in card_text({"unet": stale}, True)  # its seeds, from images and seed


def test_a_delta_frontier_of_the_photos_model_adds_to_it_and_names_it(monkeypatch, tmp_path, capsys):
    monkeypatch.syspath_prepend(str(DEFAULT_MODEL.parents[1] / "eval"))
    import delta_frontier

    from spiking_ddim.benchmarks import frontier

    data = {"model": "embedded:photos-ddim", "num_images": 4, "steps": 2, "eta": 0.0, "seed": 3,
            "original_kid": 3.5, "points": []}
    (tmp_path / "delta_frontier.json").write_text(json.dumps(data))
    args = delta_frontier.parse_args(["--add", "--out-dir", str(tmp_path), "--points", "if:8"])
    assert (args.model, args.num_images, args.steps, args.seed) == ("embedded:photos-ddim", 4, 2, 3)
    with pytest.raises(SystemExit):  # the digits model's points never join the photos model's
        delta_frontier.parse_args(["--add", "--out-dir", str(tmp_path), "--model", "embedded:digits"])
    assert "was measured with --model" in capsys.readouterr().err
    page = frontier.markdown(data, delta_frontier.TARGETS["embedded:photos-ddim"], "floor")
    assert "the embedded photos DDIM" in page and "held-out photographs" in page and "digits" not in page


def test_the_delta_frontier_plot_draws_one_curve_per_coding_family_and_labels_the_named_points(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(DEFAULT_MODEL.parents[1] / "eval"))
    import delta_frontier

    import fs_neurons.utils.figures
    from spiking_ddim.benchmarks import frontier
    from spiking_ddim.benchmarks import points as grammar

    figures = []
    monkeypatch.setattr(fs_neurons.utils.figures, "save_figure", lambda fig, _path: figures.append(fig))

    def at(text, psnr, energy):
        return {**grammar.parse_point(text), "psnr": psnr, "energy_ratio": energy}

    points = [at("step:8", 28.9, 0.53), at("step:16", 36.1, 0.91), at("delta:8:0.0002:value:acs", 44.4, 0.40),
              at("delta:8:0.01", 41.9, 0.37), at("delta:4:0.003:value:acs:8", 38.2, 0.33),
              at("delta:16:0.1", 33.4, 0.35), at("delta+all:8:0.001:value:acs", 41.4, 0.16),
              at("delta+all:8:0.03", 33.4, 0.16), at("if:8", 14.9, 0.33)]
    frontier.plot({"points": points}, tmp_path / "frontier.png", delta_frontier.NAMED,
                  delta_frontier.TARGETS["embedded:digits-ddim"])
    ax = figures[0].axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    families = {grammar.family(p) for p in points}
    assert len(legend) == len(families) + 1 and legend[-1].startswith("targets")  # one entry per family
    assert {label.split(" (")[0] for label in legend[:-1]} == families
    labels = [t.get_text() for t in ax.texts]
    named = [p for p in points if grammar.point_text(p) in
             {grammar.point_text(grammar.parse_point(n)) for n in delta_frontier.NAMED}]
    assert len(labels) == len(named) == 6  # the README's points, and only those, are labelled
    assert any("44.40 dB at 0.400" in t for t in labels) and not any("41.90" in t for t in labels)
