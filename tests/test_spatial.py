"""Spatial codes (train_vae.py --latent spatial): a code map, fully convolutional models that run
at any size, and everything downstream of them (export, safety, evaluation, reports)."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from conftest import (SPATIAL_TRAINING, assert_error_before_tensorflow, assert_one_line_error, decode,
                      event_images, event_scalars, loaded_models, run_script)
from vae import configs, kinds, records
from vae.kinds.refiner import RefinerConfig
from vae.kinds.vae import FILTERS, VAEConfig, spatial_layers
from vae.cli import UserError

D, CHANNELS = 8, 16  # the defaults with --latent spatial


def ceil_div(a, b):
    return -(-a // b)


@pytest.mark.parametrize("size,upsample,border", [((64, 36), "shuffle", "zeros"), ((128, 72), "shuffle", "zeros"),
                                                  ((77, 45), "shuffle", "zeros"), ((77, 45), "resize", "zeros"),
                                                  ((77, 45), "resize", "mirror"), ((64, 36), "shuffle", "mirror")])
def test_shapes_at_any_size(size, upsample, border):
    """One spatial VAE and refiner, built once, at tile sizes that are and are not multiples of d,
    with each decoder a run may hold: resizing then convolving (at the lower size with a mirrored
    border, as new runs do, or at the doubled size with zeros, as earlier runs did), and sub-pixel
    inner stages (--upsample shuffle)."""
    from vae import model, refiner
    width, height = size
    filters, kernels = spatial_layers(D)
    vae = model.build_vae(VAEConfig(64, 36, codes=CHANNELS, latent="spatial", filters=filters,
                                    kernels=kernels, upsample=upsample, resize_border=border))
    kinds_of_layer = {type(layer).__name__ for layer in vae.decoder.layers}
    assert ("DepthToSpace2x" in kinds_of_layer) == (upsample == "shuffle")
    assert ("Upsample2x" in kinds_of_layer) == (border == "zeros") != ("ResizeConv2D" in kinds_of_layer)
    x = np.random.default_rng(0).random((2, height, width, 3), np.float32)
    mean, log_var = vae.encoder(x)
    code = (2, ceil_div(height, D), ceil_div(width, D), CHANNELS)
    assert mean.shape == code and log_var.shape == code
    out = np.asarray(vae.decoder(mean))
    assert out.shape == (2, code[1] * D, code[2] * D, 3) and out.min() >= 0 and out.max() <= 1
    assert vae.reconstruct(x).shape == x.shape  # cut back to the tile
    net = refiner.build_refiner(RefinerConfig(64, 36, filters=4, blocks=1), any_size=True)
    assert np.asarray(net(x)).shape == x.shape
    assert not [layer for layer in vae.encoder.layers + vae.decoder.layers
                if type(layer).__name__ in ("Dense", "Conv2DTranspose")]


def test_config_kinds(tmp_path):
    """config.json records the kind; one without it (older runs) is global; nonsense is refused."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model": "vae", "width": 64, "height": 36, "codes": 8}))
    old = configs.load_config(str(tmp_path), kinds.find("vae"))
    assert (old.latent, old.filters) == ("global", FILTERS)
    path.write_text(json.dumps({"model": "vae", "width": 64, "height": 36, "codes": 16, "latent": "spatial",
                                "downsample": 4, "filters": [8, 16], "kernels": [5, 3]}))
    new = configs.load_config(str(tmp_path), kinds.find("vae"))
    # A spatial run from before the sub-pixel decoder keeps the decoder its checkpoint holds.
    assert (new.latent, new.downsample, new.filters, new.upsample) == ("spatial", 4, (8, 16), "resize")
    assert new.resize_border == "zeros"  # and the border its decoder learned with
    for bad, fragment in (({"latent": "pixels"}, "latent"), ({"latent": 3}, "latent"), ({"downsample": 6}, "downsample")):
        path.write_text(json.dumps({"model": "vae", "width": 64, "height": 36, **bad}))
        with pytest.raises(UserError) as e:
            configs.load_config(str(tmp_path), kinds.find("vae"))
        assert fragment in str(e.value) and str(path) in str(e.value)


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_resizing_convolution_at_the_lower_size_is_resize_mirror_convolve(kernel_size):
    """A new decoder's stage, computed at the lower size, against what it stands for, done the
    long way: TensorFlow's bilinear 2x resize, a mirrored border, then the convolution."""
    import tensorflow as tf
    from vae import model
    for shape in ((2, 9, 13, 5), (1, 4, 6, 5)):
        layer = model.ResizeConv2D(7, kernel_size, use_bias=True)
        x = tf.random.stateless_normal(shape, seed=(1, kernel_size))
        layer.build(shape)
        layer.bias.assign(tf.range(7, dtype=tf.float32))  # a bias that is not zeros, to be added once
        got = layer(x)
        r = kernel_size // 2
        resized = tf.image.resize(x, (2 * shape[1], 2 * shape[2]), method="bilinear")
        mirrored = tf.pad(resized, [[0, 0], [r, r], [r, r], [0, 0]], "SYMMETRIC")
        expected = tf.nn.conv2d(mirrored, layer.kernel, 1, "VALID") + layer.bias
        assert got.shape == expected.shape == (shape[0], 2 * shape[1], 2 * shape[2], 7)
        assert np.abs(np.asarray(got - expected)).max() < 1e-5 * np.abs(np.asarray(expected)).max()


