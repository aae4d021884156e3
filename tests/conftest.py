"""Shared fixtures: synthetic media and a tiny trained model made once per test run, and
running scripts as a user does."""
import fcntl
import functools
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TILE = (64, 36)


def run_script(script, *args, check=True, timeout=600, env=None):
    """Run one of the project's scripts in a subprocess; return the CompletedProcess."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)],
                            capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"{script} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def assert_one_line_error(result, *fragments):
    """The contract's failure: non-zero status, one `error:` line naming the problem, no traceback."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def shared_folder(tmp_path_factory, name, build):
    """A folder that build(folder) fills once per test run, also when pytest-xdist runs the tests
    in several worker processes: the first worker to need it builds it under a lock, the others
    wait for it and use the same files."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    base = tmp_path_factory.getbasetemp()
    root = base.parent / f"shared-{run}" if run else base / "shared"
    root.mkdir(exist_ok=True)
    folder = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: runs several scripts (tens of seconds); scheduled early")


def pytest_collection_modifyitems(items):
    """Tests that need the trained model first: pytest-xdist hands each worker a slice of the
    list in order, so the first worker starts training it at once while the last runs tests that
    need no model. Within each kind the slow tests go first, so that the workers, which take over
    each other's last tests, end at about the same time."""
    items.sort(key=lambda item: (not {"exported", "evaluated", "spatial"} & set(item.fixturenames),
                                 item.get_closest_marker("slow") is None))


def assert_error_before_tensorflow(script, *args, fragments=()):
    """The contract's one-line error, given before TensorFlow was imported, so that a typo costs
    no TensorFlow start-up: Python's import-time report (-X importtime) must not name it."""
    result = run_script(script, *args, check=False, env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert_one_line_error(result, *fragments)
    modules = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
               if line.startswith("import time:")]
    assert "vae.cli" in modules, result.stderr[-3000:]  # the report is there
    assert not [m for m in modules if m.split(".")[0] == "tensorflow"], f"{script} imported TensorFlow first"


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """Synthetic paintings and a letterboxed clip with audio."""
    def build(folder):
        from vae import synthetic
        synthetic.write_paintings(str(folder / "paintings"), count=8, seed=1)
        synthetic.write_video(str(folder / "clip.mp4"), seed=1, width=160, height=90, frames=40, letterbox=10,
                              audio=True)

    folder = shared_folder(tmp_path_factory, "media", build)
    return {"folder": folder, "paintings": folder / "paintings", "clip": str(folder / "clip.mp4")}


@pytest.fixture(scope="session")
def tiles(media, tmp_path_factory):
    """Records extracted from the synthetic media at the test tile size."""
    def build(folder):
        run_script("extract_tiles.py", "--out", folder / "tiles.tfrecord.gz", "--video", media["clip"], "--images",
                   media["paintings"], "--size", f"{TILE[0]}x{TILE[1]}", "--frame-step", 1, "--crops-per-image", 5)

    return shared_folder(tmp_path_factory, "data", build) / "tiles.tfrecord.gz"


def event_scalars(logdir):
    """{tag: [(step, value)]} from a logdir's event files, read with TensorBoard's own reader."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0, "images": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["tensors"]:
        events = acc.Tensors(tag)
        if events and events[0].tensor_proto.dtype != tf.string.as_datatype_enum:
            out[tag] = [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events]
    return out


def event_images(logdir):
    """{tag: [steps]} of image summaries in a logdir."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    acc.Reload()
    return {tag: [e.step for e in acc.Tensors(tag)] for tag in acc.Tags()["tensors"]
            if acc.Tensors(tag)[0].tensor_proto.dtype == tf.string.as_datatype_enum}


TRAIN_SCHEDULE = ["--batch-size", 16, "--log-every", 5, "--preview-every", 20, "--save-every", 20]
TRAIN_FAST = TRAIN_SCHEDULE + ["--codes", 32]
# What suits a spatial VAE on small tiles (as doc/real_run.sh and make demo train it): a light KL
# term, since few pixels outweigh it, and a quicker learning rate.
SPATIAL_TRAINING = TRAIN_SCHEDULE + ["--kl-weight", 0.05, "--learning-rate", 1e-3]


