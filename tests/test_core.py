"""The training core: a train state of named models and optimizers, the style refiner's two of
each, one asserted restore for training and export, and a model kind added as one module that
export_graphs.py finds by name."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, assert_one_line_error, event_images, event_scalars, run_script
from vae import records

TESTS = os.path.join(ROOT, "tests")


def checkpoint_tensors(logdir):
    import tensorflow as tf
    reader = tf.train.load_checkpoint(str(logdir / "checkpoints"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}


@pytest.mark.slow
def test_a_model_kind_in_its_own_module_trains_resumes_and_exports(tmp_path, tiles):
    """tests/toy_kind.py, a kind outside vae/kinds: trained by a script of a few lines, and
    exported by export_graphs.py, which imports it by the module name config.json records."""
    import tensorflow as tf
    from vae import export, kinds
    data = str(tiles.parent / "*.tfrecord.gz")
    logdir = tmp_path / "toy"
    run_script("tests/train_toy.py", "--data", data, "--logdir", logdir, "--steps", 6, "--batch-size", 8,
               "--log-every", 1, "--preview-every", 3, "--save-every", 3)
    config = json.loads((logdir / "config.json").read_text())
    assert config["model"] == "toy" and config["kind_module"] == "toy_kind"
    assert config["codes"] == 8 and config["noise"] == 0.0
    # The run's own settings are recorded beside the kind's (vae/run_config.py's RunConfig).
    assert (config["steps"], config["batch_size"], config["save_every"], config["learning_rate"]) == (6, 8, 3, 1e-3)
    # Resumed with a setting that may change (--noise) and none of the others repeated.
    result = run_script("tests/train_toy.py", "--data", data, "--logdir", logdir, "--steps", 9, "--batch-size", 8,
                        "--noise", 0.05, "--log-every", 1)
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
    result = run_script("tests/train_toy.py", "--data", data, "--logdir", logdir, "--steps", 10, "--codes", 4,
                        check=False)
    assert_one_line_error(result, "codes")
    # Without its folder on the path, export_graphs.py cannot import the kind: it says so, writes nothing.
    models = tmp_path / "models"
    result = run_script("export_graphs.py", "--vae", logdir, "--out", models, check=False,
                        env={"PYTHONPATH": ""})
    assert_one_line_error(result, "'toy'", "toy_kind", "PYTHONPATH")
    assert not models.exists()
    # With it, export_graphs.py exports the toy as any VAE, checked and loaded as any models folder.
    run_script("export_graphs.py", "--vae", logdir, "--out", models, env={"PYTHONPATH": TESTS})
    meta = json.loads((models / "model.json").read_text())
    assert meta == {"width": 64, "height": 36, "codes": 8, "vae_step": 9}
    loaded = export.Models(str(models))
    # The SavedModels compute what the trained networks compute, restored here from the checkpoint.
    kind, stored = kinds.load_run(str(logdir))
    assert kind is kinds.find("toy", kind_module="toy_kind")
    _, networks, step = export.restore_run(kind, stored, str(logdir))
    assert step == 9
    net = networks["model"]
    images = np.random.default_rng(0).random((3, 36, 64, 3), dtype=np.float32)
    mean, _ = loaded.encode(tf.constant(images))
    expected_mean, _ = net.get_layer("encoder")(images)
    np.testing.assert_allclose(mean.numpy(), np.asarray(expected_mean), rtol=1e-5, atol=1e-5)
    decoded = loaded.decode(mean).numpy()
    np.testing.assert_allclose(decoded, np.asarray(net.get_layer("decoder")(expected_mean)), rtol=1e-5, atol=1e-5)
    assert decoded.shape == (3, 36, 64, 3)
    assert np.abs(decoded[0] - decoded[1]).max() > 1e-4  # the codes, and so the pictures, differ per image
    # TensorFlow alone loads them, without this project's code.
    alone = subprocess.run([sys.executable, "-c", (
        "import sys, numpy as np, tensorflow as tf\n"
        f"f = tf.saved_model.load({str(models / 'encoder')!r}).signatures['serving_default']\n"
        "print(f(images=tf.zeros([2, 36, 64, 3]))['mean'].shape)")],
        capture_output=True, text=True, cwd=str(tmp_path), env={**os.environ, "PYTHONPATH": ""}, timeout=300)
    assert alone.returncode == 0 and "(2, 8)" in alone.stdout, alone.stderr[-2000:]


def test_a_kind_is_found_by_its_config_name(tmp_path):
    """Each kind is a module of vae/kinds named as config.json's "model"; another name is one error."""
    from vae import kinds
    assert {"vae", "refiner", "style_refiner"} <= set(kinds.built_in())
    for name in ("vae", "refiner", "style_refiner"):
        kind = kinds.find(name)
        assert kind.name == name and kinds.module_of(kind) is None
    # Finding a kind, the toy's too, loads no TensorFlow: scripts check before its start-up.
    free = subprocess.run([sys.executable, "-c", (
        "import sys\nfrom vae import kinds\n"
        "found = [kinds.find(n) for n in kinds.built_in()] + [kinds.find('toy', kind_module='toy_kind')]\n"
        "print(len(found), 'tensorflow' in sys.modules, 'keras' in sys.modules)")],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": TESTS}, timeout=120)
    assert free.stdout.split() == ["4", "False", "False"], free.stderr[-2000:]
    (tmp_path / "config.json").write_text(json.dumps({"model": "painting", "width": 64, "height": 36}))
    result = run_script("export_graphs.py", "--vae", tmp_path, "--out", tmp_path / "out", check=False)
    assert_one_line_error(result, "unknown model type 'painting'", "known: refiner, style_refiner, vae")
    (tmp_path / "config.json").write_text(json.dumps({"model": "toy", "kind_module": "os; rm", "width": 64}))
    result = run_script("export_graphs.py", "--vae", tmp_path, "--out", tmp_path / "out", check=False)
    assert_one_line_error(result, "not a Python module name")
    # A module that exists but holds no kind of that name is refused too.
    (tmp_path / "config.json").write_text(json.dumps({"model": "toy", "kind_module": "json", "width": 64}))
    result = run_script("export_graphs.py", "--vae", tmp_path, "--out", tmp_path / "out", check=False)
    assert_one_line_error(result, "json defines no KIND named 'toy'")


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


def test_records_of_another_tile_size_are_refused_alike(tmp_path, evaluated):
    """evaluate_embeddings.py and both refiners ask the one check, which names both sizes."""
    data = constant_records(tmp_path / "small.tfrecord.gz", size=(32, 18))
    models = tmp_path / "models"
    shutil.copytree(evaluated["models"], models)
    runs = [("evaluate_embeddings.py", "--data", data, "--models", models),
            ("train_refiner.py", "--data", data, "--models", models, "--logdir", tmp_path / "plain", "--steps", 1),
            ("train_refiner.py", "--data", data, "--models", models, "--logdir", tmp_path / "styled", "--steps", 1,
             "--style", "paintings")]
    for script, *args in runs:
        result = run_script(script, *args, check=False)
        assert_one_line_error(result, f"the models in {models} take 64x36 tiles, the records hold 32x18")
    assert (models / "embeddings.json").read_bytes() == (evaluated["models"] / "embeddings.json").read_bytes()


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
