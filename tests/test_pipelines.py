"""Any diffusers pipeline: a tiny DDPMPipeline, LDMPipeline (VQModel + UNet2DModel) and
StableDiffusionPipeline (UNet2DConditionModel, AutoencoderKL, a small CLIP text model and a
tokenizer from a vocabulary written here), all random weights, converted, sampled through
their own __call__, calibrated, saved and loaded."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import (
    DDIMPipeline,
    DDIMScheduler,
    DiffusionPipeline,
    StableDiffusionPipeline,
    UNet2DModel,
)
from tiny_models import KINDS, PROMPTS, STEPS, build, tiny_denoiser, tiny_ldm, tiny_sd

from spiking_ddim import FSActivation, fs_activations, measure_cost
from spiking_ddim.calibration import calibrate
from spiking_ddim.pipelines import (
    SamplingOptions,
    convert_pipeline,
    converted_components,
    generate,
    load_pipeline,
    read_prompts,
    record_denoiser_calls,
    save_pipeline,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bank(fine_bank):
    """An 'ours' K=20 bank entry fitted finely on [-5, 5]."""
    return fine_bank[0]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_convert_sample_save_load(kind, tmp_path, bank):
    pipe, options, components, shape = build(kind, tmp_path)
    original = generate(pipe, range(3), options)
    assert original.shape == (3, *shape) and original.min() >= -1 and original.max() <= 1
    fs = copy.deepcopy(pipe)
    reports = convert_pipeline(fs, K=20, method="ours", components=components, bank_path=bank)
    assert set(reports) == set(components) and all(r.complete and r.sites for r in reports.values())
    assert set(converted_components(fs)) == set(components)
    # the decoder is converted, the encoder is not: sampling never runs it
    if len(components) > 1:
        dec = fs.components[components[1]]
        assert all(s.path.startswith("decoder.") for s in dec.fs_config.modules)
        encoder = [m for n, m in dec.named_modules() if n.startswith("encoder.")]
        assert any(isinstance(m, torch.nn.SiLU) for m in encoder)
        assert not any(isinstance(m, FSActivation) for m in encoder)
    images = generate(fs, range(3), options)
    assert images.shape == original.shape
    # finely approximating neurons: the FS pipeline reproduces the original from the same noise,
    # far better than coarse ones (the default K=4 entry)
    coarse = copy.deepcopy(pipe)
    convert_pipeline(coarse, K=4, components=components)
    err, coarse_err = ((x - original).abs().mean() for x in (images, generate(coarse, range(3), options)))
    assert err < 0.15 * original.abs().mean() and err < 0.25 * coarse_err, (err, coarse_err)
    # per-image generators: an image does not depend on its batch (up to float rounding, which
    # can move an FS neuron across a threshold, so checked on the original)
    torch.testing.assert_close(generate(pipe, [2], options), original[2:], atol=1e-5, rtol=1e-4)

    save_pipeline(fs, tmp_path / "saved")
    index = json.loads((tmp_path / "saved" / "model_index.json").read_text())
    assert index["unet"][0] == "spiking_ddim.modeling" and index["unet"][1].startswith("Spiking")
    loaded = load_pipeline(tmp_path / "saved")
    assert type(loaded) is type(pipe) and set(converted_components(loaded)) == set(components)
    assert torch.equal(generate(loaded, range(3), options), images)


def test_different_noise_or_prompts_give_different_images(tmp_path):
    pipe, options, _, _ = build("sd", tmp_path)
    a = generate(pipe, [0, 1], options)
    assert not torch.allclose(a[0], a[1])  # seeds 0, 1 and prompts "a cat", "a red car"
    same_prompt = SamplingOptions(steps=3, prompts=("a cat",), guidance_scale=3.0)
    b = generate(pipe, [0], same_prompt)
    torch.testing.assert_close(a[0:1], b)  # image 0 gets prompt 0 either way
    c = generate(pipe, [0], SamplingOptions(steps=3, prompts=("the sea",), guidance_scale=3.0))
    assert not torch.allclose(b, c)


def test_calibration_lowers_every_site_error_on_latent_and_text_models(tmp_path):
    from fs_neurons.exact import OursConfig

    quick = OursConfig(pool=8, restarts=1, iters=30, elite=2, elite_iters=30, rounds=0, polish_iters=40)
    pipe, options, components, _ = build("sd", tmp_path)
    fs = copy.deepcopy(pipe)
    convert_pipeline(fs, K=4, components=components)
    before = generate(fs, range(2), options)
    sites = calibrate(fs, options, num_images=2, search=quick)
    names = {s.name.split(".")[0] for s in sites}
    assert "vae" in names and len(sites) == sum(a.num_sites for m in converted_components(fs).values()
                                                for _, a in fs_activations(m))
    assert all(s.mse_after <= s.mse_before for s in sites)
    assert sum(s.mse_after for s in sites) < 0.9 * sum(s.mse_before for s in sites)
    assert all(m.fs_config.calibrated for m in converted_components(fs).values())
    reference = generate(pipe, range(2), options)
    assert (generate(fs, range(2), options) - reference).abs().mean() < (before - reference).abs().mean()


def test_cost_of_a_pipeline_counts_the_unet_passes_and_the_decoder(tmp_path):
    pipe, options, components, _ = build("sd", tmp_path)
    convert_pipeline(pipe, K=8, components=components)
    with measure_cost(pipe) as meter:
        generate(pipe, range(2), options)
    report = meter.report()
    # classifier-free guidance: every step runs the UNet on 2 x 2 rows
    assert report.forwards == 3 and report.samples == 3 * 4
    energy = report.energy(2)
    assert {s["part"] for s in energy.sites} >= {"vae", "down", "up"}
    parts = {lay["name"].split(".")[0] for lay in energy.layers}
    assert {"vae", "text_encoder"} <= parts
    vae_acs = sum(lay["snn_acs_per_image"] for lay in energy.layers if lay["name"].startswith("vae."))
    assert vae_acs > 0


def test_recorded_calls_of_a_guided_text_model_replay_exactly(tmp_path):
    pipe, options, _, _ = build("sd", tmp_path)
    calls = record_denoiser_calls(pipe, range(3), options, batch_size=2)
    assert len(calls) == 2 * 3 * 3  # unconditional and conditional halves, 3 images, 3 steps
    assert calls.encoder_hidden_states.shape[1:] == (12, 32)
    with torch.no_grad():
        torch.testing.assert_close(calls.rows(torch.arange(4)).run(pipe.unet), calls.output[:4], atol=1e-5, rtol=1e-4)


@pytest.mark.integration
def test_plain_diffusers_never_loads_the_swish_network(tmp_path):
    pipe, options, components, _ = build("ldm", tmp_path)
    convert_pipeline(pipe, K=8, components=components)
    save_pipeline(pipe, tmp_path / "fs")
    expected = generate(pipe, range(2), options)
    # a converted model alone: plain diffusers stops and names the loader
    with pytest.raises(ValueError, match="spiking_ddim.load_model"):
        UNet2DModel.from_pretrained(tmp_path / "fs" / "unet")
    # a converted pipeline: plain diffusers loads the FS components once spiking_ddim.modeling is imported
    loaded = DiffusionPipeline.from_pretrained(tmp_path / "fs")
    assert type(loaded.unet).__name__ == "SpikingUNet2DModel" and type(loaded.vqvae).__name__ == "SpikingVQModel"
    assert torch.equal(generate(loaded, range(2), options), expected)
    index = json.loads((tmp_path / "fs" / "model_index.json").read_text())
    assert index["unet"] == ["spiking_ddim.modeling", "SpikingUNet2DModel"]
    # ... and without it, stops naming the module to import
    load = f"from diffusers import DiffusionPipeline; p = DiffusionPipeline.from_pretrained({str(tmp_path / 'fs')!r})"
    r = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True)
    assert r.returncode != 0 and "import spiking_ddim.modeling" in r.stderr
    r = subprocess.run([sys.executable, "-c", f"import spiking_ddim.modeling; {load}; print(type(p.unet).__name__)"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "SpikingUNet2DModel" in r.stdout, r.stderr[-2000:]


@pytest.mark.integration
def test_sample_cli_on_a_latent_pipeline_two_processes_equal_one(tmp_path):
    save_pipeline(tiny_ldm(), tmp_path / "ldm")
    args = [str(ROOT / "sample.py"), "--model", str(tmp_path / "ldm"), "--convert", "unet,vqvae", "--num-images", "3",
            "--batch-size", "1", "--steps", "2", "--K", "8", "--real", "none"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], capture_output=True, text=True,
                         env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          *args, "--out", str(tmp_path / "two")], capture_output=True, text=True, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    for sub in ("original", "fs"):
        for i in range(3):
            name = f"{sub}/{i:05d}.png"
            assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    m1, m2 = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two"))
    assert m1["pipeline"] == "LDMPipeline" and m1["converted"] == ["unet", "vqvae"]
    assert m1["energy"]["snn_acs_per_image"] == pytest.approx(m2["energy"]["snn_acs_per_image"])
    assert [r["mse"] for r in m1["per_image"]] == pytest.approx([r["mse"] for r in m2["per_image"]])


class SchedulerOnlyPipeline(DiffusionPipeline):
    def __init__(self, scheduler):
        super().__init__()
        self.register_modules(scheduler=scheduler)


def test_bad_pipeline_input_is_a_clear_error(tmp_path):
    ddpm, _, _, _ = build("ddpm", tmp_path)
    ldm, _, _, _ = build("ldm", tmp_path)
    sd, _, _, _ = build("sd", tmp_path)
    no_unet = SchedulerOnlyPipeline(DDIMScheduler())
    cases = [
        (lambda: convert_pipeline(no_unet), "has no UNet"),
        (lambda: convert_pipeline(ddpm, components=("vae",)), "has no component 'vae'"),
        (lambda: convert_pipeline(sd, components=("text_encoder",)), "text encoders stay"),
        (lambda: SamplingOptions(prompts=("a cat",)).resolve(ddpm), "unconditional: it takes no prompt"),
        (lambda: SamplingOptions(guidance_scale=0.5).resolve(sd), "guidance scale must be a finite number >= 1"),
        (lambda: SamplingOptions(guidance_scale=2.0).resolve(ldm), "has no classifier-free guidance"),
        (lambda: SamplingOptions(eta=0.5).resolve(ldm), "eta > 0 needs a pipeline"),
        (lambda: read_prompts(tmp_path / "missing.txt"), "prompts file not found"),
        (lambda: load_pipeline(tmp_path / "nowhere"), "model directory not found"),
        (lambda: calibrate(ddpm), "has no FS components"),
    ]
    for call, message in cases:
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            call()
    convert_pipeline(ddpm)
    with pytest.raises(ValueError, match="already converted"):
        convert_pipeline(ddpm)
    (tmp_path / "empty.txt").write_text("# only a comment\n\n")
    with pytest.raises(ValueError, match="has no prompts"):
        read_prompts(tmp_path / "empty.txt")


@pytest.mark.parametrize("args,message", [
    (["--prompt", "a cat"], "unconditional: it takes no prompt"),
    (["--prompts", "/nonexistent/prompts.txt"], "prompts file not found"),
    (["--guidance-scale", "2"], "has no classifier-free guidance"),
    (["--convert", "unet,vae"], "has no component 'vae'"),
])
def test_sample_cli_pipeline_flag_errors(tmp_path, cli, args, message):
    code, _, err = cli("sample", *args, "--out", tmp_path / "x")
    assert code != 0 and message in err and "Traceback" not in err, err[-2000:]


def test_a_bare_unet_directory_becomes_a_ddim_pipeline(tmp_path):
    tiny_denoiser(1).save_pretrained(tmp_path / "unet-only")
    pipe = load_pipeline(tmp_path / "unet-only")
    assert isinstance(pipe, DDIMPipeline) and generate(pipe, [0], STEPS).shape == (1, 1, 8, 8)


@pytest.mark.integration
def test_fine_tuning_a_text_model_distils_on_its_guided_latent_trajectories(tmp_path):
    save_pipeline(tiny_sd(tmp_path), tmp_path / "sd")
    (tmp_path / "prompts.txt").write_text("a cat\na red car\n")
    out = tmp_path / "ft"
    base = [sys.executable, str(ROOT / "train.py"), "snn", "--model", str(tmp_path / "sd"), "--K", "4"]
    r = subprocess.run([*base, "--convert", "unet,vae", "--prompts", str(tmp_path / "prompts.txt"),
                        "--guidance-scale", "2", "--trajectories", "4", "--sampling-steps", "3", "--steps", "24", "--train-unet",
                        "--batch-size", "8", "--lr", "3e-3", "--log-every", "4", "--checkpoint-every", "100", "--held-out", "2",
                        "--out", str(out)], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in rows if "loss" in row]
    assert losses[-1] < 0.8 * losses[0], losses
    tuned = load_pipeline(out / "model")
    assert isinstance(tuned, StableDiffusionPipeline) and set(converted_components(tuned)) == {"unet", "vae"}
    assert tuned.unet.fs_config.finetuned and tuned.tokenizer is not None
    assert generate(tuned, [0], PROMPTS).shape == (1, 3, 16, 16)
    # a latent model has no training images in its UNet's space
    bad = subprocess.run([*base, "--loss", "denoise", "--steps", "1", "--out", str(tmp_path / "bad")],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "is a latent model" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.integration
def test_network_table_runs_on_a_latent_pipeline(tmp_path):
    save_pipeline(tiny_ldm(), tmp_path / "ldm")
    r = subprocess.run([sys.executable, str(ROOT / "eval" / "ddim_table.py"), "--model", str(tmp_path / "ldm"),
                        "--convert", "unet,vqvae", "--K", "4", "--methods", "ours", "--codings", "step", "delta",
                        "--num-images", "2", "--steps", "3", "--batch-size", "2", "--out", str(tmp_path / "results")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads((tmp_path / "results" / "ddim_table.json").read_text())
    assert [(row["method"], row["coding"]) for row in rows] == [("original", None), ("ours", "step"), ("ours", "delta")]
    original, fs, delta = rows
    assert fs["psnr"] > 0 and fs["mae_x0"] is None and fs["kid_mean"] is None  # no real images for this model
    assert fs["energy_ratio"] > 0 and original["energy_ratio"] == pytest.approx(1.0)
    assert delta["delta_K"] == 4 and delta["spike_weight"] > 0 and delta["calibration_seconds"] > 0  # fitted here
    assert all(row["memory_ratio"] > 0 and row["energy_ratio_int8"] > row["energy_ratio"] for row in rows)
    assert "LDMPipeline" in (tmp_path / "results" / "ddim_table.md").read_text()
    r = subprocess.run([sys.executable, str(ROOT / "eval" / "ddim_table.py"), "--model", str(tmp_path / "ldm"),
                        "--methods", "ours", "--codings", "delta+all", "--out", str(tmp_path / "other")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "need a +cal method" in r.stderr


@pytest.mark.integration
def test_sample_cli_on_an_already_converted_pipeline_compares_with_its_swish_weights(tmp_path):
    pipe = tiny_ldm()
    convert_pipeline(pipe, K=4, components=("unet", "vqvae"))
    save_pipeline(pipe, tmp_path / "fs")
    base = [sys.executable, str(ROOT / "sample.py"), "--model", str(tmp_path / "fs"), "--num-images", "2",
            "--steps", "2", "--real", "none"]
    # built in memory, so its record names no source to load: the default reference is refused, not guessed
    r = subprocess.run([*base, "--out", str(tmp_path / "s")], capture_output=True, text=True)
    assert r.returncode != 0 and "names no single source model" in r.stderr and not (tmp_path / "s").exists()
    base.extend(["--reference", "self"])
    r = subprocess.run([*base, "--out", str(tmp_path / "s")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert m["K"] == 4 and m["converted"] == ["unet", "vqvae"] and m["mse"] > 0 and m["reference"]["kind"] == "self"
    bad = subprocess.run([*base, "--K", "8", "--out", str(tmp_path / "t")], capture_output=True, text=True)
    assert bad.returncode != 0 and "already converted; --K apply to plain pipelines" in bad.stderr


def test_calibration_is_deterministic_for_a_seed(tmp_path):
    from fs_neurons.exact import OursConfig

    quick = OursConfig(pool=8, restarts=1, iters=20, elite=2, elite_iters=20, rounds=0, polish_iters=20)
    pipe, options, _, _ = build("ddpm", tmp_path)
    results = []
    for _ in range(2):
        fs = copy.deepcopy(pipe)
        convert_pipeline(fs, K=4)
        sites = calibrate(fs, options, num_images=2, search=quick, seed=3)
        results.append(([(s.name, s.mse_before, s.mse_after) for s in sites],
                        {k: v for k, v in fs.unet.state_dict().items() if ".neurons." in k}))
    for sites, state in results[1:]:
        assert sites == results[0][0]
        assert state.keys() == results[0][1].keys() and all(torch.equal(state[k], results[0][1][k]) for k in state)
    # the time embedding feeds every ResnetBlock: those sites share one fit
    temb = [s for s in results[0][0] if s[0].endswith("nonlinearity[1]")]
    assert len(temb) > 1 and len({s[1:] for s in temb}) == 1


def test_long_library_calls_report_progress_in_every_stage(tmp_path):
    """Calibration, delta encoder fits and trajectory recording report each stage (the
    denoiser calls that record, the exact-gradient steps that fit) as it goes, ending at
    their totals, so a command's bars never sit at 0 through a long stage."""
    from fs_neurons.exact import OursConfig
    from spiking_ddim.calibration import fit_delta
    from spiking_ddim.finetune import trajectory_calls

    quick = OursConfig(pool=8, restarts=1, iters=10, elite=2, elite_iters=10, rounds=1, mutants=4, round_iters=10,
                       polish_iters=10)
    pipe, options, _, _ = build("ddpm", tmp_path)

    def recorder():
        seen = {}

        def progress(stage, done, total):
            seen.setdefault(stage, []).append((done, total))
        return seen, progress

    fs = copy.deepcopy(pipe)
    convert_pipeline(fs, K=4)
    seen, progress = recorder()
    calibrate(fs, options, num_images=3, search=quick, progress=progress)
    assert list(seen) == ["record inputs", "fit sites"]
    assert seen["record inputs"][-1] == (options.steps, options.steps)  # one batch of 3 images
    fits = seen["fit sites"]
    assert [d for d, _ in fits] == sorted(d for d, _ in fits) and fits[-1][0] == fits[-1][1] == quick.iterations
    assert len(fits) >= quick.iterations  # every exact-gradient step, not only each phase

    fs = copy.deepcopy(pipe)
    convert_pipeline(fs, K=4, coding="delta")
    seen, progress = recorder()
    fit_delta(fs, options, images=3, batch_size=2, search=quick, progress=progress)
    assert list(seen)[-2:] == ["record changes", "fit encoders"]
    assert seen["record changes"][-1] == (2 * options.steps, 2 * options.steps)  # two batches
    assert seen["fit encoders"][-1] == (quick.iterations, quick.iterations)

    seen, progress = recorder()
    trajectory_calls(pipe, options, range(2), progress=progress)
    assert seen["record calls"][0] == (0, options.steps) and seen["record calls"][-1] == (options.steps, options.steps)


def test_generate_many_makes_image_i_from_seed_i_whatever_the_batches(tmp_path):
    from spiking_ddim.sampling import generate_many, plan_batches

    assert plan_batches(5, 2) == [range(0, 2), range(2, 4), range(4, 5)]
    assert plan_batches(5, 2, process_index=1, num_processes=2) == [range(2, 4)]
    pipe, options, _, shape = build("ddpm", tmp_path)
    images = generate_many(pipe, 5, options, batch_size=2, seed=7)
    assert images.shape == (5, *shape)
    alone = generate(pipe, [3], options, seed=7)[0]  # image 3 alone: the same noise, another batch
    assert (images[3] - alone).abs().max() < 1e-4 and (images[2] - alone).abs().max() > 1e-2
    with pytest.raises(ValueError, match="batch_size >= 1"):
        generate_many(pipe, 5, options, batch_size=0)