@pytest.fixture(scope="session")
def exported(tiles, tmp_path_factory):
    """A VAE and a refiner trained briefly on the test tiles, exported."""
    data = str(tiles.parent / "*.tfrecord.gz")

    def build(root):
        run_script("train_vae.py", "--data", data, "--logdir", root / "vae", "--steps", 60, *TRAIN_FAST)
        run_script("export_graphs.py", "--vae", root / "vae", "--out", root / "models")
        run_script("train_refiner.py", "--data", data, "--models", root / "models", "--logdir", root / "refiner",
                   "--steps", 20, "--identity-steps", 10, "--batch-size", 16, "--log-every", 5)
        run_script("export_graphs.py", "--vae", root / "vae", "--refiner", root / "refiner", "--out", root / "models")

    root = shared_folder(tmp_path_factory, "run", build)
    return {"root": root, "models": root / "models", "vae": root / "vae", "refiner": root / "refiner", "data": data}


@pytest.fixture(scope="session")
def evaluated(exported, tmp_path_factory):
    """The exported models with embeddings.json, and the report pictures."""
    def build(report):
        result = run_script("evaluate_embeddings.py", "--data", exported["data"], "--models", exported["models"],
                            "--report", report)
        (report / "stdout.txt").write_text(result.stdout)
        (report / "stderr.txt").write_text(result.stderr)

    report = shared_folder(tmp_path_factory, "report", build)
    return {**exported, "report": report, "stdout": (report / "stdout.txt").read_text(),
            "stderr": (report / "stderr.txt").read_text()}


@pytest.fixture(scope="session")
def spatial(tiles, tmp_path_factory):
    """A spatial VAE (a map of 16 channels at 1/8) trained with the steps and batch of the global
    one in `exported` and nothing but --latent spatial (so its kind's defaults, which
    SPATIAL_TRAINING spells out), a small refiner, both exported, and evaluated with a report."""
    data = str(tiles.parent / "*.tfrecord.gz")

    def build(root):
        run_script("train_vae.py", "--data", data, "--logdir", root / "vae", "--steps", 60, "--latent", "spatial",
                   *TRAIN_SCHEDULE)  # the spatial kind's own defaults (SPATIAL_TRAINING's settings)
        run_script("export_graphs.py", "--vae", root / "vae", "--out", root / "models")
        run_script("train_refiner.py", "--data", data, "--models", root / "models", "--logdir", root / "refiner",
                   "--steps", 10, "--identity-steps", 5, "--batch-size", 16, "--log-every", 5, "--filters", 8,
                   "--blocks", 1)
        run_script("export_graphs.py", "--vae", root / "vae", "--refiner", root / "refiner", "--out", root / "models")
        result = run_script("evaluate_embeddings.py", "--data", data, "--models", root / "models", "--report",
                            root / "report")
        (root / "evaluate.txt").write_text(result.stdout)

    root = shared_folder(tmp_path_factory, "spatial", build)
    return {"root": root, "models": root / "models", "vae": root / "vae", "refiner": root / "refiner", "data": data,
            "report": root / "report", "stdout": (root / "evaluate.txt").read_text()}


def flickering_copy(source, path, amplitude):
    """`source` with its brightness going up and down by `amplitude` every other frame."""
    from vae import ffmpeg
    subprocess.run([ffmpeg.exe(), "-v", "error", "-i", str(source), "-vf",
                    f"eq=brightness='{amplitude}*(2*mod(n,2)-1)':eval=frame", "-c:v", "libx264", "-crf", "12",
                    str(path)], check=True)
    return path


def decode(path, size=None):
    """(VideoInfo, uint8 frames) of a video decoded independently, as shown, at `size` or its own."""
    from vae import probe
    from vae.decode import read_frames
    import numpy as np
    meta = probe.probe(str(path))
    frames = [f.image for f in read_frames(meta, size or (meta.width, meta.height), probe.Crop())]
    return meta, np.stack(frames)


@functools.lru_cache(maxsize=4)
def loaded_models(models_dir):
    """The exported encoder, decoder and refiner of a folder, loaded once per test process."""
    import tensorflow as tf
    return {k: tf.saved_model.load(os.path.join(models_dir, k)) for k in ("encoder", "decoder", "refiner")}


def expected_first_frame(models_dir, frame, alpha, beta, source="clip", style="paintings", style_mean=None):
    """The contract's formula for one tile, computed with the exported models called directly."""
    import json
    import numpy as np
    import tensorflow as tf
    embeddings = json.loads((models_dir / "embeddings.json").read_text())["sources"]
    loaded = loaded_models(str(models_dir))
    x = tf.constant(frame[None].astype(np.float32) / 255)
    z = loaded["encoder"].signatures["serving_default"](images=x)["mean"]
    style_mean = np.float32(embeddings[style]["mean"]) if style_mean is None else np.float32(style_mean)
    z = z - alpha * np.float32(embeddings[source]["mean"]) + beta * style_mean
    out = loaded["decoder"].signatures["serving_default"](z=z)["images"]
    out = loaded["refiner"].signatures["serving_default"](images=out)["images"].numpy()[0]
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)
