"""The refiner: a residual network that makes the blurry VAE output look more like the input.

Down by a strided convolution, residual blocks at half resolution, a transposed convolution
back to exactly the tile size, a skip connection from a full-resolution feature map, and a
final convolution to an RGB correction added to the input and clipped to 0..1.
"""
import keras
import tensorflow as tf
from keras import layers, ops

from vae.model import crop_to


def residual_block(x, filters, name):
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_a")(x)
    y = layers.ELU()(y)
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_b")(y)
    return layers.ELU()(layers.Add()([x, y]))


def build_refiner(height, width, filters=32, blocks=4):
    images = keras.Input((height, width, 3), name="images")
    full = layers.ELU()(layers.Conv2D(filters, 3, padding="same", name="full_res")(images))
    x = layers.ELU()(layers.Conv2D(filters * 2, 3, strides=2, padding="same", name="down")(full))
    for i in range(blocks):
        x = residual_block(x, filters * 2, f"block{i}")
    # A kernel divisible by the stride avoids the checkerboard of uneven overlaps.
    x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", name="up")(x)
    x = layers.ELU()(crop_to(x, (height, width)))
    x = layers.Concatenate()([x, full])  # the skip connection keeps full-resolution detail
    x = layers.ELU()(layers.Conv2D(filters, 3, padding="same", name="merge")(x))
    correction = layers.Conv2D(3, 3, padding="same", name="to_rgb", dtype="float32")(x)
    refined = layers.Add(dtype="float32")([images, correction])
    refined = layers.Activation(lambda t: ops.clip(t, 0.0, 1.0), dtype="float32", name="refined")(refined)
    return keras.Model(images, refined, name="refiner")


class RefinerTrainer(keras.Model):
    """Trains the refiner against a frozen, exported VAE.

    The first `identity_steps` updates teach it to return its input (the VAE output) unchanged;
    after that the loss pulls the result toward the tile and, weighted by `away_weight`, away
    from the raw VAE output. The away term is margin / (margin + distance): it stays between 0
    and 1, where the original's plain reciprocal exploded as the two images met.
    """

    def __init__(self, refiner, vae_models, identity_steps, tile_weight=1.0, away_weight=0.001,
                 away_margin=0.01, **kwargs):
        super().__init__(**kwargs)
        self.refiner = refiner
        self.vae_models = vae_models
        self.identity_steps = identity_steps
        self.tile_weight, self.away_weight, self.away_margin = tile_weight, away_weight, away_margin

    def vae_output(self, tiles):
        mean, _ = self.vae_models.encode(tiles)
        return tf.stop_gradient(self.vae_models.decode(mean))

    def train_step(self, tiles):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        blurry = self.vae_output(tiles)
        identity_phase = self.optimizer.iterations < self.identity_steps
        with tf.GradientTape() as tape:
            refined = self.refiner(blurry, training=True)
            to_input = ops.mean(ops.square(refined - blurry))
            to_tile = ops.mean(ops.square(refined - tiles))
            away = self.away_margin / (self.away_margin + to_input)
            main = self.tile_weight * to_tile + self.away_weight * away
            loss = tf.where(identity_phase, to_input, main) / replicas
            scaled = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, self.refiner.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.refiner.trainable_weights))
        return {"loss": loss, "tile_loss": to_tile / replicas, "away_loss": away / replicas,
                "identity_loss": to_input / replicas}
