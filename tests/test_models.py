"""The models, their training and their export."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import assert_error_before_tensorflow, assert_one_line_error, event_images, event_scalars, run_script
from vae import records


@pytest.mark.parametrize("size", [(320, 180), (96, 54), (64, 36), (50, 30)])
def test_shapes(size):
    from vae.model import VAEConfig, build_vae
    from vae.refiner import RefinerConfig, build_refiner
    width, height = size
    vae = build_vae(VAEConfig(width, height, codes=16))
    x = np.random.default_rng(0).random((2, height, width, 3), np.float32)
    mean, log_var = vae.encoder(x)
    assert mean.shape == (2, 16) and log_var.shape == (2, 16)
    out = np.asarray(vae.decoder(mean))
    assert out.shape == (2, height, width, 3)
    assert out.min() >= 0 and out.max() <= 1
    refined = np.asarray(build_refiner(RefinerConfig(width, height, filters=8, blocks=1))(x))
    assert refined.shape == (2, height, width, 3) and refined.min() >= 0 and refined.max() <= 1


def test_training_logs_and_loss_falls(exported):
    scalars = event_scalars(exported["vae"])
    for tag in ("loss", "reconstruction_loss", "kl_loss", "learning_rate", "tiles_per_second"):
        assert tag in scalars, scalars.keys()
    steps = [s for s, _ in scalars["loss"]]
    assert steps == list(range(5, 61, 5))
    losses = [v for _, v in scalars["loss"]]
    assert np.mean(losses[-2:]) < 0.7 * losses[0], losses
    assert scalars["learning_rate"][0][1] == pytest.approx(2e-4)
    for (_, total), (_, rec), (_, kl) in zip(scalars["loss"], scalars["reconstruction_loss"], scalars["kl_loss"]):
        assert total == pytest.approx(rec + kl, rel=1e-4)
    assert event_images(exported["vae"])["preview"] == [20, 40, 60]
    assert os.path.getsize(exported["vae"] / "progress.mp4") > 0
    refiner_scalars = event_scalars(exported["refiner"])
    for tag in ("loss", "tile_loss", "away_loss", "identity_loss"):
        assert tag in refiner_scalars
    assert event_images(exported["refiner"])["preview"] == [20]


@pytest.mark.slow
def test_resume_continues(tmp_path, tiles, exported):
    """The shared run (60 steps, scalars every 5) continued to 70 with scalars every step."""
    import shutil
    import tensorflow as tf
    data = str(tiles.parent / "*.tfrecord.gz")
    logdir = tmp_path / "vae"
    shutil.copytree(exported["vae"], logdir)
    args = ["--data", data, "--logdir", logdir, "--batch-size", 16, "--codes", 32, "--log-every", 1,
            "--save-every", 100, "--preview-every", 100, "--cache-gb", 1]  # tiles from memory after epoch 1
    before = dict(event_scalars(logdir)["loss"])
    result = run_script("train_vae.py", *args, "--steps", 70)
    assert "resumed" in result.stderr and "step 60" in result.stderr
    reader = tf.train.load_checkpoint(str(logdir / "checkpoints"))
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 70
    iterations = [k for k in reader.get_variable_to_shape_map() if "optimizer" in k and "iteration" in k]
    assert iterations and reader.get_tensor(iterations[0]) == 70  # Adam's state continued, not restarted
    losses = dict(event_scalars(logdir)["loss"])
    assert sorted(losses) == list(range(5, 61, 5)) + list(range(61, 71))  # no gap, no repeat, stops at 70
    # The resumed run starts from the trained weights: its first loss is near step 60's, far below step 5's.
    assert losses[61] < 0.8 * before[5]
    assert abs(losses[61] - before[60]) < 0.5 * (before[5] - before[60])
    # A further run with the same total has nothing left to do.
    result = run_script("train_vae.py", *args, "--steps", 70)
    assert "nothing to do" in result.stderr


OLD_RUN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "old_run")


@pytest.mark.slow
def test_runs_from_before_the_training_skeleton_resume(tmp_path, tiles, exported):
    """Checkpoints and config.json written by the code before training.run (tests/fixtures/old_run)."""
    import shutil
    import tensorflow as tf
    data = str(tiles.parent / "*.tfrecord.gz")
    vae = tmp_path / "vae"
    shutil.copytree(os.path.join(OLD_RUN, "vae"), vae)
    config = json.loads((vae / "config.json").read_text())
    assert "filters" not in config  # the old format; the fixture was made with 4 filters a layer to stay small
    (vae / "config.json").write_text(json.dumps({**config, "filters": [4] * 6}))
    result = run_script("train_vae.py", "--data", data, "--logdir", vae, "--steps", 8, "--batch-size", 8,
                        "--codes", 8, "--log-every", 1)
    assert "resumed" in result.stderr and "at step 6" in result.stderr
    reader = tf.train.load_checkpoint(str(vae / "checkpoints"))
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 8
    assert reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 8
    run_script("export_graphs.py", "--vae", vae, "--out", tmp_path / "models")
    assert json.loads((tmp_path / "models" / "model.json").read_text())["vae_step"] == 8
    refiner = tmp_path / "refiner"
    shutil.copytree(os.path.join(OLD_RUN, "refiner"), refiner)
    result = run_script("train_refiner.py", "--data", data, "--models", exported["models"], "--logdir", refiner,
                        "--steps", 6, "--filters", 2, "--blocks", 1, "--batch-size", 8, "--identity-steps", 2)
    assert "resumed" in result.stderr and "at step 4" in result.stderr
    assert tf.train.load_checkpoint(str(refiner / "checkpoints")).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 6
    # A resumed run that would change the architecture is refused, naming the setting.
    result = run_script("train_refiner.py", "--data", data, "--models", exported["models"], "--logdir", refiner,
                        "--steps", 7, "--filters", 3, "--blocks", 1, check=False)
    assert_one_line_error(result, "filters")


LOAD_ALONE = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    assert not any(m == "vae" or m.startswith("vae.") for m in sys.modules)
    folder, inputs, out = sys.argv[1:4]
    x = np.load(inputs)
    encoder = tf.saved_model.load(folder + "/encoder")
    decoder = tf.saved_model.load(folder + "/decoder")
    refiner = tf.saved_model.load(folder + "/refiner")
    codes = encoder.signatures["serving_default"](images=tf.constant(x["images"]))
    images = decoder.signatures["serving_default"](z=codes["mean"])["images"]
    refined = refiner.signatures["serving_default"](images=images)["images"]
    np.savez(out, mean=codes["mean"].numpy(), log_var=codes["log_var"].numpy(), decoded=images.numpy(),
             refined=refined.numpy())
""")