def assert_trains_as_it_infers(layer, x, weights):
    """The layer's output and the gradients of input, kernel and bias (for the loss sum(y * weights),
    which weighs every output) are the same in training as out of it, to 1e-5 of the largest."""
    import tensorflow as tf
    results = {}
    for training in (True, False):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=training)
            loss = tf.reduce_sum(y * weights)
        results[training] = (y, *tape.gradient(loss, [x, layer.kernel, layer.bias]))
    for ours, theirs in zip(results[True], results[False]):
        assert np.abs(np.asarray(ours - theirs)).max() < 1e-5 * np.abs(np.asarray(theirs)).max()


@pytest.mark.parametrize("channels", [(8, 3), (3, 8)])
def test_the_decoder_stage_trains_with_the_gradients_tensorflow_gives(channels):
    """In training a stage is differentiated its own way (model.conv_valid: the input's gradient
    as a forward convolution, the kernel's as one matmul where there are fewer outputs than
    inputs, as in the last stage); the picture and both gradients are TensorFlow's own."""
    import tensorflow as tf
    from vae import model
    c_in, c_out = channels
    x = tf.random.stateless_normal((2, 9, 13, c_in), seed=(2, c_in))
    layer = model.ResizeConv2D(c_out, 5, use_bias=True)
    layer.build(x.shape)
    weights = tf.random.stateless_normal((2, 18, 26, c_out), seed=(3, c_out))  # a loss that weighs every output
    assert_trains_as_it_infers(layer, x, weights)


@pytest.mark.parametrize("kernel_size", [3, 4])
def test_the_encoders_heads_train_with_the_gradients_tensorflow_gives(kernel_size):
    """The heads (model.SameConv2D) pad their input and go through conv_valid in training; the
    codes and the gradients of input, kernel and bias are Keras's own "same" convolution's."""
    import tensorflow as tf
    from vae import model
    x = tf.random.stateless_normal((2, 7, 10, 12), seed=(4, kernel_size))
    layer = model.SameConv2D(5, kernel_size, padding="same")
    layer.build(x.shape)
    layer.bias.assign(tf.random.stateless_normal((5,), seed=(5, kernel_size)))
    weights = tf.random.stateless_normal((2, 7, 10, 5), seed=(6, kernel_size))
    assert_trains_as_it_infers(layer, x, weights)
    assert layer(x, training=True).shape == x.shape[:3] + (5,)


OLD_SPATIAL_RUN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "old_spatial_run")


