"""The refiner, described once: its builder, losses and preview (its config, which needs no
TensorFlow, is vae/kinds/refiner.py's).

A residual network that makes the blurry VAE output look more like the input: down by a
strided convolution, residual blocks at half resolution, a transposed convolution back to
exactly the input's size, a skip connection from a full-resolution feature map, and a final
convolution to an RGB correction added to the input and clipped to 0..1. Its weights do not
depend on the size: against a spatial VAE it is built for any size (export.Models says which
kind the VAE is, from its model.json), against a global one for the tile size, as it always was.
"""
import keras
import tensorflow as tf
from keras import layers, ops

from vae import kinds
from vae.kinds import refiner as refiner_kind

RefinerConfig = refiner_kind.RefinerConfig  # here too, beside build_refiner, for its callers


def residual_block(x, filters, name):
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_a")(x)
    y = layers.ELU()(y)
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_b")(y)
    return layers.ELU()(layers.Add()([x, y]))


class CropLike(layers.Layer):
    """Cut the bottom and right of a map to the height and width of another, of any size (an
    odd side comes back from the stride-2 round trip one longer)."""

    def call(self, inputs):
        x, like = inputs
        # A known size is cut as a number (the graph a tile-size refiner always had), an open one
        # as a tensor.
        height, width = (tf.shape(like)[i] if like.shape[i] is None else like.shape[i] for i in (1, 2))
        return x[:, :height, :width]

    def compute_output_shape(self, shapes):
        x, like = shapes
        return (x[0], like[1], like[2], x[3])


def crop_like(x, like):
    """x cut to like's size; no layer when the sizes are known equal, so that the layers (and
    with them the checkpoints) of a refiner for a tile size are those it always had."""
    known = like.shape[1:3]
    if None not in known and tuple(x.shape[1:3]) == tuple(known):
        return x
    return CropLike()([x, like])


def build_refiner(config, any_size=False):
    """The refiner for the tile size, or with `any_size` for inputs of any height and width."""
    filters = config.filters
    shape = (None, None, 3) if any_size else (config.height, config.width, 3)
    images = keras.Input(shape, name="images")
    full = layers.ELU()(layers.Conv2D(filters, 3, padding="same", name="full_res")(images))
    x = layers.ELU()(layers.Conv2D(filters * 2, 3, strides=2, padding="same", name="down")(full))
    for i in range(config.blocks):
        x = residual_block(x, filters * 2, f"block{i}")
    # A kernel divisible by the stride avoids the checkerboard of uneven overlaps.
    x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", name="up")(x)
    x = layers.ELU()(crop_like(x, full))
    x = layers.Concatenate()([x, full])  # the skip connection keeps full-resolution detail
    x = layers.ELU()(layers.Conv2D(filters, 3, padding="same", name="merge")(x))
    correction = layers.Conv2D(3, 3, padding="same", name="to_rgb", dtype="float32")(x)
    refined = layers.Add(dtype="float32")([images, correction])
    refined = layers.Activation(lambda t: ops.clip(t, 0.0, 1.0), dtype="float32", name="refined")(refined)
    return keras.Model(images, refined, name="refiner")


class Spec(kinds.Spec):
    """The refiner for training.run, against an exported VAE, frozen.

    The first `identity_steps` updates teach it to return its input (the VAE output) unchanged;
    after that the loss pulls the result toward the tile and, weighted by `away_weight`, away
    from the raw VAE output. The away term is margin / (margin + distance): it stays between 0
    and 1, where the original's plain reciprocal exploded as the two images met.
    """
    tracked = ("loss", "tile_loss", "away_loss", "identity_loss")

    def networks(self, config):
        return {"model": build_refiner(config, any_size=config.latent == "spatial")}

    def build(self, config, plan):
        self.vae = plan.load_models(config)
        self.notes = {"models": plan.models, "vae_step": self.vae.meta.get("vae_step")}
        return self.networks(config)

    def vae_output(self, tiles):
        mean, _ = self.vae.encode(tiles)
        return tf.stop_gradient(self.vae.decode(mean, size=(tiles.shape[2], tiles.shape[1])))

    def losses(self, net, tiles, config, state):
        blurry = self.vae_output(tiles)
        refined = net(blurry, training=True)
        to_input = ops.mean(ops.square(refined - blurry))
        to_tile = ops.mean(ops.square(refined - tiles))
        away = config.away_margin / (config.away_margin + to_input)
        main = config.tile_weight * to_tile + config.away_weight * away
        loss = tf.where(state.optimizers["model"].iterations < config.identity_steps, to_input, main)
        return {"loss": loss, "tile_loss": to_tile, "away_loss": away, "identity_loss": to_input}

    def preview(self, models, samples):
        blurry = self.vae_output(samples)
        return [samples, blurry, models["model"](blurry, training=False)]

    def describe(self, config, plan):
        kind = ", any size" if config.latent == "spatial" else ""
        return f"the refiner against {plan.models}{kind}, {config.identity_steps} identity steps first,"

    def saved_models(self, networks, config):
        shape = (None, None, 3) if config.latent == "spatial" else (config.height, config.width, 3)
        return {"refiner": (networks["model"], shape)}

    def model_json(self, config, step, logdir):
        return {"refiner_step": step, "refiner_style": None}  # a style refiner exported before is replaced