def test_export_loads_without_project_code(tmp_path, exported):
    import tensorflow as tf
    from vae.model import VAEConfig, build_vae
    from vae.refiner import RefinerConfig, build_refiner
    meta = json.loads((exported["models"] / "model.json").read_text())
    assert (meta["width"], meta["height"], meta["codes"], meta["vae_step"], meta["refiner_step"]) == (64, 36, 32, 60, 20)
    x = np.random.default_rng(3).random((5, 36, 64, 3), np.float32)
    np.savez(tmp_path / "in.npz", images=x)
    (tmp_path / "load.py").write_text(LOAD_ALONE)
    subprocess.run([sys.executable, "-I", str(tmp_path / "load.py"), str(exported["models"]), str(tmp_path / "in.npz"),
                    str(tmp_path / "out.npz")], check=True, cwd=tmp_path, capture_output=True)
    got = np.load(tmp_path / "out.npz")
    # The same checkpoints restored into freshly built models give the same numbers.
    vae = build_vae(VAEConfig(64, 36, 32))
    tf.train.Checkpoint(model=vae).restore(tf.train.latest_checkpoint(str(exported["vae"] / "checkpoints"))).expect_partial()
    refiner = build_refiner(RefinerConfig(64, 36))
    tf.train.Checkpoint(model=refiner).restore(
        tf.train.latest_checkpoint(str(exported["refiner"] / "checkpoints"))).expect_partial()
    mean, log_var = vae.encoder(x, training=False)
    decoded = vae.decoder(mean, training=False)
    np.testing.assert_allclose(got["mean"], mean, atol=1e-4)
    np.testing.assert_allclose(got["log_var"], log_var, atol=1e-4)
    np.testing.assert_allclose(got["decoded"], decoded, atol=1e-4)
    np.testing.assert_allclose(got["refined"], refiner(decoded, training=False), atol=1e-4)
    assert got["decoded"].std() > 0.01  # real weights, not a blank image


