"""The convolutional VAE, described once: its builder, losses and preview (its config, which
needs no TensorFlow, is vae/kinds/vae.py's).

Two kinds, by `config.latent`:

- global, faithful to the 2017 original: six strided convolutions with growing feature maps,
  batch norm and ELU; dense `mean` and `log_var` codes; a reparameterised sample; six transposed
  convolutions back to exactly the tile size.
- spatial: the code is a map of `codes` channels at 1/downsample of the input's size. log2(d)
  strided convolutions with batch norm and ELU, then convolutions to `mean` and `log_var` maps;
  the decoder goes back up a factor of 2 at a time by resizing and then convolving (a
  transposed convolution leaves a grid; a new run's decoder, `resize_border` "mirror", computes
  each such stage at the lower size), or with `upsample` "shuffle" its inner stages by a
  convolution at the lower size giving each 2x2 block's four pixels (sub-pixel convolution,
  started as a nearest-neighbour upsample) and its last stage by resizing and a 3x3
  convolution (a sub-pixel last stage left a 2x2 grid in the picture). No dense layer, so
  both run at any size: h x w codes decode to h*d x w*d pixels.

Loss for both: squared error summed per tile plus `kl_weight` times the KL summed over the code
(for a map, over its positions and channels), averaged over tiles.
"""
import math
import os

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from vae import configs, kinds, manifest
from vae.kinds import vae as vae_kind
from vae.cli import warn

VAEConfig, spatial_layers = vae_kind.VAEConfig, vae_kind.spatial_layers  # here too, beside build_vae, for its callers


def feature_map_sizes(width, height, depth=len(vae_kind.FILTERS)):
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
        """The deterministic reconstruction: decode the mean code, at the size of `images`."""
        mean, _ = self.encoder(images, training=False)
        return self.decode_like(mean, images, training=False)

    def decode_like(self, z, images, training):
        """The decoded code at the size of `images` (a spatial decoder rounds sizes up to a
        multiple of d; the global one gives the tile size)."""
        output = self.decoder(z, training=training)
        return output if len(z.shape) == 2 else crop_like(output, images)


# The spatial model's batch norm follows its statistics over about ten steps, not Keras's hundred
# (momentum 0.99): the moving averages are what inference (previews, exports, renders) uses, and
# with the slower average they lagged the training statistics so far that after 300 steps the
# exported model reconstructed the training clip at 17.7 dB where the training-mode one gave 22.9
# (60 steps: 12.9 against 15.6; with 0.9 the two agree within 0.3 dB).
SPATIAL_BN_MOMENTUM = 0.9


class Upsample2x(layers.Layer):
    """Twice the height and width, by resizing (bilinear), for any input size."""

    def call(self, x):
        size = tf.shape(x)[1:3] * 2
        return tf.cast(tf.image.resize(x, size, method="bilinear"), x.dtype)

    def compute_output_shape(self, shape):
        return (shape[0], *(None if d is None else 2 * d for d in shape[1:3]), shape[3])


def resize_phases(kernel_size):
    """[2, k, k]: for each output phase a (the even and the odd pixels of a 2x resize), how much
    each tap t of a k-tap filter at the doubled size weighs on each tap s at the lower size.
    A bilinear 2x resize (half-pixel centres) gives pixel 2i 0.75 of source i and 0.25 of i-1,
    and pixel 2i+1 0.75 of i and 0.25 of i+1; a k-tap filter then reaches k taps of the source."""
    r = kernel_size // 2
    phases = np.zeros((2, kernel_size, kernel_size), np.float32)
    sources = ({-1: 0.25, 0: 0.75}, {0: 0.75, 1: 0.25})
    for a in (0, 1):
        for t in range(-r, r + 1):
            b = (a + t) % 2  # the resized pixel 2i+a+t is pixel 2(i+q)+b
            q = (a + t - b) // 2
            for j, weight in sources[b].items():
                phases[a, q + j + r, t + r] += weight
    return phases


