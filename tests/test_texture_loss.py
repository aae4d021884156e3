"""The style refiner's texture loss (vae/texture.py): the texture measure in TensorFlow, and
train_refiner.py --texture-weight with and without the discriminator."""
import json

import numpy as np
import pytest

from conftest import TILE, event_scalars, run_script
from test_core import checkpoint_tensors

W, H = TILE


def stripes(count, period=8, shifts=(0,), contrast=0.4):
    """Diagonal colour stripes, one tile per shift (cycled to `count`)."""
    y, x = np.mgrid[0:H, 0:W]
    tiles = []
    for i in range(count):
        v = 0.5 + contrast * np.sin(2 * np.pi * (x + 2 * y + shifts[i % len(shifts)]) / period)
        tiles.append(np.stack([v, 0.8 * v, 0.3 + 0.2 * v], -1))
    return np.float32(tiles)


def test_pyramid_is_the_measures():
    import tensorflow as tf
    from vae import measures, texture
    image = np.random.default_rng(0).random((45, 81, 3), np.float32) * 255  # odd sides: the borders differ there
    expected = measures.laplacian_pyramid(image)
    got = texture.laplacian_pyramid(tf.constant(image[None]), texture.pyramid_levels(45, 81))
    assert len(got) == len(expected) == 2
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a[0], b, atol=1e-3)
    assert texture.pyramid_levels(180, 320) == len(measures.laplacian_pyramid(np.zeros((180, 320, 3)))) == 4


def test_loss_agrees_with_the_measure():
    """Closer in texture to the style (stripes) is lower, for the loss and for the NumPy measure;
    the style against itself is sampling noise; and, unlike the measure (each side its own
    statistics), the loss sees a faint copy of the style's texture as far from it."""
    import tensorflow as tf
    from vae import measures, texture
    style = stripes(8)
    candidates = {"itself": style, "shifted": stripes(8, shifts=range(0, 8)),
                  "other period": stripes(8, period=5),
                  "noise": np.random.default_rng(1).random((8, H, W, 3), np.float32),
                  "flat": np.full((8, H, W, 3), 0.5, np.float32), "faint": stripes(8, contrast=0.08)}
    loss = tf.function(texture.texture_distances)
    reference = measures.TextureReference(np.uint8(style * 255))
    ours, theirs = {}, {}
    for name, tiles in candidates.items():
        ours[name] = float(np.mean(loss(tf.constant(tiles), tf.constant(style), tf.constant([1, 2], tf.int64))))
        patches = measures.PatchSet()
        rng = np.random.default_rng(5)
        for tile in np.uint8(tiles * 255):
            patches.add(reference.patches_of(tile, rng))
        theirs[name] = reference.distance(patches)
    for measure in (ours, theirs):
        for far in ("other period", "noise", "flat"):
            assert measure["itself"] < measure["shifted"] < 0.5 * measure[far], (measure, far)
    assert ours["itself"] < 0.2 * min(ours[far] for far in ("other period", "noise", "flat")), ours
    assert theirs["faint"] < theirs["shifted"] and ours["faint"] > 3 * ours["shifted"], (ours, theirs)


def test_gradient_moves_pixels_toward_the_style():
    """A few Adam steps on noise, fresh directions and patches every step, lower the measure."""
    import tensorflow as tf
    from vae import measures, texture
    style = stripes(4)
    start = 0.5 + 0.05 * np.random.default_rng(2).standard_normal((4, H, W, 3)).astype(np.float32)
    images = tf.Variable(start)
    optimizer = tf.keras.optimizers.Adam(0.05)

    @tf.function
    def step(i):
        with tf.GradientTape() as tape:
            loss = tf.add_n(texture.texture_distances(images, tf.constant(style), tf.stack([tf.constant(7, tf.int64), i])))
        optimizer.apply_gradients([(tape.gradient(loss, images), images)])

    for i in range(60):
        step(tf.constant(i, tf.int64))
    reference = measures.TextureReference(np.uint8(style * 255))

    def measure(tiles):
        patches = measures.PatchSet()
        rng = np.random.default_rng(5)
        for tile in np.uint8(np.clip(tiles, 0, 1) * 255):
            patches.add(reference.patches_of(tile, rng))
        return reference.distance(patches)

    assert measure(images.numpy()) < 0.75 * measure(start)


def test_old_config_loads_without_texture():
    """A run from before the texture term (no texture_weight in config.json) resumes without it."""
    from vae import configs
    from vae.kinds.style_refiner import StyleRefinerConfig
    stored = {"width": W, "height": H, "style": ["paintings"], "adversarial_weight": 1.0}
    config = configs.config_from_json(StyleRefinerConfig, stored, "config.json")
    assert config.texture_weight == 0 and config.texture_layout_weight == 0


TEXTURE_RUN = ["--style", "paintings", "--batch-size", 4, "--identity-steps", 2, "--filters", 4, "--blocks", 1,
               "--disc-filters", 4, "--disc-layers", 2, "--log-every", 1, "--preview-every", 100, "--save-every", 100,
               "--adversarial-weight", 0, "--seed", 5, "--steps", 4]


@pytest.mark.slow
def test_texture_alone_trains_without_the_discriminator(tmp_path, evaluated):
    common = ["--data", evaluated["data"], "--models", evaluated["models"], *TEXTURE_RUN]
    run_script("train_refiner.py", *common, "--logdir", tmp_path / "texture", "--texture-weight", 1)
    run_script("train_refiner.py", *common, "--logdir", tmp_path / "plain")
    scalars = event_scalars(tmp_path / "texture")
    for tag in ("texture_loss", "texture_level_0", "texture_level_1", "content_loss", "steady_loss"):
        assert tag in scalars, tag
    assert not {"disc_real", "disc_fake", "disc_loss", "adaptive_weight", "texture_level_2"} & set(scalars)
    assert "texture_loss" not in event_scalars(tmp_path / "plain")
    # The layout level weighs 0 by default: the loss is the finer level's distance.
    assert [v for _, v in scalars["texture_loss"]] == pytest.approx([v for _, v in scalars["texture_level_0"]])
    config = json.loads((tmp_path / "texture" / "config.json").read_text())
    assert config["texture_weight"] == 1 and config["texture_layout_weight"] == 0 and config["adversarial_weight"] == 0
    textured, plain = checkpoint_tensors(tmp_path / "texture"), checkpoint_tensors(tmp_path / "plain")
    # The discriminator stays in the checkpoint, untouched: its Adam never stepped.
    assert textured["discriminator_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"] == 0
    assert textured["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"] == 4
    # (A checkpoint holds each weight once, under the optimizer that tracks it.)
    discriminator = [k for k in textured if k.startswith("discriminator_optimizer/_trainable_variables/")]
    assert discriminator and all(np.array_equal(textured[k], plain[k]) for k in discriminator)
    # The texture term reaches the refiner: the same run without it ends elsewhere.
    refiner = [k for k in textured if k.startswith("optimizer/_trainable_variables/")]
    assert refiner and any(not np.allclose(textured[k], plain[k], atol=1e-6) for k in refiner)