def test_spatial_runs_from_before_the_lower_size_decoder_decode_as_before_and_resume(tmp_path, tiles):
    """A spatial checkpoint written before the decoder's stages ran at the lower size
    (tests/fixtures/old_spatial_run) exports to the same pictures that code gave, and resumes."""
    import tensorflow as tf
    data = str(tiles.parent / "*.tfrecord.gz")
    vae = tmp_path / "vae"
    shutil.copytree(os.path.join(OLD_SPATIAL_RUN, "vae"), vae)
    assert "resize_border" not in json.loads((vae / "config.json").read_text())
    run_script("export_graphs.py", "--vae", vae, "--out", tmp_path / "models")
    expected = np.load(os.path.join(OLD_SPATIAL_RUN, "expected.npz"))
    images = np.random.default_rng(0).random((2, 36, 64, 3), np.float32)
    encoder = tf.saved_model.load(str(tmp_path / "models" / "encoder"))
    decoder = tf.saved_model.load(str(tmp_path / "models" / "decoder"))
    mean = encoder.signatures["serving_default"](images=tf.constant(images))["mean"]
    decoded = decoder.signatures["serving_default"](z=mean)["images"]
    assert np.abs(mean.numpy() - expected["mean"]).max() < 1e-5
    assert np.abs(decoded.numpy() - expected["decoded"]).max() < 1e-5  # borders included
    result = run_script("train_vae.py", "--data", data, "--logdir", vae, "--steps", 6, "--batch-size", 8)
    assert "resumed" in result.stderr and "at step 4" in result.stderr
    assert tf.train.load_checkpoint(str(vae / "checkpoints")).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 6
    assert json.loads((vae / "config.json").read_text()).get("resize_border", "zeros") == "zeros"


def test_spatial_training(spatial):
    config = json.loads((spatial["vae"] / "config.json").read_text())
    filters, kernels = spatial_layers(D)
    assert (config["latent"], config["downsample"], config["codes"]) == ("spatial", D, CHANNELS)
    assert (tuple(config["filters"]), tuple(config["kernels"])) == (filters, kernels)
    assert (config["upsample"], config["resize_border"]) == ("resize", "mirror")  # a new run's decoder
    # Only --latent spatial was given: the kind's own defaults, not the global model's.
    assert (config["kl_weight"], config["learning_rate"]) == (0.05, 1e-3)
    scalars = event_scalars(spatial["vae"])
    assert scalars["learning_rate"][0][1] == pytest.approx(1e-3)
    assert [s for s, _ in scalars["loss"]] == list(range(5, 61, 5))
    losses = [v for _, v in scalars["loss"]]
    assert np.mean(losses[-2:]) < 0.5 * losses[0], losses
    for (_, total), (_, rec), (_, kl) in zip(scalars["loss"], scalars["reconstruction_loss"], scalars["kl_loss"]):
        assert total == pytest.approx(rec + 0.05 * kl, rel=1e-4)  # the spatial kind's default --kl-weight
    assert event_images(spatial["vae"])["preview"] == [20, 40, 60]
    preview = cv2.imread(str(spatial["vae"] / "previews" / "step_00000060.png"))
    assert preview is not None and preview.std() > 10
    refiner = json.loads((spatial["refiner"] / "config.json").read_text())
    assert refiner["latent"] == "spatial"
    meta = json.loads((spatial["models"] / "model.json").read_text())
    assert {k: meta[k] for k in ("width", "height", "codes", "latent", "downsample", "vae_step", "refiner_step")} == \
        {"width": 64, "height": 36, "codes": CHANNELS, "latent": "spatial", "downsample": D, "vae_step": 60,
         "refiner_step": 10}


@pytest.mark.slow
def test_spatial_resume(tmp_path, spatial):
    """Stopped at 60, continued to 70: the step and Adam's state go on; the weights are the trained ones."""
    import tensorflow as tf
    logdir = tmp_path / "vae"
    shutil.copytree(spatial["vae"], logdir)
    before = dict(event_scalars(logdir)["loss"])
    args = ["--data", spatial["data"], "--logdir", logdir, "--latent", "spatial", "--batch-size", 16, "--log-every", 1,
            "--save-every", 100, "--preview-every", 100]
    result = run_script("train_vae.py", *args, "--steps", 70)
    assert "resumed" in result.stderr and "step 60" in result.stderr
    reader = tf.train.load_checkpoint(str(logdir / "checkpoints"))
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 70
    assert reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 70
    losses = dict(event_scalars(logdir)["loss"])
    assert sorted(losses) == list(range(5, 61, 5)) + list(range(61, 71))
    assert abs(losses[61] - before[60]) < 0.5 * (before[5] - before[60])


