"""The convolutional VAE: a functional encoder and decoder and a Model with its own train step.

Faithful to the 2017 original: six strided convolutions with growing feature maps, batch norm
and ELU; dense `mean` and `log_var` codes; a reparameterised sample; six transposed
convolutions back to exactly the tile size. Loss: squared error summed per image plus KL.
"""
import math

import keras
import tensorflow as tf
from keras import layers, ops

FILTERS = (64, 64, 128, 128, 192, 256)
KERNELS = (7, 5, 5, 3, 3, 3)


def feature_map_sizes(height, width, depth=len(FILTERS)):
    """(h, w) of the input and after each stride-2 'same' convolution."""
    sizes = [(height, width)]
    for _ in range(depth):
        h, w = sizes[-1]
        sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
    return sizes


def crop_to(x, size):
    """Cut the bottom and right of an upsampled map so it matches an encoder map exactly."""
    extra_h, extra_w = x.shape[1] - size[0], x.shape[2] - size[1]
    if extra_h or extra_w:
        x = layers.Cropping2D(((0, extra_h), (0, extra_w)))(x)
    return x


class Sampling(layers.Layer):
    """z = mean + exp(log_var / 2) * epsilon: the reparameterisation trick."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        mean, log_var = inputs
        epsilon = keras.random.normal(ops.shape(mean), dtype=mean.dtype, seed=self.seed_generator)
        return mean + ops.exp(0.5 * log_var) * epsilon


def build_encoder(height, width, codes=512, filters=FILTERS, kernels=KERNELS):
    images = keras.Input((height, width, 3), name="images")
    x = images
    for i, (f, k) in enumerate(zip(filters, kernels)):
        x = layers.Conv2D(f, k, strides=2, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"conv{i}_bn")(x)
        x = layers.ELU(name=f"conv{i}_elu")(x)
    x = layers.Flatten()(x)
    # The codes stay float32 under mixed precision: the KL term and shifts need the range.
    mean = layers.Dense(codes, name="mean", dtype="float32")(x)
    log_var = layers.Dense(codes, name="log_var", dtype="float32")(x)
    return keras.Model(images, [mean, log_var], name="encoder")


def build_decoder(height, width, codes=512, filters=FILTERS, kernels=KERNELS):
    sizes = feature_map_sizes(height, width, len(filters))
    z = keras.Input((codes,), name="z")
    bottom_h, bottom_w = sizes[-1]
    x = layers.Dense(bottom_h * bottom_w * filters[-1], name="expand")(z)
    x = layers.ELU()(x)
    x = layers.Reshape((bottom_h, bottom_w, filters[-1]))(x)
    for i in reversed(range(len(filters))):
        last = i == 0
        out_filters = 3 if last else filters[i - 1]
        x = layers.Conv2DTranspose(out_filters, kernels[i], strides=2, padding="same", use_bias=last,
                                   name=f"deconv{i}")(x)
        x = crop_to(x, sizes[i])
        if not last:
            x = layers.BatchNormalization(name=f"deconv{i}_bn")(x)
            x = layers.ELU(name=f"deconv{i}_elu")(x)
    images = layers.Activation("sigmoid", dtype="float32", name="images")(x)
    return keras.Model(z, images, name="decoder")


class VAE(keras.Model):
    """Encoder, sampler and decoder, trained on squared error plus KL divergence."""

    def __init__(self, encoder, decoder, seed=None, kl_weight=1.0, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder = encoder, decoder
        self.kl_weight = kl_weight
        self.sampling = Sampling(seed)

    def call(self, images, training=False):
        mean, log_var = self.encoder(images, training=training)
        return self.decoder(mean if not training else self.sampling([mean, log_var]), training=training)

    def reconstruct(self, images):
        """The deterministic reconstruction: decode the mean code."""
        mean, _ = self.encoder(images, training=False)
        return self.decoder(mean, training=False)

    def losses_of(self, images, training):
        """Per-image squared error (summed over pixels) and KL divergence."""
        mean, log_var = self.encoder(images, training=training)
        z = self.sampling([mean, log_var])
        output = self.decoder(z, training=training)
        reconstruction = ops.sum(ops.square(images - output), axis=(1, 2, 3))
        kl = -0.5 * ops.sum(1 + log_var - ops.square(mean) - ops.exp(log_var), axis=1)
        return reconstruction, kl

    def train_step(self, images):
        """One update; losses are averaged over the global batch, so replicas' gradients sum."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            reconstruction, kl = self.losses_of(images, training=True)
            reconstruction, kl = ops.mean(reconstruction) / replicas, ops.mean(kl) / replicas
            loss = reconstruction + self.kl_weight * kl
            scaled = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        return {"loss": loss, "reconstruction_loss": reconstruction, "kl_loss": kl}


def build_vae(height, width, codes=512, seed=None, kl_weight=1.0):
    return VAE(build_encoder(height, width, codes), build_decoder(height, width, codes), seed=seed,
               kl_weight=kl_weight, name="vae")
