"""The convolutional VAE, described once: its builder, losses and preview (its config, which
needs no TensorFlow, is vae/configs.py's).

Faithful to the 2017 original: six strided convolutions with growing feature maps, batch norm
and ELU; dense `mean` and `log_var` codes; a reparameterised sample; six transposed
convolutions back to exactly the tile size. Loss: squared error summed per image plus KL.
"""
import math
import os

import keras
import tensorflow as tf
from keras import layers, ops

from vae import configs, training

VAEConfig = configs.VAEConfig  # here too, beside build_vae, for its callers


def feature_map_sizes(width, height, depth=len(configs.FILTERS)):
    """(w, h) of the input and after each stride-2 'same' convolution."""
    sizes = [(width, height)]
    for _ in range(depth):
        w, h = sizes[-1]
        sizes.append((math.ceil(w / 2), math.ceil(h / 2)))
    return sizes


def crop_to(x, size):
    """Cut the bottom and right of an upsampled map so it matches an encoder map (w, h) exactly."""
    extra_h, extra_w = x.shape[1] - size[1], x.shape[2] - size[0]
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


class FusedBatchNorm(layers.BatchNormalization):
    """Keras's batch norm, trained through TensorFlow's one fused kernel (FusedBatchNormV3).

    Keras 3 normalises with a dozen separate ops (moments, subtract, multiply, and as many
    again for the gradient); in a profile of a training step at 320x180 they took about a sixth
    of the time. The variables are Keras's own, so checkpoints are unchanged, and inference
    (previews, exports) runs Keras's arithmetic, so the exported graphs are too.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or mask is not None or len(inputs.shape) != 4 \
                or self.axis not in (-1, 3) or self.renorm or not (self.scale and self.center):
            return super().call(inputs, training=training, mask=mask)
        # With an averaging factor the op returns the moving statistics already updated.
        outputs, moving_mean, moving_variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=self.gamma, offset=self.beta, mean=self.moving_mean, variance=self.moving_variance,
            epsilon=self.epsilon, exponential_avg_factor=1.0 - self.momentum, data_format="NHWC",
            is_training=True)
        self.moving_mean.assign(moving_mean)
        self.moving_variance.assign(moving_variance)
        return ops.cast(outputs, self.compute_dtype)


def build_encoder(config):
    images = keras.Input((config.height, config.width, 3), name="images")
    x = images
    for i, (f, k) in enumerate(zip(config.filters, config.kernels)):
        x = layers.Conv2D(f, k, strides=2, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = FusedBatchNorm(name=f"conv{i}_bn")(x)
        x = layers.ELU(name=f"conv{i}_elu")(x)
    x = layers.Flatten()(x)
    # The codes stay float32 under mixed precision: the KL term and shifts need the range.
    mean = layers.Dense(config.codes, name="mean", dtype="float32")(x)
    log_var = layers.Dense(config.codes, name="log_var", dtype="float32")(x)
    return keras.Model(images, [mean, log_var], name="encoder")


def build_decoder(config):
    filters, kernels = config.filters, config.kernels
    sizes = feature_map_sizes(config.width, config.height, len(filters))
    z = keras.Input((config.codes,), name="z")
    bottom_w, bottom_h = sizes[-1]
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
            x = FusedBatchNorm(name=f"deconv{i}_bn")(x)
            x = layers.ELU(name=f"deconv{i}_elu")(x)
    images = layers.Activation("sigmoid", dtype="float32", name="images")(x)
    return keras.Model(z, images, name="decoder")


class VAE(keras.Model):
    """Encoder, sampler and decoder (the checkpoint's `model`: these three attributes, in this order)."""

    def __init__(self, encoder, decoder, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder = encoder, decoder
        self.sampling = Sampling(seed)

    def reconstruct(self, images):
        """The deterministic reconstruction: decode the mean code."""
        mean, _ = self.encoder(images, training=False)
        return self.decoder(mean, training=False)


def build_vae(config, seed=None):
    return VAE(build_encoder(config), build_decoder(config), seed=seed, name="vae")


class Spec(configs.VAE, training.Spec):
    """The VAE for training.run: squared error summed per tile plus weighted KL, averaged over tiles."""
    tracked = ("loss", "reconstruction_loss", "kl_loss")

    def networks(self, config):
        return {"model": build_vae(config)}

    def build(self, config, args):
        return {"model": build_vae(config, seed=args.seed)}

    def losses(self, vae, tiles, config, state):
        mean, log_var = vae.encoder(tiles, training=True)
        output = vae.decoder(vae.sampling([mean, log_var]), training=True)
        reconstruction = ops.mean(ops.sum(ops.square(tiles - output), axis=(1, 2, 3)))
        kl = ops.mean(-0.5 * ops.sum(1 + log_var - ops.square(mean) - ops.exp(log_var), axis=1))
        return {"loss": reconstruction + config.kl_weight * kl, "reconstruction_loss": reconstruction,
                "kl_loss": kl}

    def preview(self, models, samples):
        return [samples, models["model"].reconstruct(samples)]

    def describe(self, config, args):
        return f"a {config.codes}-code VAE"

    def saved_models(self, networks, config):
        vae = networks["model"]
        return {"encoder": (vae.encoder, (config.height, config.width, 3)), "decoder": (vae.decoder, (config.codes,))}

    def model_json(self, config, step, logdir):
        return {"width": config.width, "height": config.height, "codes": config.codes, "vae_step": step,
                "vae_logdir": os.path.abspath(logdir)}
