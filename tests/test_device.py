"""GPU or not: the install switch, the device line, the warning for an unused card, the codecs."""
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, TRAIN_FAST, assert_one_line_error, event_scalars, run_script
from vae import codecs, device, ffmpeg, probe
from vae.decode import read_frames

# These tests describe a machine without an NVIDIA card, as the test machines are.
CARD_HERE = codecs.nvenc_problem() is None or bool(device.nvidia_gpus())
no_card = pytest.mark.skipif(CARD_HERE, reason="an NVIDIA card is present")


def lines_starting(text, prefix):
    return [line for line in text.splitlines() if line.startswith(prefix)]


def fake_nvidia_smi(folder, output, status=0):
    """An nvidia-smi that prints `output` and exits with `status`; returns a PATH that finds it first."""
    folder.mkdir(exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\nprintf '{output}'\nexit {status}\n")
    script.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"


def make_dry_run(folder, *args):
    result = subprocess.run(["make", "-n", *args], cwd=folder, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(not shutil.which("make"), reason="make is not installed")
def test_make_gpu_installs_the_cuda_build(tmp_path):
    # A copy with a CPU install already stamped: GPU=1 must still install, and only then.
    for name in ("Makefile", "requirements.txt"):
        shutil.copy(os.path.join(ROOT, name), tmp_path / name)
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / ".installed").touch()
    os.utime(tmp_path / "requirements.txt", (1, 1))

    gpu = make_dry_run(tmp_path, "demo", "GPU=1")
    assert "pip install --quiet -r requirements.txt 'tensorflow[and-cuda]'" in gpu, gpu
    assert "touch .venv/.installed-gpu" in gpu, gpu
    cpu = make_dry_run(tmp_path, "demo")
    assert "pip install" not in cpu, cpu  # the CPU install is up to date
    assert "and-cuda" not in make_dry_run(tmp_path, "-B", "demo")
    assert "and-cuda" not in open(os.path.join(ROOT, "requirements.txt")).read()  # the CPU stays the default


@no_card
def test_cpu_only_line_and_encoder_fallback(tmp_path, evaluated, media):
    # evaluate_embeddings.py as the shared fixture ran it
    assert lines_starting(evaluated["stderr"], "device:") == ["device: CPU only"], evaluated["stderr"]
    assert not lines_starting(evaluated["stderr"], "warning:"), evaluated["stderr"]

    out = tmp_path / "styled.mp4"
    result = run_script("mogrify_video.py", media["clip"], out, "--models", evaluated["models"], "--encoder", "auto",
                        "--no-audio", "--crf", 30)
    assert lines_starting(result.stderr, "device:") == ["device: CPU only, batch size 16"], result.stderr
    encoder = lines_starting(result.stderr, "encoder:")
    # No NVIDIA device here: no trial, and nothing said of one.
    assert encoder == ["encoder: libx264 on the CPU (-crf 30)"], result.stderr
    described = subprocess.run([ffmpeg.exe(), "-hide_banner", "-i", str(out)], capture_output=True, text=True)
    assert "Video: h264" in described.stderr, described.stderr
    meta = probe.probe(str(out))
    frames = list(read_frames(meta, (meta.width, meta.height)))
    assert len(frames) == 40


@no_card
def test_the_encoder_trial_is_made_where_nvidia_smi_is_found(tmp_path, evaluated, media):
    # A machine that looks like it has a card (nvidia-smi answers) but cannot encode on it: the
    # one-frame trial runs, fails, and says why; the render goes on with libx264.
    path = fake_nvidia_smi(tmp_path / "bin", "NVIDIA GeForce RTX 4090\\n")
    result = run_script("mogrify_video.py", media["clip"], tmp_path / "o.mp4", "--models", evaluated["models"],
                        "--no-audio", "--duration", 0.4, env={"PATH": path})
    encoder = lines_starting(result.stderr, "encoder:")
    assert len(encoder) == 1 and "libx264" in encoder[0] and "h264_nvenc failed a one-frame trial" in encoder[0], \
        result.stderr
    assert probe.probe(str(tmp_path / "o.mp4")).width > 0


@no_card
def test_card_options_without_a_card_are_one_error(tmp_path, media):
    # Checked before the models load, so a missing models folder is never reached.
    for option, value in (("--encoder", "h264_nvenc"), ("--decoder", "cuda")):
        result = run_script("mogrify_video.py", media["clip"], tmp_path / "o.mp4", "--models", tmp_path / "none",
                            option, value, check=False)
        assert_one_line_error(result, f"{option} {value}", "NVIDIA")
        assert not (tmp_path / "o.mp4").exists()


@no_card
def test_warning_when_nvidia_smi_answers_but_tensorflow_sees_no_gpu(tmp_path, exported):
    path = fake_nvidia_smi(tmp_path / "bin", "NVIDIA GeForce RTX 4090\\n")
    result = run_script("export_graphs.py", "--vae", exported["vae"], "--out", tmp_path / "models",
                        env={"PATH": path})
    assert lines_starting(result.stderr, "device:") == ["device: CPU only"], result.stderr
    warnings = lines_starting(result.stderr, "warning:")
    assert len(warnings) == 1, result.stderr
    assert "NVIDIA GeForce RTX 4090" in warnings[0]
    assert "GPU=1" in warnings[0] and "pip install 'tensorflow[and-cuda]'" in warnings[0]


def test_nvidia_smi_that_fails_or_lists_nothing_is_no_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path / "broken", "NVIDIA-SMI has failed\\n", status=9))
    assert device.nvidia_gpus() == []
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path / "empty", ""))
    assert device.nvidia_gpus() == []
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path / "two", "Tesla T4\\nTesla T4\\n"))
    assert device.nvidia_gpus() == ["Tesla T4", "Tesla T4"]
    assert device.mismatch_warning([], ["Tesla T4"]) is not None
    assert device.mismatch_warning(["Tesla T4"], ["Tesla T4"]) is None