def conv_valid(x, kernel):
    """A stride-1 VALID convolution whose gradients are computed as a forward convolution and,
    where the output has fewer channels than the input, one matmul. TensorFlow's own CPU kernels
    for the two gradients ran at two to three and a half times the forward convolution's time on
    the spatial decoder's last stage (5x5, 32 to 12 channels: 112 and 178 ms against 52), a third
    of a training step; these take 43 and 72 ms, and the encoder's heads' kernel gradient 11
    against 22 (README, "The decoder's gradients" and the table after it). The values are the same."""
    @tf.custom_gradient
    def convolve(x, kernel):
        def gradients(dy):
            kh, kw, c_in, c_out = kernel.shape
            # The input's gradient: dy, padded, convolved with the kernel turned half a turn, in
            # and out swapped. The convolution pads (explicit padding): 88 against 99 CPU-ms with a
            # separate pad on the last stage.
            flipped = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])
            dx = tf.nn.conv2d(dy, flipped, 1, [[0, 0], [kh - 1, kh - 1], [kw - 1, kw - 1], [0, 0]])
            if c_out >= c_in:  # there TensorFlow's own filter gradient was as fast or faster
                return dx, tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=tf.shape(kernel), out_backprop=dy,
                                                           strides=[1, 1, 1, 1], padding="VALID")
            # dk[s, t, c, o] = sum over n, i, j of x[n, i+s, j+t, c] dy[n, i, j, o]: the row shifts s
            # of x side by side as channels, the column shifts t of dy likewise, one matmul. The
            # narrow side on the left: (t, o) x (s, c) took 72 ms where (s, c) x (t, o) took 91.
            h = tf.shape(dy)[1]
            rows = tf.concat([x[:, s:s + h] for s in range(kh)], -1)
            columns = tf.concat([tf.pad(dy, [[0, 0], [0, 0], [t, kw - 1 - t], [0, 0]]) for t in range(kw)], -1)
            dk = tf.matmul(tf.reshape(columns, [-1, kw * c_out]), tf.reshape(rows, [-1, kh * c_in]), transpose_a=True)
            return dx, tf.transpose(tf.reshape(dk, [kw, c_out, kh, c_in]), [2, 0, 3, 1])
        return tf.nn.conv2d(x, kernel, 1, "VALID"), gradients
    return convolve(x, kernel)


