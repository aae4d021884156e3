"""Fault injection: signals, divergence, damaged data, full disks, hostile file names, several workers."""
import glob
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, event_scalars, run_script
from vae import synthetic

SMALL = ["--batch-size", 8, "--codes", 16]


def checkpoint_tensors(logdir):
    import tensorflow as tf
    reader = tf.train.load_checkpoint(str(logdir / "checkpoints"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}


def checkpoint_step(logdir):
    return int(checkpoint_tensors(logdir)["step/.ATTRIBUTES/VARIABLE_VALUE"])


def start(script, *args, env=None):
    log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"fault-{os.getpid()}-{time.time()}.log"), "w+")
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, script), *map(str, args)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, **(env or {})})
    return proc, log


def wait_for(log, proc, pattern, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        log.seek(0)
        text = log.read()
        if re.search(pattern, text):
            return text
        if proc.poll() is not None:
            raise AssertionError(f"exited early ({proc.returncode}):\n{text}")
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} within {timeout}s")


def stop_with(signum, args, logdir, past):
    """Train until a step after `past` is on record, send `signum`; the step the run says it saved."""
    proc, log = start("train_vae.py", *args, "--steps", 100000)
    wait_for(log, proc, r"steps:")
    deadline = time.time() + 180
    while not [s for s, _ in event_scalars(logdir).get("loss", []) if s > past]:
        assert proc.poll() is None and time.time() < deadline, "no new step logged"
        time.sleep(0.3)
    sent = time.time()
    proc.send_signal(signum)
    proc.wait(timeout=60)
    assert time.time() - sent < 20  # not at the next save interval, which is never
    log.seek(0)
    stderr = log.read()
    assert proc.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    return int(re.search(r"stopped at step (\d+)", stderr).group(1))


@pytest.mark.slow
def test_signal_saves_and_resume_continues(tmp_path, tiles):
    """Ctrl-C, then SIGTERM on the resumed run, then a resume to the end: one unbroken curve."""
    data = str(tiles.parent / "*.tfrecord.gz")
    logdir = tmp_path / "vae"
    args = ["--data", data, "--logdir", logdir, *SMALL, "--log-every", 1, "--preview-every", 100000,
            "--save-every", 100000]
    reached = 0
    for signum in (signal.SIGINT, signal.SIGTERM):
        stopped = stop_with(signum, args, logdir, reached)
        assert stopped > reached, signum
        tensors = checkpoint_tensors(logdir)
        assert tensors["step/.ATTRIBUTES/VARIABLE_VALUE"] == stopped
        iterations = [v for k, v in tensors.items() if "optimizer" in k and "iteration" in k]
        assert iterations and iterations[0] == stopped
        reached = stopped
    # Resume: exactly the next steps, no gap and no repeat in the curve.
    run_script("train_vae.py", *args, "--steps", reached + 3)
    assert checkpoint_step(logdir) == reached + 3
    steps = [s for s, _ in event_scalars(logdir)["loss"]]
    assert steps == list(range(1, reached + 4))


@pytest.mark.slow
def test_divergence_keeps_last_good_checkpoint(tmp_path, tiles, exported):
    data = str(tiles.parent / "*.tfrecord.gz")
    logdir = tmp_path / "vae"
    shutil.copytree(exported["vae"], logdir)  # the shared run, at step 60
    args = ["--data", data, "--logdir", logdir, "--batch-size", 16, "--codes", 32, "--save-every", 1000,
            "--preview-every", 1000]
    result = run_script("train_vae.py", *args, "--steps", 120, "--learning-rate", 1e12, check=False)
    assert_one_line_error(result, "at step", "diverged")
    error = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    failed_at = int(re.search(r"at step (\d+)", error).group(1))
    step = checkpoint_step(logdir)
    assert step == 60 < failed_at  # nothing saved past the last good step, not even at the stop
    for name, value in checkpoint_tensors(logdir).items():
        if np.issubdtype(np.asarray(value).dtype, np.floating):
            assert np.isfinite(value).all(), name
    # The rate asked for now wins over the one in the checkpoint: training goes on normally.
    run_script("train_vae.py", *args, "--steps", 62)
    assert checkpoint_step(logdir) == 62