@pytest.mark.slow
def test_mixed_precision_xla_and_the_device_line(tmp_path, tiles):
    """The GPU options run here on the CPU (bfloat16, XLA) and export float32 models; a training
    run prints its device line and records it in TensorBoard."""
    import numpy as np
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    data = str(tiles.parent / "*.tfrecord.gz")
    logdir = tmp_path / "vae"
    result = run_script("train_vae.py", "--data", data, "--logdir", logdir, "--steps", 4, *TRAIN_FAST,
                        "--mixed-precision", "--xla")
    losses = [v for _, v in event_scalars(logdir)["loss"]]
    assert losses and all(np.isfinite(losses))
    assert "bfloat16" in result.stderr
    if not CARD_HERE:
        line = "device: CPU only, mixed precision mixed_bfloat16, XLA, batch size 16"
        assert lines_starting(result.stderr, "device:") == [line], result.stderr
        events = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
        events.Reload()
        recorded = events.Tensors("device")
        assert [e.step for e in recorded] == [1]
        assert tf.make_ndarray(recorded[0].tensor_proto).item().decode() == line
    models = tmp_path / "models"
    run_script("export_graphs.py", "--vae", logdir, "--out", models)
    encoder = tf.saved_model.load(str(models / "encoder"))
    out = encoder.signatures["serving_default"](images=tf.zeros([2, 36, 64, 3]))
    assert out["mean"].dtype == tf.float32 and out["mean"].shape == (2, 32)
    # XLA alone: float32 throughout.
    result = run_script("train_refiner.py", "--data", data, "--models", models, "--logdir",
                        tmp_path / "refiner", "--steps", 3, "--identity-steps", 1, "--batch-size", 8, "--xla")
    assert "bfloat16" not in result.stderr and "XLA" in result.stderr
    assert all(np.isfinite(v) for _, v in event_scalars(tmp_path / "refiner")["loss"])
