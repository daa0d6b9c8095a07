"""``train.py ann`` and ``train.py snn``: loss goes down, processes agree, resume is exact,
checkpoints survive a kill, bad flags fail clearly."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--block-out-channels", "8", "16", "--layers-per-block", "1", "--image-size", "8", "--attention-level", "-1",
        "--batch-size", "8", "--K", "4"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train(*args, torchrun=False, **kw):
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] if torchrun
           else [sys.executable]) + [str(ROOT / "train.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV, **kw)


def weights(out):
    return load_file(str(out / "model" / "unet" / "diffusion_pytorch_model.safetensors"))


def log(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("schedule", [[], ["--beta-schedule", "linear"]])
@pytest.mark.integration
def test_ann_trains_and_saves_a_native_ddim_pipeline(tmp_path, schedule):
    out = tmp_path / "ann"
    r = train("ann", "--block-out-channels", "8", "16", "--layers-per-block", "1", "--image-size", "8",
              "--attention-level", "-1", "--batch-size", "8", "--steps", "3", "--samples", "2", "--out", str(out),
              *schedule)
    assert r.returncode == 0, r.stderr[-3000:]
    from diffusers import DDIMPipeline, DDPMScheduler

    pipe = DDIMPipeline.from_pretrained(out / "model")  # loads with plain diffusers
    assert pipe.unet.config.sample_size == 8 and (out / "samples.png").is_file()
    assert len(list((out / "checkpoints").iterdir())) >= 1
    # the saved scheduler carries the schedule the run trained on (linear: DDPM's 1e-4 .. 0.02)
    expected = DDPMScheduler(beta_schedule=schedule[-1]) if schedule else DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    assert torch.allclose(pipe.scheduler.alphas_cumprod, expected.alphas_cumprod)
    assert json.loads((out / "train_config.json").read_text())["beta_schedule"] == (schedule[-1] if schedule
                                                                                    else "squaredcos_cap_v2")


@pytest.mark.integration
def test_init_from_starts_a_run_from_a_trained_unet_and_refuses_another_shape(tmp_path):
    tiny = ["--block-out-channels", "8", "16", "--layers-per-block", "1", "--image-size", "8", "--attention-level", "-1",
            "--batch-size", "8", "--samples", "0"]
    assert train("ann", *tiny, "--steps", "3", "--out", str(tmp_path / "a")).returncode == 0
    r = train("ann", *tiny, "--steps", "1", "--lr", "1e-12", "--lr-warmup-steps", "0", "--prediction-type", "v_prediction",
              "--init-from", str(tmp_path / "a" / "model"), "--out", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-9) for k in a)  # lr 1e-12: where it started
    record = json.loads((tmp_path / "b" / "train_config.json").read_text())
    assert record["init_from"] == str(tmp_path / "a" / "model") and record["prediction_type"] == "v_prediction"
    wider = [*tiny[:1], "8", "32", *tiny[3:]]
    r = train("ann", *wider, "--steps", "1", "--init-from", str(tmp_path / "a" / "model"), "--out", str(tmp_path / "c"))
    assert r.returncode != 0 and "its UNet is not the shape the flags build" in r.stderr
    assert "Traceback" not in r.stderr and len([line for line in r.stderr.splitlines() if "error" in line]) == 1


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_a_perfect_output_of_each_prediction_type_gives_back_the_clean_image(kind):
    from diffusers import DDPMScheduler

    from spiking_ddim.diffusion import denoising_target, predicted_x0

    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type=kind)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1, torch.randn(4, 3, 8, 8, generator=g)
    t = torch.tensor([0, 300, 700, 990])
    xt = scheduler.add_noise(x0, noise, t)
    target = denoising_target(scheduler, x0, noise, t)

    class Perfect(torch.nn.Module):  # outputs the target for exactly these inputs
        def forward(self, x, timestep):
            assert torch.equal(x, xt) and torch.equal(timestep, t)
            return type("Out", (), {"sample": target})()

    assert torch.allclose(predicted_x0(Perfect(), scheduler, xt, t), x0, atol=1e-3 if kind == "epsilon" else 1e-5)
    expected = {"epsilon": noise, "sample": x0}.get(kind)
    if expected is not None:
        assert torch.equal(target, expected)
    else:  # the velocity: sqrt(a) noise - sqrt(1 - a) x0
        a = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
        assert torch.allclose(target, a.sqrt() * noise - (1 - a).sqrt() * x0, atol=1e-6)


def test_fine_tuning_noises_images_with_the_model_s_own_schedule():
    from diffusers import DDIMScheduler

    from spiking_ddim.diffusion import noise_schedule_of

    for betas in ("linear", "squaredcos_cap_v2"):
        sampler = DDIMScheduler(beta_schedule=betas, prediction_type="epsilon")
        noise = noise_schedule_of(sampler)
        assert torch.equal(noise.alphas_cumprod, sampler.alphas_cumprod)
        assert noise.config.prediction_type == "epsilon"
    assert not torch.allclose(noise_schedule_of(DDIMScheduler(beta_schedule="linear")).alphas_cumprod,
                              noise_schedule_of(DDIMScheduler(beta_schedule="squaredcos_cap_v2")).alphas_cumprod)


@pytest.mark.parametrize("inputs", [["--distill-on", "data"],
                                    ["--distill-on", "trajectories", "--trajectories", "8", "--sampling-steps", "5"]])
@pytest.mark.integration
def test_short_fine_tune_lowers_the_training_loss(tmp_path, inputs):
    out = tmp_path / "ft"
    # the paper-protocol entry starts far from the optimum, so 24 steps must show the loss falling
    r = train("snn", "--K", "8", "--method", "ours", *inputs, "--steps", "24", "--batch-size", "8", "--log-every", "4",
              "--lr", "3e-3", "--held-out", "0", "--checkpoint-every", "100", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    losses = [row["loss"] for row in log(out) if "loss" in row]
    assert losses[-1] < 0.8 * losses[0], losses
    from spiking_ddim import load_model

    model = load_model(out / "model")
    assert model.fs_config.finetuned and model.fs_config.K == 8


@pytest.mark.integration
def test_freeze_neurons_trains_the_weights_and_keeps_every_fs_parameter(tmp_path):
    from fs_neurons import FSNeuron
    from fs_neurons.names import UNET_METHOD
    from spiking_ddim import load_model
    from spiking_ddim.defaults import DEFAULT_MODEL
    from spiking_ddim.sites import fs_activations

    out = tmp_path / "frozen"
    r = train("snn", "--K", "4", "--train-unet", "--freeze-neurons", "--distill-on", "data", "--steps", "2",
              "--batch-size", "4", "--lr", "1e-3", "--held-out", "0", "--checkpoint-every", "100", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    tuned, start = load_model(out / "model"), load_model(DEFAULT_MODEL)
    neurons = [n for _, act in fs_activations(tuned) for n in act.neurons]
    bank = FSNeuron.from_bank("swish", 4, UNET_METHOD)
    assert neurons and all(n.params() == bank.params() for n in neurons)  # the conversion's bank neurons, untouched
    moved = [k for k, v in start.state_dict().items() if not torch.equal(v, tuned.state_dict()[k])]
    assert any(k.endswith("conv1.weight") for k in moved)


@pytest.mark.integration
def test_fine_tuning_never_leaves_a_calibrated_model_worse_on_held_out_images(tmp_path):
    from fs_neurons.exact import OursConfig
    from spiking_ddim.calibration import calibrate
    from spiking_ddim.defaults import DEFAULT_MODEL
    from spiking_ddim.finetune import TRAJECTORY_SEED
    from spiking_ddim.pipelines import SamplingOptions, convert_pipeline, generate, load_pipeline, save_pipeline
    from spiking_ddim.sites import original_activations

    quick = OursConfig(pool=8, restarts=1, iters=20, elite=2, elite_iters=20, rounds=0, polish_iters=20)
    pipe = load_pipeline(DEFAULT_MODEL)
    options = SamplingOptions(steps=5)
    convert_pipeline(pipe, K=4)
    calibrate(pipe, options, num_images=2, search=quick)
    start_dir, out = tmp_path / "calibrated", tmp_path / "ft"
    save_pipeline(pipe, start_dir)
    # a learning rate far too high: training itself makes the model worse
    r = train("snn", "--model", str(start_dir), "--trajectories", "4", "--held-out", "6", "--sampling-steps", "5",
              "--steps", "6", "--validate-every", "2", "--batch-size", "8", "--lr", "0.3", "--ema-decay", "0",
              "--checkpoint-every", "100", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    scores = [row["validation"] for row in log(out) if "validation" in row]
    assert len(scores) == 4 and max(scores[1:]) > scores[0], scores  # steps 0, 2, 4, 6; some step got worse

    # measured here: the images of the held-out seeds (indices after the 4 training runs) against the original's
    held_out = range(4, 10)
    original = load_pipeline(start_dir)
    with original_activations(original.unet):
        reference = generate(original, held_out, options, TRAJECTORY_SEED)

    def error(model_dir):
        return float((generate(load_pipeline(model_dir), held_out, options, TRAJECTORY_SEED) - reference).pow(2).mean())

    start, tuned = error(start_dir), error(out / "model")
    assert start == pytest.approx(scores[0], rel=1e-4)
    assert tuned <= start and tuned == pytest.approx(min(scores), rel=1e-4)


def test_recorded_denoiser_calls_are_the_pipeline_s_own_steps():
    from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel

    from spiking_ddim.diffusion import TRAIN_SCHEDULER, ddim_noise_gain
    from spiking_ddim.pipelines import SamplingOptions, generate, record_denoiser_calls

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4).eval()
    pipe = DDIMPipeline(unet=unet, scheduler=DDIMScheduler(**TRAIN_SCHEDULER))
    options = SamplingOptions(steps=4)
    calls = record_denoiser_calls(pipe, range(3), options, seed=5, batch_size=2)
    x, t, eps = calls.sample, calls.timestep, calls.output
    assert x.shape == eps.shape == (12, 1, 8, 8) and t.shape == (12,) and calls.encoder_hidden_states is None
    # batch of images 0, 1 (seeds 5, 6) then image 2 (seed 7), each step by step from the highest timestep
    timesteps = pipe.scheduler.timesteps
    assert t.tolist() == [int(v) for v in timesteps for _ in range(2)] + [int(v) for v in timesteps]
    with torch.no_grad():
        torch.testing.assert_close(unet(x, t).sample, eps, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(calls.rows(torch.tensor([3, 9])).run(unet), eps[[3, 9]], atol=1e-5, rtol=1e-5)
    start = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(x[8], start)
    # d x_prev / d eps of DDIM (eta 0): sqrt(1 - a_prev) - sqrt(a_prev) * sqrt(1 - a_t) / sqrt(a_t)
    gain = ddim_noise_gain(pipe.scheduler, t)
    a = pipe.scheduler.alphas_cumprod.double()
    prev = [a[v - 250] if v >= 250 else torch.tensor(1.0, dtype=torch.double) for v in t.tolist()]
    want = [float((1 - p).sqrt() - p.sqrt() * (1 - a[v]).sqrt() / a[v].sqrt()) for p, v in zip(prev, t.tolist())]
    assert gain.tolist() == pytest.approx(want, rel=1e-3, abs=1e-4)
    final = generate(pipe, [2], options, seed=5)[0]
    last = pipe.scheduler.step(eps[11:12], int(t[11]), x[11:12]).prev_sample[0].clamp(-1, 1)
    torch.testing.assert_close(last, final, atol=1e-5, rtol=1e-5)


@pytest.mark.integration
def test_two_processes_keep_parameters_identical(tmp_path):
    out = tmp_path / "ddp"
    r = train("snn", "--from-scratch", *TINY, "--steps", "4", "--checkpoint-every", "100", "--out", str(out),
              torchrun=True)
    assert r.returncode == 0, r.stderr[-3000:]
    sums = json.loads((out / "param_checksums.json").read_text())
    assert sums["processes"] == 2 and len(sums["checksums"]) == 2
    assert sums["checksums"][0] == sums["checksums"][1]


@pytest.mark.integration
def test_resume_equals_uninterrupted(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    common = ["snn", "--from-scratch", *TINY, "--checkpoint-every", "3", "--log-every", "3", "--seed", "3"]
    assert train(*common, "--steps", "6", "--out", str(full)).returncode == 0
    assert train(*common, "--steps", "3", "--out", str(part)).returncode == 0
    r = train(*common, "--steps", "6", "--resume", "latest", "--out", str(part))
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = weights(full), weights(part)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [row["step"] for row in log(part)] == [row["step"] for row in log(full)]


@pytest.mark.integration
def test_a_fine_tuning_run_of_a_converted_model_resumes_with_its_own_settings(tmp_path, cli):
    """The run's record keeps the --reference flag apart from the reference it resolved, so a
    resume with unchanged flags is accepted (it was refused: "--reference was {...}, now None")."""
    import json

    out = tmp_path / "s4"
    flags = ["snn", "--K", "8", "--held-out", "0", "--trajectories", "2", "--sampling-steps", "2", "--batch-size",
             "2", "--checkpoint-every", "1", "--seed", "0", "--out", out]
    code, _, err = cli("train", *flags, "--steps", "2")
    assert code == 0, err[-2000:]
    record = json.loads((out / "train_config.json").read_text())
    assert record["reference"] is None and record["reference_used"]["kind"] == "source"
    code, _, err = cli("train", *flags, "--steps", "3", "--resume", "latest")
    assert code == 0, err[-2000:]
    record = json.loads((out / "train_config.json").read_text())
    assert [r["changed"] for r in record["resumes"]] == [{"steps": 3, "resume": "latest"}]
    assert (out / "checkpoints" / "step_00000003").is_dir()
    code, _, err = cli("train", *flags, "--steps", "4", "--resume", "latest", "--reference", "self")
    assert code != 0 and "--reference was None, now 'self'" in err  # a changed flag is still refused


def test_a_run_record_keeps_what_a_run_resolved_out_of_its_settings(tmp_path):
    from spiking_ddim.run_record import changed_settings, write_record

    with pytest.raises(ValueError, match="read as settings on resume"):
        write_record(tmp_path, "snn", {"reference": None}, {"reference": {"kind": "source"}})
    old = {"command": "snn", "reference": {"kind": "source"}, "lr": 1e-4}  # written before reference_used
    assert changed_settings(old, {"reference": None, "lr": 1e-4}) == []


def test_a_fresh_run_starts_a_new_log_and_keeps_the_best_validated_weights(tmp_path):
    from accelerate import Accelerator

    from spiking_ddim.training import TrainConfig, train

    cfg = TrainConfig(steps=4, batch_size=1, lr=0.1, ema_decay=0.0, log_every=2, validate_every=2, checkpoint_every=100)
    target = torch.tensor([1.0])

    def run():
        torch.manual_seed(0)
        model = torch.nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            model.weight.fill_(0.9)  # 0.1 from the validation optimum; the loss pushes it away

        def validate():
            return float((model.weight.detach().reshape(1) - target).abs())

        return train(Accelerator(cpu=True), model, list(model.parameters()), lambda m, g, step: m.weight.sum(), cfg,
                     tmp_path, validate=validate)

    first = run()
    second = run()  # the same directory, not resumed: its log starts afresh
    rows = log(tmp_path)
    assert [r["step"] for r in rows if "validation" in r] == [0, 2, 4]
    assert [r["step"] for r in rows if "loss" in r] == [2, 4]
    scores = [r["validation"] for r in second.records if "validation" in r]
    assert second.step == 0 and min(scores) == scores[0] < scores[-1]  # training moved away: the start is kept
    assert second.weights[0].item() == pytest.approx(0.9) and first.step == second.step


def test_a_kill_while_checkpointing_leaves_the_previous_checkpoint_loadable(tmp_path):
    from accelerate import Accelerator

    from spiking_ddim.training import checkpoints, save_checkpoint

    acc = Accelerator(cpu=True)
    model = acc.prepare(torch.nn.Linear(2, 2))
    root = tmp_path / "ckpt"
    save_checkpoint(acc, root, 1, keep=2)
    saved = {k: v.clone() for k, v in model.state_dict().items()}

    def killed(output_dir, **_kw):  # writes half a checkpoint, then the process "dies"
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    original = acc.save_state
    acc.save_state = killed
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(acc, root, 2, keep=2)
    acc.save_state = original
    assert [p.name for p in checkpoints(root)] == ["step_00000001"]
    acc.load_state(str(checkpoints(root)[-1]))
    for k, v in model.state_dict().items():
        assert torch.equal(v, saved[k])


@pytest.mark.integration
def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    out = tmp_path / "killed"
    args = [sys.executable, str(ROOT / "train.py"), "snn", "--from-scratch", *TINY, "--steps", "400",
            "--checkpoint-every", "2", "--out", str(out)]
    proc = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "checkpoints" / "step_00000004").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    r = train("snn", "--from-scratch", *TINY, "--steps", "8", "--checkpoint-every", "2", "--resume", "latest",
              "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "model" / "unet" / "spiking_config.json").is_file()


@pytest.mark.parametrize("args,message", [
    (["snn", "--model", "/nonexistent", "--out", "{tmp}/a"], "model directory not found"),
    (["snn", "--distill-on", "data", "--data", "/nonexistent/images", "--out", "{tmp}/b"], "image folder not found"),
    (["snn", "--data", "digits", "--out", "{tmp}/j"], "--data is used only with"),
    (["snn", "--K", "0", "--out", "{tmp}/c"], "K (time steps) must be an integer >= 1"),
    (["snn", "--from-scratch", "--loss", "distill", "--out", "{tmp}/d"], "conflicting flags"),
    (["snn", "--from-scratch", "--model", "x", "--out", "{tmp}/e"], "conflicting flags"),
    (["snn", "--steps", "0", "--out", "{tmp}/f"], "steps must be >= 1"),
    (["snn", "--trajectories", "0", "--out", "{tmp}/i"], "--trajectories must be >= 1"),
    (["snn", "--held-out", "-1", "--out", "{tmp}/k"], "--held-out must be >= 0"),
    (["snn", "--validate-every", "0", "--out", "{tmp}/l"], "--validate-every must be >= 1"),
    (["snn", "--freeze-neurons", "--out", "{tmp}/m"], "--freeze-neurons leaves nothing to train without --train-unet"),
    (["snn", "--from-scratch", "--freeze-neurons", "--out", "{tmp}/n"], "conflicting flags"),
    (["ann", "--mixed-precision", "fp8", "--steps", "1", "--out", "{tmp}/g"], "invalid choice: 'fp8'"),
    (["ann", "--resume", "{tmp}/no-checkpoint", "--out", "{tmp}/h"], "checkpoint not found"),
])
def test_bad_training_flags(tmp_path, cli, args, message):
    code, _, err = cli("train", *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code != 0 and message in err, err[-2000:]
    assert "Traceback" not in err


def test_the_learning_rate_follows_its_schedule_and_is_logged(tmp_path):
    from accelerate import Accelerator

    from spiking_ddim.training import TrainConfig, train

    cfg = TrainConfig(steps=8, batch_size=1, lr=0.1, ema_decay=0.0, log_every=1, checkpoint_every=100,
                      lr_scheduler="cosine", lr_warmup_steps=3)
    model = torch.nn.Linear(1, 1, bias=False)
    result = train(Accelerator(cpu=True), model, list(model.parameters()), lambda m, g, step: m.weight.sum() ** 2, cfg,
                   tmp_path)
    lrs = [r["lr"] for r in result.records if "lr" in r]
    assert len(lrs) == 8 and lrs[2] == pytest.approx(0.1)  # three warm-up steps up to the full rate ...
    assert lrs[0] < lrs[1] < lrs[2] and lrs[2] > lrs[5] > lrs[7] >= 0  # ... then the cosine down
    assert [r["lr"] for r in log(tmp_path) if "lr" in r] == lrs
    with pytest.raises(ValueError, match="lr-scheduler must be one of"):
        TrainConfig(lr_scheduler="step").validate()


def test_an_unavailable_tracker_is_a_clear_error(tmp_path, cli):
    import importlib.util

    code, _, err = cli("train", "ann", "--block-out-channels", "8", "16", "--layers-per-block", "1", "--image-size", "8",
                       "--attention-level", "-1", "--batch-size", "4", "--samples", "0", "--steps", "1", "--log-with",
                       "tensorboard", "--out", tmp_path / "t")
    if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
        assert code != 0 and "--log-with tensorboard" in err and "Traceback" not in err
    else:
        assert code == 0 and any((tmp_path / "t").rglob("events.out.tfevents*"))


def test_the_fine_tuning_loss_is_denoising_distillation_or_their_sum():
    from tiny_models import tiny_unet

    from spiking_ddim.diffusion import train_scheduler
    from spiking_ddim.finetune import FinetuneLoss

    student, teacher = tiny_unet(0).eval(), tiny_unet(1).eval()
    images = torch.rand(6, 1, 8, 8) * 2 - 1
    common = dict(batch_size=4, device=torch.device("cpu"), noise_scheduler=train_scheduler(), images=images)

    def loss(kind, model=student, against=teacher):
        with torch.no_grad():
            return float(FinetuneLoss(kind, teacher=against, **common)(model, torch.Generator().manual_seed(3), 0))

    denoise, distill = loss("denoise"), loss("distill")
    assert denoise > 0 and distill > 0 and loss("both") == pytest.approx(denoise + distill, rel=1e-6)
    assert loss("distill", against=student) == 0.0  # a model distilled towards itself has nothing to learn
    assert loss("denoise", model=teacher) != pytest.approx(denoise)  # the prediction counts, not only the batch