def test_a_sub_pixel_decoder_trains_exports_and_decodes_any_size(tmp_path, spatial):
    """--upsample shuffle: trained and exported by the scripts; its export loads (DepthToSpace is
    among the ops a models folder may hold) and decodes a code map at d times its size."""
    import tensorflow as tf
    from vae import export
    run_script("train_vae.py", "--data", spatial["data"], "--logdir", tmp_path / "vae", "--steps", 3,
               "--batch-size", 8, "--latent", "spatial", "--upsample", "shuffle")
    assert json.loads((tmp_path / "vae" / "config.json").read_text())["upsample"] == "shuffle"
    run_script("export_graphs.py", "--vae", tmp_path / "vae", "--out", tmp_path / "models")
    models = export.Models(str(tmp_path / "models"))
    pixels = models.decode(tf.zeros([1, 3, 5, models.codes]), size=(5 * D, 3 * D))
    assert tuple(pixels.shape) == (1, 3 * D, 5 * D, 3) and 0 <= float(tf.reduce_min(pixels))


def test_spatial_options_refused_before_tensorflow(tmp_path, spatial):
    data = spatial["data"]
    assert_error_before_tensorflow("train_vae.py", "--data", data, "--logdir", tmp_path / "l", "--steps", 5,
                                   "--latent", "spatial", "--downsample", 6, fragments=["--downsample 6", "power of two"])
    assert_error_before_tensorflow("train_vae.py", "--data", data, "--logdir", tmp_path / "l", "--steps", 5,
                                   "--downsample", 4, fragments=["--latent spatial"])
    assert_error_before_tensorflow("train_vae.py", "--data", data, "--logdir", tmp_path / "l", "--steps", 5,
                                   "--upsample", "shuffle", fragments=["--upsample", "--latent spatial"])
    # A resumed run keeps its decoder.
    assert_error_before_tensorflow("train_vae.py", "--data", data, "--logdir", spatial["vae"], "--steps", 61,
                                   "--latent", "spatial", "--upsample", "shuffle", fragments=["upsample=resize"])
    # A spatial run resumed as another kind, or at another downsample, is refused by name.
    assert_error_before_tensorflow("train_vae.py", "--data", data, "--logdir", spatial["vae"], "--steps", 61,
                                   "--latent", "global", fragments=["latent=spatial", "global"])
    assert_error_before_tensorflow("train_vae.py", "--data", data, "--logdir", spatial["vae"], "--steps", 61,
                                   "--latent", "spatial", "--downsample", 4, fragments=["downsample=8"])
    assert not (tmp_path / "l").exists()
    assert "--latent" in run_script("train_vae.py", "--help").stdout


LOAD_ALONE = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    assert not any(m == "vae" or m.startswith("vae.") for m in sys.modules)
    folder, inputs, out = sys.argv[1:4]
    models = {k: tf.saved_model.load(f"{folder}/{k}").signatures["serving_default"] for k in ("encoder", "decoder", "refiner")}
    answers = {}
    for name, x in np.load(inputs).items():
        codes = models["encoder"](images=tf.constant(x))
        images = models["decoder"](z=codes["mean"])["images"]
        refined = models["refiner"](images=tf.constant(x))["images"]
        answers.update({f"{name}_mean": codes["mean"].numpy(), f"{name}_log_var": codes["log_var"].numpy(),
                        f"{name}_decoded": images.numpy(), f"{name}_refined": refined.numpy()})
    np.savez(out, **answers)