@pytest.mark.slow
def test_damaged_records(tmp_path, tiles):
    data = tiles.read_bytes()
    cut = tmp_path / "cut.tfrecord.gz"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    # Streamed (--cache-gb 0) to MirroredStrategy on two logical CPUs: the damaged tail is found
    # in the distributed input as well.
    result = run_script("train_vae.py", "--data", cut, "--logdir", tmp_path / "a", "--steps", 4, *SMALL,
                        "--cpu-replicas", 2, "--cache-gb", 0)
    assert "warning:" in result.stderr and "cut.tfrecord.gz" in result.stderr and "truncated" in result.stderr
    assert "2 replica(s)" in result.stderr
    assert checkpoint_step(tmp_path / "a") == 4
    assert all(np.isfinite(v) for _, v in event_scalars(tmp_path / "a")["loss"])
    garbage = tmp_path / "garbage.tfrecord.gz"
    garbage.write_bytes(os.urandom(5000))
    result = run_script("train_vae.py", "--data", garbage, "--logdir", tmp_path / "b", "--steps", 2, *SMALL,
                        check=False)
    assert_one_line_error(result, "garbage.tfrecord.gz")
    empty = tmp_path / "empty.tfrecord.gz"
    empty.write_bytes(b"")
    result = run_script("train_vae.py", "--data", empty, "--logdir", tmp_path / "c", "--steps", 2, *SMALL,
                        check=False)
    assert_one_line_error(result, "empty.tfrecord.gz")
    result = run_script("evaluate_embeddings.py", "--data", cut, "--models", tmp_path, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr


def test_interrupted_extraction_leaves_nothing(tmp_path):
    clip = synthetic.write_video(str(tmp_path / "long.mp4"), width=320, height=180, frames=1200)
    videos = []
    for i in range(8):  # the same clip under several names: a long extraction
        os.symlink(clip, tmp_path / f"take{i}.mp4")
        videos += ["--video", tmp_path / f"take{i}.mp4"]
    out = tmp_path / "out"
    out.mkdir()
    proc, log = start("extract_tiles.py", "--out", out / "tiles.tfrecord.gz", *videos, "--frame-step", 1,
                      "--size", "64x36")
    wait_for(log, proc, r"take1 frames")
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    log.seek(0)
    assert proc.returncode != 0 and "Traceback" not in log.read()
    assert os.listdir(out) == []


def limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))


def test_full_disk_and_unwritable_folder(tmp_path, media, tiles):
    out = tmp_path / "out"
    out.mkdir()
    result = subprocess.run([sys.executable, os.path.join(ROOT, "extract_tiles.py"), "--out", out / "t.tfrecord.gz",
                             "--video", media["clip"], "--images", media["paintings"], "--size", "64x36",
                             "--frame-step", "1"], capture_output=True, text=True, preexec_fn=limit_file_size)
    assert_one_line_error(result, "too large")
    assert os.listdir(out) == []
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    result = run_script("extract_tiles.py", "--out", blocker / "t.tfrecord.gz", "--images", media["paintings"],
                        check=False)
    assert_one_line_error(result, "a_file")
    result = run_script("preview_tiles.py", "--data", tiles, "--out", blocker / "sheet.png", check=False)
    assert_one_line_error(result, "a_file")


def test_hostile_file_names(tmp_path, media):
    odd = tmp_path / "it's a \"clip\"; touch PWNED $(id).mp4"
    os.symlink(media["clip"], odd)
    out = tmp_path / "tiles; rm -rf x.tfrecord.gz"
    run_script("extract_tiles.py", "--out", out, "--video", odd, "--images", media["paintings"], "--size", "64x36")
    manifest = json.loads((tmp_path / "tiles; rm -rf x.json").read_text())
    assert manifest["sources"][0]["name"] == "it's a \"clip\"; touch PWNED $(id)"
    assert not os.path.exists(os.path.join(ROOT, "PWNED")) and not (tmp_path / "PWNED").exists()


