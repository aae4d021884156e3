"""The training core: a train state of named models and optimizers, the style refiner's two of
each, one asserted restore for training and export, and a model type added in one file."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, event_images, event_scalars, run_script
from vae import records

TOY = os.path.join(ROOT, "tests", "toy_kind.py")


def checkpoint_tensors(logdir):
    import tensorflow as tf
    reader = tf.train.load_checkpoint(str(logdir / "checkpoints"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def run_toy(*args, check=True):
    result = subprocess.run([sys.executable, TOY, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                            timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(result.stderr[-3000:])
    return result


@pytest.mark.slow
def test_a_model_type_in_one_file_trains_resumes_and_exports(tmp_path, tiles):
    from vae import export
    data = str(tiles.parent / "*.tfrecord.gz")
    logdir = tmp_path / "toy"
    run_toy("train", "--data", data, "--logdir", logdir, "--steps", 6, "--batch-size", 8, "--log-every", 1,
            "--preview-every", 3, "--save-every", 3)
    config = json.loads((logdir / "config.json").read_text())
    assert config["model"] == "toy" and config["codes"] == 8 and config["noise"] == 0.0
    # Resumed with a setting that may change (--noise) and none of the others repeated.
    result = run_toy("train", "--data", data, "--logdir", logdir, "--steps", 9, "--batch-size", 8, "--noise", 0.05,
                     "--log-every", 1)
    assert "resumed" in result.stderr and "at step 6" in result.stderr
    assert json.loads((logdir / "config.json").read_text())["noise"] == 0.05
    tensors = checkpoint_tensors(logdir)
    assert tensors["step/.ATTRIBUTES/VARIABLE_VALUE"] == 9
    assert tensors["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"] == 9
    scalars = event_scalars(logdir)
    assert [s for s, _ in scalars["loss"]] == list(range(1, 10))
    assert scalars["learning_rate"][0][1] == pytest.approx(1e-3)
    assert event_images(logdir)["preview"] == [3, 6, 9]  # and at the last step of each run
    # A setting that shapes the checkpoint may not change on resume.
    result = run_toy("train", "--data", data, "--logdir", logdir, "--steps", 10, "--codes", 4, check=False)
    assert_one_line_error(result, "codes")
    # Exported by the same code as export_graphs.py, checked and loaded as any models folder.
    run_toy("export", logdir, tmp_path / "models")
    meta = json.loads((tmp_path / "models" / "model.json").read_text())
    assert meta == {"width": 64, "height": 36, "codes": 8, "vae_step": 9}
    models = export.Models(str(tmp_path / "models"))
    mean, _ = models.encode(np.full((2, 36, 64, 3), 0.5, np.float32))
    assert mean.shape == (2, 8)
    assert models.decode(mean).shape == (2, 36, 64, 3)


def test_train_state_holds_every_model(tmp_path):
    """The sync, the finite check and the learning rates cover every model and optimizer."""
    import keras
    from vae import training

    def small(name):
        x = keras.Input((4,))
        return keras.Model(x, keras.layers.Dense(2, name=f"{name}_dense")(x), name=name)

    state = training.TrainState({"model": small("g"), "discriminator": small("d")},
                                {"model": keras.optimizers.Adam(1e-3), "discriminator": keras.optimizers.Adam(5e-4)})
    ids = {id(v) for v in state.variables}
    for name in ("model", "discriminator"):
        assert all(id(v) in ids for v in state.models[name].variables)
        assert all(id(v) in ids for v in state.optimizers[name].variables)
    assert state.learning_rates() == pytest.approx({"learning_rate": 1e-3, "discriminator_learning_rate": 5e-4})
    assert state.all_finite()
    kernel = state.models["discriminator"].get_layer("d_dense").kernel
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    assert not state.all_finite()
    # Each part is in the checkpoint under its own name.
    path = state.checkpoint.save(str(tmp_path / "ckpt"))
    import tensorflow as tf
    names = {k.split("/")[0] for k in tf.train.load_checkpoint(path).get_variable_to_shape_map()}
    assert {"optimizer", "discriminator_optimizer", "step"} <= names


def constant_records(path, size=(64, 36)):
    """Records whose tiles are all alike per source: any shuffle gives the same batches, so
    two runs that draw the same random numbers reach the same weights."""
    width, height = size
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (height, width, 3), np.uint8)
    painting = rng.integers(0, 256, (height, width, 3), np.uint8)
    with records.RecordWriter(str(path)) as writer:
        for i in range(32):
            writer.write(records.encode_tile(clip, "clip", "video", i))
            writer.write(records.encode_tile(painting, "paintings", "images", i))
    return path


STYLE_RUN = ["--style", "paintings", "--batch-size", 4, "--identity-steps", 2, "--filters", 4, "--blocks", 1,
             "--disc-filters", 4, "--disc-layers", 2, "--log-every", 1, "--preview-every", 3, "--save-every", 100]


@pytest.mark.slow
def test_style_refiner_two_optimizers_resume_exactly(tmp_path, evaluated, media):
    data = constant_records(tmp_path / "same.tfrecord.gz")
    common = ["--data", data, "--models", evaluated["models"], *STYLE_RUN]
    whole, halves = tmp_path / "whole", tmp_path / "halves"
    run_script("train_refiner.py", *common, "--logdir", whole, "--steps", 6)
    run_script("train_refiner.py", *common, "--logdir", halves, "--steps", 3)
    result = run_script("train_refiner.py", *common, "--logdir", halves, "--steps", 6)
    assert "resumed" in result.stderr and "at step 3" in result.stderr
    a, b = checkpoint_tensors(whole), checkpoint_tensors(halves)
    assert set(a) == set(b)
    # Both optimizers stepped every time, and the discriminator is in the checkpoint.
    assert a["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"] == 6
    assert a["discriminator_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"] == 6
    moments = [k for k in a if k.startswith("discriminator_optimizer/_variables")]
    assert moments and sum(np.abs(a[k]).sum() > 0 for k in moments) > len(moments) / 2  # Adam's moments moved
    # Stopped and resumed, the run reaches the weights of one that was not stopped.
    for key in a.keys() - {"save_counter/.ATTRIBUTES/VARIABLE_VALUE"}:  # saves: one more when stopped
        np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-6, err_msg=key)
    scalars = event_scalars(whole)
    for tag in ("disc_real", "disc_fake", "adaptive_weight", "learning_rate", "discriminator_learning_rate",
                "content_loss", "steady_loss", "identity_loss"):
        assert tag in scalars, tag
    weights = dict(scalars["adaptive_weight"])
    assert weights[1] == weights[2] == 0 and weights[3] > 0  # the adversarial term starts after the identity steps
    assert event_images(whole)["preview"] == [3, 6]
    config = json.loads((whole / "config.json").read_text())
    assert config["model"] == "style_refiner" and config["style"] == ["paintings"]
    # Exported, the refiner says which style it learned; mogrify says so, and warns of another.
    models = tmp_path / "models"
    shutil.copytree(evaluated["models"], models)
    run_script("export_graphs.py", "--vae", evaluated["vae"], "--refiner", whole, "--out", models)
    assert json.loads((models / "model.json").read_text())["refiner_style"] == ["paintings"]
    result = run_script("mogrify_video.py", media["clip"], tmp_path / "o.mp4", "--models", models, "--duration", 0.4)
    assert "trained toward 'paintings'" in result.stderr and "warning" not in result.stderr
    result = run_script("mogrify_video.py", media["clip"], tmp_path / "o.mp4", "--models", models, "--style", "clip",
                        "--duration", 0.4)
    assert "warning: --style asks for 'clip' but the refiner was trained toward 'paintings'" in result.stderr
    # The plain refiner exported over it leaves no style behind.
    run_script("export_graphs.py", "--vae", evaluated["vae"], "--refiner", evaluated["refiner"], "--out", models)
    assert "refiner_style" not in json.loads((models / "model.json").read_text())
    # Options of the other kind of refiner are refused, naming them.
    result = run_script("train_refiner.py", *common, "--logdir", whole, "--steps", 7, "--away-weight", 1, check=False)
    assert_one_line_error(result, "--away-weight")


def test_changed_layout_fails_export(tmp_path, exported):
    """A checkpoint that does not fit the model its config.json describes is one error, never
    random weights; nothing is written."""
    for run, field, value in (("refiner", "blocks", 5), ("vae", "codes", 16)):
        logdir = tmp_path / run
        shutil.copytree(exported[run], logdir)
        config = json.loads((logdir / "config.json").read_text())
        (logdir / "config.json").write_text(json.dumps({**config, field: value}))
        args = ["--vae", logdir] if run == "vae" else ["--vae", exported["vae"], "--refiner", logdir]
        result = run_script("export_graphs.py", *args, "--out", tmp_path / "out", check=False)
        assert_one_line_error(result, str(logdir), "does not fit")
        assert not (tmp_path / "out").exists()