""")


def test_spatial_export_loads_without_project_code_at_any_size(tmp_path, spatial):
    import tensorflow as tf
    from vae import model, refiner
    rng = np.random.default_rng(3)
    inputs = {"tile": rng.random((3, 36, 64, 3), np.float32), "other": rng.random((2, 45, 77, 3), np.float32)}
    np.savez(tmp_path / "in.npz", **inputs)
    (tmp_path / "load.py").write_text(LOAD_ALONE)
    subprocess.run([sys.executable, "-I", str(tmp_path / "load.py"), str(spatial["models"]), str(tmp_path / "in.npz"),
                    str(tmp_path / "out.npz")], check=True, cwd=tmp_path, capture_output=True)
    got = np.load(tmp_path / "out.npz")
    for name, x in inputs.items():
        n, h, w, _ = x.shape
        code = (n, ceil_div(h, D), ceil_div(w, D), CHANNELS)
        assert got[f"{name}_mean"].shape == code and got[f"{name}_log_var"].shape == code
        assert got[f"{name}_decoded"].shape == (n, code[1] * D, code[2] * D, 3)
        assert got[f"{name}_refined"].shape == x.shape
    # The same checkpoints restored into freshly built models give the same numbers, at the other size.
    vae_config = configs.load_config(str(spatial["vae"]), kinds.find("vae"))
    vae = model.build_vae(vae_config)
    tf.train.Checkpoint(model=vae).restore(tf.train.latest_checkpoint(str(spatial["vae"] / "checkpoints"))).expect_partial()
    net = refiner.build_refiner(configs.load_config(str(spatial["refiner"]), kinds.find("refiner")), any_size=True)
    tf.train.Checkpoint(model=net).restore(tf.train.latest_checkpoint(str(spatial["refiner"] / "checkpoints"))).expect_partial()
    mean, log_var = vae.encoder(inputs["other"], training=False)
    np.testing.assert_allclose(got["other_mean"], mean, atol=1e-4)
    np.testing.assert_allclose(got["other_log_var"], log_var, atol=1e-4)
    np.testing.assert_allclose(got["other_decoded"], vae.decoder(mean, training=False), atol=1e-4)
    np.testing.assert_allclose(got["other_refined"], net(inputs["other"], training=False), atol=1e-4)
    assert got["other_decoded"].std() > 0.01


def test_spatial_models_load_checked(spatial):
    from vae import export
    models = export.Models(str(spatial["models"]), need_refiner=True)
    assert (models.latent, models.downsample, models.codes) == ("spatial", D, CHANNELS)
    for h, w in ((36, 64), (90, 160), (45, 77)):
        mean, _ = models.encode(np.full((1, h, w, 3), 0.5, np.float32))
        assert mean.shape == (1, ceil_div(h, D), ceil_div(w, D), CHANNELS)
        assert models.decode(mean).shape == (1, ceil_div(h, D) * D, ceil_div(w, D) * D, 3)
        assert models.render(mean, size=(w, h)).shape == (1, h, w, 3)


def test_spatial_evaluation(spatial):
    """embeddings.json holds per-channel means over tiles and positions, as the encoder gives them."""
    sources = json.loads((spatial["models"] / "embeddings.json").read_text())["sources"]
    assert set(sources) == {"clip", "paintings"}
    encoder = loaded_models(str(spatial["models"]))["encoder"].signatures["serving_default"]
    files = records.find_files([spatial["data"]])
    sums, counts = {}, {}
    for batch in records.iterate(files, (64, 36)):
        maps = encoder(images=batch["image"])["mean"].numpy()
        assert maps.shape[1:] == (5, 8, CHANNELS)
        for map_, source in zip(maps, batch["source"]):
            sums[source.decode()] = sums.get(source.decode(), 0) + map_.mean((0, 1), dtype=np.float64)
            counts[source.decode()] = counts.get(source.decode(), 0) + 1
    for name, entry in sources.items():
        assert entry["count"] == counts[name] and len(entry["mean"]) == CHANNELS
        np.testing.assert_allclose(entry["mean"], sums[name] / counts[name], atol=1e-4)
    assert "reconstruction PSNR" in spatial["stdout"]
    for picture in ("reconstructions.png", "salted.png", "shift_sweep.png", "projection.png", "table.png"):
        image = cv2.imread(str(spatial["report"] / picture))
        assert image is not None and image.std() > 10, picture  # drawn, not blank


def psnr(a, b):
    return float(10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b) ** 2)))


def vae_only(run, folder):
    """A run's VAE exported alone with its embeddings (the fixtures' refiners are barely trained)."""
    run_script("export_graphs.py", "--vae", run["vae"], "--out", folder)
    for name in ("embeddings.json", "tiles.npz", "bank.npz"):
        shutil.copy(run["models"] / name, folder / name)
    return folder


def render(models, source, out, *args):
    run_script("mogrify_video.py", source, out, "--models", models, "--alpha", 0, "--beta", 0, "--smooth", 0,
               "--stats", str(out) + ".json", *args)
    return json.loads(open(str(out) + ".json").read())


def test_spatial_render_reconstructs_the_clip_better_than_global(tmp_path, media, spatial):
    """alpha = beta = 0, --detail 0, through mogrify_video.py: the spatial model renders at the
    clip's own size; a global model of the same training (60 steps of 16 tiles, the same settings)
    renders at its tile size, scaled back up. Both outputs decoded independently."""
    data = spatial["data"]
    run_script("train_vae.py", "--data", data, "--logdir", tmp_path / "global", "--steps", 60, "--codes", 32,
               *SPATIAL_TRAINING)
    run_script("export_graphs.py", "--vae", tmp_path / "global", "--out", tmp_path / "global_models")
    run_script("evaluate_embeddings.py", "--data", data, "--models", tmp_path / "global_models")
    _, frames = decode(media["clip"])
    frames = frames[:, 10:80]  # the letterbox is cut (--crop auto)
    scores = {}
    for name, models in (("spatial", vae_only(spatial, tmp_path / "spatial_models")),
                         ("global", tmp_path / "global_models")):
        stats = render(models, media["clip"], tmp_path / f"{name}.mp4")
        meta, out = decode(tmp_path / f"{name}.mp4")
        assert (meta.width, meta.height, len(out)) == (160, 70, len(frames))  # the picture's own size, every frame
        scores[name] = psnr(frames, out), stats["structure"]
        assert stats["render_size"] == ([160, 70] if name == "spatial" else [64, 36])
    print(f"reconstruction of the clip at 160x70 (PSNR, structure): {scores}")
    assert scores["spatial"][0] > scores["global"][0] + 3, scores
    assert scores["spatial"][1] > scores["global"][1] + 0.05, scores


def test_spatial_render_size_and_stills(tmp_path, media, evaluated, spatial):
    """--render-size renders smaller and the output keeps the input's size; a still keeps its own
    odd size; --render-size with a global model is one error line."""
    models = vae_only(spatial, tmp_path / "models")
    stats = render(models, media["clip"], tmp_path / "small.mp4", "--render-size", "80x80")
    meta, out = decode(tmp_path / "small.mp4")
    assert (meta.width, meta.height) == (160, 70) and stats["render_size"] == [80, 34]
    _, frames = decode(media["clip"])
    frames = frames[:, 10:80]
    print(f"at --render-size 80x80: {psnr(frames, out):.1f} dB")
    assert psnr(frames, out) > 15  # the same picture, scaled up
    still = frames[20][:69, :151]  # odd sides
    cv2.imwrite(str(tmp_path / "still.png"), cv2.cvtColor(still, cv2.COLOR_RGB2BGR))
    stats = render(models, tmp_path / "still.png", tmp_path / "still_out.png", "--detail", 1)
    got = cv2.cvtColor(cv2.imread(str(tmp_path / "still_out.png")), cv2.COLOR_BGR2RGB)
    assert got.shape == still.shape and stats["render_size"] == [151, 69]
    assert np.abs(got.astype(int) - still).max() <= 1  # alpha = beta = 0 with --detail 1: the input itself
    result = run_script("mogrify_video.py", media["clip"], tmp_path / "g.mp4", "--models", evaluated["models"],
                        "--render-size", "80x45", check=False)
    assert_one_line_error(result, "--render-size", "spatial")
    assert not (tmp_path / "g.mp4").exists()