class ResizeConv2D(layers.Layer):
    """A bilinear 2x resize, the border continued by mirroring, then a k x k convolution, computed
    at the lower size. Resize and convolution are both linear, so each 2x2 block's four pixels
    are a k x k convolution of the lower-size map with kernels made from the one learned kernel,
    followed by depth to space: the same picture as resizing (no sub-pixel grid, since the four
    kernels are tied), with the same multiply-adds, but without a full-size map of C channels to
    write and read. A mirrored border (not zeros) is what makes the lower-size padding exact."""

    def __init__(self, filters, kernel_size, use_bias=False, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.use_bias = filters, kernel_size, use_bias
        self.phases = resize_phases(kernel_size)

    def build(self, input_shape):
        k = self.kernel_size
        self.kernel = self.add_weight(shape=(k, k, input_shape[-1], self.filters), name="kernel",
                                      initializer="glorot_uniform")
        self.bias = self.add_weight(shape=(self.filters,), name="bias", initializer="zeros") if self.use_bias else None

    def call(self, x, training=None):
        k, r = self.kernel_size, self.kernel_size // 2
        kernel = tf.cast(self.kernel, tf.float32)
        x = tf.pad(x, [[0, 0], [r, r], [r, r], [0, 0]], "SYMMETRIC")  # mirrored here is mirrored at 2x
        kernels = tf.einsum("ysp,xtq,pqco->stcyxo", self.phases, self.phases, kernel)
        kernels = tf.cast(tf.reshape(kernels, (k, k, -1, 4 * self.filters)), x.dtype)  # channel (dy*2+dx)*C + c
        # Training differentiates it in its own way; inference and exports hold the plain convolution.
        x = tf.nn.depth_to_space(conv_valid(x, kernels) if training else tf.nn.conv2d(x, kernels, 1, "VALID"), 2)
        return x + tf.cast(self.bias, x.dtype) if self.use_bias else x

    def compute_output_shape(self, shape):
        return (shape[0], *(None if d is None else 2 * d for d in shape[1:3]), self.filters)


class SameConv2D(layers.Conv2D):
    """Keras's stride-1 "same" convolution, differentiated in training as conv_valid does it (the
    input padded first): the spatial encoder's mean and log-variance heads (3x3, 128 to 16
    channels), whose kernel gradient took TensorFlow 22 ms against conv_valid's 11, and the input's
    14 against 9. Inference and exports keep Keras's own convolution; the variables are Keras's."""

    def call(self, inputs, training=None):
        if not training or set(self.strides) != {1} or set(self.dilation_rate) != {1} or self.groups != 1 \
                or self.padding != "same" or self.data_format != "channels_last":
            return super().call(inputs)
        # "same" at stride 1: (k - 1) // 2 before, the rest after, as TensorFlow pads it.
        pads = [[0, 0], *([(k - 1) // 2, k // 2] for k in self.kernel_size), [0, 0]]
        outputs = conv_valid(tf.pad(inputs, pads), ops.cast(self.kernel, inputs.dtype))
        if self.use_bias:
            outputs = outputs + ops.cast(self.bias, outputs.dtype)
        return self.activation(outputs)


class DepthToSpace2x(layers.Layer):
    """Each position's 4*C channels laid out as its 2x2 block of C-channel pixels (sub-pixel
    convolution), for any input size."""

    def call(self, x):
        return tf.nn.depth_to_space(x, 2)

    def compute_output_shape(self, shape):
        return (shape[0], *(None if d is None else 2 * d for d in shape[1:3]), shape[3] // 4)


def same_in_each_subpixel(initializer):
    """A kernel initializer for a convolution followed by DepthToSpace2x: the four pixels of a
    block start with the same filter (ICNR, Aitken et al. 2017), so that the stage begins as a
    nearest-neighbour upsample and trains away from it without a checkerboard."""
    def init(shape, dtype=None):
        one = initializer((*shape[:-1], shape[-1] // 4), dtype=dtype)
        return ops.tile(one, (1, 1, 1, 4))  # depth_to_space reads channel (dy*2+dx)*C + c
    return init


def build_spatial_encoder(config):
    images = keras.Input((None, None, 3), name="images")
    x = images
    for i, (f, k) in enumerate(zip(config.filters, config.kernels)):
        x = layers.Conv2D(f, k, strides=2, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = FusedBatchNorm(momentum=SPATIAL_BN_MOMENTUM, name=f"conv{i}_bn")(x)
        x = layers.ELU(name=f"conv{i}_elu")(x)
    # The codes stay float32 under mixed precision, as the global model's.
    mean = SameConv2D(config.codes, 3, padding="same", name="mean", dtype="float32")(x)
    log_var = SameConv2D(config.codes, 3, padding="same", name="log_var", dtype="float32")(x)
    return keras.Model(images, [mean, log_var], name="encoder")


def build_spatial_decoder(config):
    filters, kernels = config.filters, config.kernels
    z = keras.Input((None, None, config.codes), name="z")
    x = layers.Conv2D(filters[-1], 3, padding="same", use_bias=False, name="expand")(z)
    x = FusedBatchNorm(momentum=SPATIAL_BN_MOMENTUM, name="expand_bn")(x)
    x = layers.ELU(name="expand_elu")(x)
    for i in reversed(range(len(filters))):
        last = i == 0
        out = 3 if last else filters[i - 1]
        if config.upsample == "shuffle" and not last:  # each 2x2 block's pixels from the lower size
            x = layers.Conv2D(4 * out, kernels[i], padding="same", use_bias=False, name=f"up{i}_subpixels",
                              kernel_initializer=same_in_each_subpixel(keras.initializers.GlorotUniform()))(x)
            x = DepthToSpace2x(name=f"up{i}_depth_to_space")(x)
        else:  # resized, then convolved: at full size a sub-pixel stage left a 2x2 grid in the picture
            kernel = 3 if config.upsample == "shuffle" else kernels[i]
            if config.resize_border == "mirror":
                x = ResizeConv2D(out, kernel, use_bias=last, name=f"up{i}")(x)
            else:  # runs from before 2026-12-07: the resized map padded with zeros
                x = Upsample2x(name=f"upsample{i}")(x)
                x = layers.Conv2D(out, kernel, padding="same", use_bias=last, name=f"up{i}")(x)
        if not last:
            x = FusedBatchNorm(momentum=SPATIAL_BN_MOMENTUM, name=f"up{i}_bn")(x)
            x = layers.ELU(name=f"up{i}_elu")(x)
    images = layers.Activation("sigmoid", dtype="float32", name="images")(x)
    return keras.Model(z, images, name="decoder")


def crop_like(images, like):
    """A spatial decoder's output (the input's size rounded up to a multiple of d) cut at the
    bottom and right to the size of `like`."""
    # tf.slice, not [:, :h, :w]: its gradient is a pad, 8 ms against a strided slice's 34 for 16
    # tiles of 320x180 timed alone (a whole step: within noise; README, "What else the training step spends").
    return tf.slice(images, [0, 0, 0, 0], [-1, tf.shape(like)[1], tf.shape(like)[2], -1])


def build_vae(config, seed=None):
    if config.latent == "spatial":
        return VAE(build_spatial_encoder(config), build_spatial_decoder(config), seed=seed, name="vae")
    return VAE(build_encoder(config), build_decoder(config), seed=seed, name="vae")


class Spec(kinds.Spec):
    """The VAE for training.run: squared error summed per tile plus weighted KL, averaged over tiles."""
    tracked = ("loss", "reconstruction_loss", "kl_loss")

    def networks(self, config):
        return {"model": build_vae(config)}

    def build(self, config, plan):
        return {"model": build_vae(config, seed=plan.run.seed)}

    def losses(self, vae, tiles, config, state):
        mean, log_var = vae.encoder(tiles, training=True)
        # A spatial model's output is cropped to the tile, not the tile padded: padding would
        # teach the model to draw the padding, spending capacity and code on pixels no one sees.
        output = vae.decode_like(vae.sampling([mean, log_var]), tiles, training=True)
        reconstruction = ops.mean(ops.sum(ops.square(tiles - output), axis=(1, 2, 3)))
        code_axes = tuple(range(1, len(mean.shape)))  # the code's numbers, or a map's positions and channels
        kl = ops.mean(-0.5 * ops.sum(1 + log_var - ops.square(mean) - ops.exp(log_var), axis=code_axes))
        return {"loss": reconstruction + config.kl_weight * kl, "reconstruction_loss": reconstruction,
                "kl_loss": kl}

    def preview(self, models, samples):
        return [samples, models["model"].reconstruct(samples)]

    def describe(self, config, plan):
        if config.latent == "spatial":
            return (f"a spatial VAE (a map of {config.codes} channels at 1/{config.downsample} of the size, "
                    f"filters {'-'.join(map(str, config.filters))})")
        return f"a {config.codes}-code VAE"

    def saved_models(self, networks, config):
        vae = networks["model"]
        if config.latent == "spatial":  # height and width open: both run at any size
            return {"encoder": (vae.encoder, (None, None, 3)), "decoder": (vae.decoder, (None, None, config.codes))}
        return {"encoder": (vae.encoder, (config.height, config.width, 3)), "decoder": (vae.decoder, (config.codes,))}

    def model_json(self, config, step, logdir):
        spatial = config.latent == "spatial"
        # The scale each source was cut at, from the manifests of the records it trained on; a
        # spatial model whose footage was cut at one scale S renders at S times the frame's size.
        scales, render_scale, unlisted = manifest.scales(configs.run_data(logdir))
        for path in unlisted:
            warn(f"{path}: no manifest beside it, so the scale of its tiles is unknown: model.json gets no "
                 "render_scale")
        return {"width": config.width, "height": config.height, "codes": config.codes, "latent": config.latent,
                "downsample": config.downsample if spatial else None, "vae_step": step,
                "vae_logdir": os.path.abspath(logdir), "scales": scales or None,
                "render_scale": render_scale if spatial and not unlisted else None}