def test_run_settings_are_data_not_code(tmp_path, exported):
    """config.json is read as values of known types; a value that is code is refused, never run."""
    logdir = tmp_path / "vae"
    shutil.copytree(exported["vae"], logdir)
    config = json.loads((logdir / "config.json").read_text())
    marker = tmp_path / "PWNED"
    for field, value in (("codes", f"__import__('os').system('touch {marker}')"), ("filters", "lambda: 0"),
                         ("width", 64.5)):
        (logdir / "config.json").write_text(json.dumps({**config, field: value}))
        result = run_script("export_graphs.py", "--vae", logdir, "--out", tmp_path / "models", check=False)
        assert_one_line_error(result, "config.json", field)
        assert not marker.exists() and not (tmp_path / "models").exists()
    (logdir / "config.json").write_text("{not json")
    result = run_script("export_graphs.py", "--vae", logdir, "--out", tmp_path / "models", check=False)
    assert_one_line_error(result, "config.json")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env(cluster, index):
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}


@pytest.mark.slow
def test_two_workers_train_together(tmp_path, tiles):
    """Two workers on loopback: first sharing one logdir, then resuming as machines without shared
    storage do, each with a logdir of its own (the second one not there yet)."""
    data = str(tiles.parent / "*.tfrecord.gz")
    shared = tmp_path / "chief" / "vae"
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    for steps, logdirs in ((4, [shared, shared]), (6, [shared, tmp_path / "other" / "new" / "vae"])):
        procs = [start("train_vae.py", "--data", data, "--logdir", logdirs[i], "--steps", steps, "--batch-size", 8,
                       "--codes", 16, "--log-every", 2, "--preview-every", 6, "--save-every", 3,
                       env=worker_env(cluster, i)) for i in range(2)]
        for proc, log in procs:
            proc.wait(timeout=300)
            log.seek(0)
            text = log.read()
            assert proc.returncode == 0, text
            assert "2 replica(s)" in text
        assert checkpoint_step(shared) == steps
        if steps == 4:
            assert len(glob.glob(str(shared / "events.out.tfevents.*"))) == 1  # only the chief writes summaries
        assert not [p for p in os.listdir(shared) if p.startswith(".")]  # the other worker's saves are gone
    # The second run resumed: the other worker took the chief's state, with no gap and no repeat.
    assert [s for s, _ in event_scalars(shared)["loss"]] == [2, 4, 6]
    own = tmp_path / "other" / "new" / "vae"
    assert not os.path.exists(own / "checkpoints")  # only the chief's logdir holds what users see
    assert not [p for p in os.listdir(own) if p.startswith(".")]


@pytest.mark.slow
def test_lost_worker_is_named(tmp_path, tiles):
    data = str(tiles.parent / "*.tfrecord.gz")
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    procs = [start("train_vae.py", "--data", data, "--logdir", tmp_path / f"vae{i}", "--steps", 100000,
                   "--batch-size", 8, "--codes", 16, "--log-every", 1, "--preview-every", 100000,
                   "--save-every", 100000, env=worker_env(cluster, i)) for i in range(2)]
    (chief, log), (other, _) = procs
    try:
        wait_for(log, chief, r"steps:", timeout=240)
        time.sleep(2)
        other.kill()
        chief.wait(timeout=120)
        log.seek(0)
        stderr = log.read()
        assert chief.returncode not in (0, None)
        assert "Traceback" not in stderr and "grpc" not in stderr.lower(), stderr
        errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, stderr
        assert "worker 1" in errors[0] and cluster["worker"][1] in errors[0], errors[0]
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_worker_waiting_for_a_peer_says_so_and_stops(tmp_path, tiles, signum):
    data = str(tiles.parent / "*.tfrecord.gz")
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    proc, log = start("train_vae.py", "--data", data, "--logdir", tmp_path / "vae", "--steps", 5,
                      env=worker_env(cluster, 0))
    try:
        wait_for(log, proc, r"waiting for worker 1 at " + re.escape(cluster["worker"][1]), timeout=120)
        sent = time.time()
        proc.send_signal(signum)
        proc.wait(timeout=30)
        assert time.time() - sent < 5
    finally:
        if proc.poll() is None:
            proc.kill()
    log.seek(0)
    stderr = log.read()
    assert proc.returncode != 0 and "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "worker 1 at " + cluster["worker"][1] in errors[0], stderr