def test_export_again_keeps_the_rest(tmp_path, exported):
    import shutil
    models = tmp_path / "models"
    shutil.copytree(exported["models"], models)
    (models / "embeddings.json").write_text("{}")
    run_script("export_graphs.py", "--vae", exported["vae"], "--out", models)
    assert (models / "refiner" / "saved_model.pb").exists() and (models / "embeddings.json").exists()
    assert json.loads((models / "model.json").read_text())["refiner_step"] == 20
    assert not [p for p in os.listdir(models) if p.startswith(".")]


def test_training_errors(tmp_path, tiles, exported):
    data = str(tiles.parent / "*.tfrecord.gz")
    result = run_script("train_vae.py", "--data", tmp_path / "nothing*.tfrecord.gz", "--logdir", tmp_path / "l",
                        "--steps", 5, check=False)
    assert_one_line_error(result, "nothing*")
    # mixed tile sizes
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name, size in (("a", (64, 36)), ("b", (32, 18))):
        with records.RecordWriter(str(mixed / f"{name}.tfrecord.gz")) as w:
            w.write(records.encode_tile(np.zeros((size[1], size[0], 3), np.uint8), name, "images", 0))
    result = run_script("train_vae.py", "--data", mixed / "*.tfrecord.gz", "--logdir", tmp_path / "l", "--steps", 5,
                        check=False)
    assert_one_line_error(result, "64x36", "32x18")
    # an empty logdir to export from
    (tmp_path / "empty").mkdir()
    result = run_script("export_graphs.py", "--vae", tmp_path / "empty", "--out", tmp_path / "e", check=False)
    assert_one_line_error(result, "empty")
    assert not (tmp_path / "e").exists()
    # models that are not there
    result = run_script("train_refiner.py", "--data", data, "--models", tmp_path / "nowhere", "--logdir",
                        tmp_path / "r", "--steps", 5, check=False)
    assert_one_line_error(result, "nowhere")
    # a logdir that holds another run
    result = run_script("train_vae.py", "--data", data, "--logdir", exported["vae"], "--steps", 5, "--codes", 64,
                        check=False)
    assert_one_line_error(result, "codes")


def test_training_refuses_bad_input_before_tensorflow(tmp_path, tiles, exported):
    """What needs no TensorFlow is checked before its seconds of start-up."""
    data = str(tiles.parent / "*.tfrecord.gz")
    assert_error_before_tensorflow("train_vae.py", "--data", tmp_path / "nothing*.tfrecord.gz", "--logdir",
                                   tmp_path / "l", "--steps", 5, fragments=["nothing*"])
    assert_error_before_tensorflow("train_vae.py", "--data", data, "--logdir", exported["vae"], "--steps", 5,
                                   "--codes", 64, fragments=["codes"])
    assert_error_before_tensorflow("train_refiner.py", "--data", data, "--models", tmp_path / "nowhere", "--logdir",
                                   tmp_path / "r", "--steps", 5, fragments=["nowhere"])
    assert_error_before_tensorflow("export_graphs.py", "--vae", tmp_path, "--out", tmp_path / "e",
                                   fragments=[str(tmp_path)])
    (tmp_path / "notes.tfrecord.gz").write_text("not records")
    assert_error_before_tensorflow("train_vae.py", "--data", tmp_path / "notes.tfrecord.gz", "--logdir",
                                   tmp_path / "l", "--steps", 5, fragments=["notes.tfrecord.gz", "gzip"])
    # The run's settings are bounded where they are declared (vae/run_config.py), as a kind's are.
    for option, value, fragment in (("--steps", 0, "--steps must be at least 1"),
                                    ("--batch-size", 0, "--batch-size must be at least 1"),
                                    ("--learning-rate", 0, "--learning-rate must be above 0"),
                                    ("--save-every", 0, "--save-every must be at least 1"),
                                    ("--cache-gb", -1, "--cache-gb must be at least 0"),
                                    ("--kl-weight", -1, "--kl-weight must be at least 0")):
        arguments = ["--steps", 5, option, value] if option != "--steps" else [option, value]
        assert_error_before_tensorflow("train_vae.py", "--data", data, "--logdir", tmp_path / "l", *arguments,
                                       fragments=[fragment])
    # A setting of the style refiner given to the plain one (no --style) is refused, not ignored.
    assert_error_before_tensorflow("train_refiner.py", "--data", data, "--models", exported["models"], "--logdir",
                                   tmp_path / "r", "--steps", 5, "--disc-filters", 8,
                                   fragments=["--disc-filters", "style_refiner"])
    assert not (tmp_path / "l").exists() and not (tmp_path / "e").exists()
