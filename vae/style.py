"""The style refiner: the refiner trained adversarially toward a style's texture (issue 20 of the
original's "a real VAEGAN approach"), described once: its generator, discriminator and step.

A latent code trained only to reconstruct carries colour, not texture; the only signal toward a
painting's brushwork that needs no pretrained network comes from the painting's own patches. So:

- the refiner takes what mogrify renders, `render(z + shift)` with the shift toward the style
  (beta drawn per tile), and must make it impossible for a patch discriminator to tell from the
  style's own tiles (hinge loss; `-mean(D(fake))` for the refiner);
- a layout term keeps the unrefined render's low frequencies (averages over squares of
  `content_pool` pixels), leaving the fine texture free; an identity term keeps a painting
  refined the same; a steadiness term makes the refined picture of a frame moved by a pixel or
  two move with it instead of flickering;
- the adversarial term is balanced against the layout term by their gradient norms at the
  refiner's last layer (VQGAN's adaptive weight, capped), and starts after `identity_steps`
  in which the refiner learns to give its input back;
- a texture term (`texture_weight`, vae/texture.py) asks directly for the style's patch
  statistics: the texture measure's sliced Wasserstein distance, made differentiable; with
  `adversarial_weight` 0 it stands alone and the discriminator is neither run nor updated;
- the discriminator looks at several scales (each half the last) so it sees whole strokes;
  the refiner upsamples by resizing and convolving, which leaves no transposed convolution's grid.

Fully convolutional: against a spatial-code VAE it runs at the render size.
"""
import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from vae import kinds, latent, records, texture
from vae.kinds import style_refiner as style_refiner_kind
from vae.cli import UserError
from vae.model import Upsample2x
from vae.refiner import crop_like, residual_block

StyleRefinerConfig = style_refiner_kind.StyleRefinerConfig  # here too, beside its builders, for their callers


def upsampled_like(x, like, filters, name):
    x = Upsample2x(name=f"{name}_resize")(x)
    x = crop_like(x, like)
    return layers.ELU()(layers.Conv2D(filters, 3, padding="same", name=name)(x))


def build_generator(config, any_size=True):
    """Full resolution, a half and a quarter; residual blocks at the quarter (a receptive field
    of about 80 pixels: room to paint a stroke); back up by resize and convolution with skips."""
    f = config.filters
    shape = (None, None, 3) if any_size else (config.height, config.width, 3)
    images = keras.Input(shape, name="images")
    full = layers.ELU()(layers.Conv2D(f, 3, padding="same", name="full_res")(images))
    half = layers.ELU()(layers.Conv2D(2 * f, 3, strides=2, padding="same", name="down1")(full))
    x = layers.ELU()(layers.Conv2D(4 * f, 3, strides=2, padding="same", name="down2")(half))
    for i in range(config.blocks):
        x = residual_block(x, 4 * f, f"block{i}")
    x = upsampled_like(x, half, 2 * f, "up1")
    x = layers.ELU()(layers.Conv2D(2 * f, 3, padding="same", name="merge1")(layers.Concatenate()([x, half])))
    x = upsampled_like(x, full, f, "up2")
    x = layers.ELU()(layers.Conv2D(f, 3, padding="same", name="merge2")(layers.Concatenate()([x, full])))
    correction = layers.Conv2D(3, 3, padding="same", name="to_rgb", dtype="float32")(x)
    refined = layers.Add(dtype="float32")([images, correction])
    refined = layers.Activation(lambda t: ops.clip(t, 0.0, 1.0), dtype="float32", name="refined")(refined)
    return keras.Model(images, refined, name="style_refiner")


def build_discriminator(config):
    """A PatchGAN per scale (pix2pix's: strided 4x4 convolutions, LeakyReLU, a map of scores),
    the input halved by average pooling for each further scale; one score map per scale."""
    images = keras.Input((None, None, 3), name="images")
    x, scores = images, []
    for scale in range(config.disc_scales):
        if scale:
            x = layers.AveragePooling2D(2, padding="same", name=f"pool{scale}")(x)
        y = x
        for i in range(config.disc_layers):
            y = layers.Conv2D(config.disc_filters * min(2 ** i, 8), 4, strides=2, padding="same",
                              name=f"s{scale}_conv{i}")(y)
            y = layers.LeakyReLU(0.2)(y)
        y = layers.Conv2D(config.disc_filters * min(2 ** config.disc_layers, 8), 4, padding="same",
                          name=f"s{scale}_conv{config.disc_layers}")(y)
        y = layers.LeakyReLU(0.2)(y)
        scores.append(layers.Conv2D(1, 4, padding="same", name=f"s{scale}_score", dtype="float32")(y))
    return keras.Model(images, scores, name="discriminator")


def low_pass(images, side):
    return ops.average_pool(images, side, side, padding="same")


class Spec(kinds.Spec):
    """The style refiner for training.run: two models, two optimizers, two tapes."""
    @property
    def tracked(self):
        """The scalars of the terms this run has (build() sets the config): no discriminator's at
        adversarial weight 0, the texture term's per level when it is on."""
        names = ["loss", "content_loss", "identity_loss", "steady_loss"]
        if self.config.adversarial_weight > 0:
            names += ["adversarial_loss", "adaptive_weight", "disc_loss", "disc_real", "disc_fake"]
        if self.config.texture_weight > 0:
            names += ["texture_loss"] + [f"texture_level_{k}" for k in range(self.texture_levels)]
        return tuple(names)

    @property
    def texture_levels(self):
        return texture.pyramid_levels(self.config.height, self.config.width)

    def networks(self, config):
        return {"model": build_generator(config, any_size=config.latent == "spatial")}

    def build(self, config, plan):
        self.vae = plan.load_models(config)
        sources = latent.load_embeddings(plan.models, self.vae.codes)
        self.style_label, style_mean, _ = latent.mix_styles(sources, list(config.style))
        self.style_sources = [latent.parse_style(text, sources)[0] for text in config.style]
        self.video_sources = [n for n, e in sources.items() if e["kind"] == "video" and n not in self.style_sources]
        if not self.video_sources:
            raise UserError(f"{plan.models}/embeddings.json has no video source to learn the renders from")
        counts = np.array([sources[n]["count"] for n in self.video_sources], np.float64)
        means = np.array([sources[n]["mean"] for n in self.video_sources], np.float64)
        # mogrify takes a clip's own mean; over training tiles of several clips, their average.
        self.video_mean = tf.constant((counts[:, None] * means).sum(0) / counts.sum(), tf.float32)
        self.style_mean = tf.constant(style_mean, tf.float32)
        self.notes = {"models": plan.models, "vae_step": self.vae.meta.get("vae_step"),
                      "style_label": self.style_label}
        self.config = config
        if config.texture_weight > 0 and self.texture_levels == 1 and config.texture_layout_weight == 0:
            raise UserError(f"{config.width}x{config.height} tiles are too small for a texture level finer than "
                            "the layout; give --texture-layout-weight, or use larger tiles")
        # The discriminator is built and kept in the checkpoint even when unused (adversarial
        # weight 0), so that a run may resume with it on.
        return {**self.networks(config), "discriminator": build_discriminator(config)}

    def optimizers(self, models, config, plan):
        # beta_1 0.5, as GANs since DCGAN: momentum that remembers less of a moving target.
        return {"model": keras.optimizers.Adam(plan.run.learning_rate, beta_1=0.5),
                "discriminator": keras.optimizers.Adam(config.disc_learning_rate, beta_1=0.5)}

    def dataset(self, plan, size, config):
        """Pairs of batches: video tiles (to render and refine) and the style's tiles (real)."""
        run = plan.run
        video = records.training_dataset(plan.files, size, run.batch_size, seed=run.seed, cache_gb=run.cache_gb,
                                         sources=self.video_sources)
        style = records.training_dataset(plan.files, size, run.batch_size, seed=run.seed + 1, cache_gb=run.cache_gb,
                                         sources=self.style_sources)
        return tf.data.Dataset.zip((video, style))

    def shifted_render(self, tiles, beta, alpha):
        z, _ = self.vae.encode(tiles)
        beta = tf.reshape(beta, [-1] + [1] * (len(z.shape) - 1))
        shifted = z - alpha * self.video_mean + beta * self.style_mean
        return tf.stop_gradient(self.vae.decode(shifted, size=(tiles.shape[2], tiles.shape[1])))

    def crop(self, images, seed, config):
        """The same random square-ish crop of 3/4 of each side for real and fake, and a flip."""
        h, w = config.height * 3 // 4, config.width * 3 // 4
        cropped = tf.image.stateless_random_crop(images, [tf.shape(images)[0], h, w, 3], seed)
        return tf.image.stateless_random_flip_left_right(cropped, seed + 1)

    def texture_term(self, refined, style, seed, config):
        """(the weighted mean over levels, [the distance per level, finest first]); the coarsest
        level, the layout, weighs texture_layout_weight against the others' 1."""
        levels = texture.texture_distances(refined, style, seed)
        weights = [1.0] * (len(levels) - 1) + [config.texture_layout_weight]
        return tf.add_n([w * d for w, d in zip(weights, levels)]) / sum(weights), levels

    def train_step(self, state, batch, config):
        video, style = batch
        generator, discriminator = state.models["model"], state.models["discriminator"]
        n = tf.shape(video)[0]
        beta = tf.random.stateless_uniform([n], state.draw_seed(0), config.beta_low, config.beta_high)
        shifted = self.shifted_render(video, beta, config.alpha)
        # The steadiness pair: the same render moved by up to two pixels, with a little noise, as
        # the next frame of a slow pan would come out of the VAE.
        move = tf.random.stateless_uniform([2], state.draw_seed(1), -2, 3, tf.int32)
        noise = tf.random.stateless_normal(tf.shape(shifted), state.draw_seed(2), stddev=1.5 / 255)
        moved = tf.clip_by_value(tf.roll(shifted, move, axis=[1, 2]) + noise, 0.0, 1.0)
        styling = tf.cast(state.optimizers["model"].iterations >= config.identity_steps, tf.float32)
        adversarial_on, texture_on = config.adversarial_weight > 0, config.texture_weight > 0  # fixed per run
        last = generator.get_layer("to_rgb").kernel
        with tf.GradientTape(persistent=True) as tape:
            refined = generator(shifted, training=True)
            refined_style = generator(style, training=True)
            refined_moved = generator(moved, training=True)
            content = ops.mean(ops.square(low_pass(refined, config.content_pool)
                                          - low_pass(shifted, config.content_pool)))
            identity = ops.mean(ops.abs(refined_style - style))
            margin = 4  # rolled-in edges are not a frame's content
            steady = ops.mean(ops.square(tf.roll(refined, move, axis=[1, 2]) - refined_moved)
                              [:, margin:-margin, margin:-margin])
            kept = config.content_weight * content
            styled = kept + config.style_identity_weight * identity + config.steady_weight * steady
            logs = {}
            if texture_on:
                textured, levels = self.texture_term(refined, style, state.draw_seed(5), config)
                styled += config.texture_weight * textured
                logs = {"texture_loss": textured, **{f"texture_level_{k}": d for k, d in enumerate(levels)}}
            if adversarial_on:
                fake_scores = discriminator(self.crop(refined, state.draw_seed(3), config), training=False)
                adversarial = -tf.add_n([ops.mean(s) for s in fake_scores]) / len(fake_scores)
            # Identity steps: give the input back, exactly, before any texture is asked for.
            give_back = ops.mean(ops.square(refined - shifted)) + ops.mean(ops.square(refined_style - style))
        if adversarial_on:
            content_norm = tf.norm(tape.gradient(kept, last))
            adversarial_norm = tf.norm(tape.gradient(adversarial, last))
            adaptive = tf.stop_gradient(tf.clip_by_value(content_norm / (adversarial_norm + 1e-4), 0.0,
                                                         config.max_adaptive_weight))
            weight = styling * adaptive * config.adversarial_weight
            with tape:  # the persistent tape records on: the sum is what the refiner minimises
                styled += weight * adversarial
        with tape:
            loss = tf.where(styling > 0, styled, give_back)
        state.update("model", tape, loss)
        del tape
        logs.update(loss=loss, content_loss=content, identity_loss=identity, steady_loss=steady)
        if not adversarial_on:  # no discriminator step: its weights and its Adam stay as they are
            return logs
        seed = state.draw_seed(4)
        with tf.GradientTape() as disc_tape:
            real_scores = discriminator(self.crop(style, seed, config), training=True)
            fake_scores = discriminator(self.crop(tf.stop_gradient(refined), seed + 7, config), training=True)
            real = tf.add_n([ops.mean(ops.relu(1.0 - s)) for s in real_scores]) / len(real_scores)
            fake = tf.add_n([ops.mean(ops.relu(1.0 + s)) for s in fake_scores]) / len(fake_scores)
            disc_loss = real + fake
        state.update("discriminator", disc_tape, disc_loss)
        return {**logs, "adversarial_loss": adversarial, "adaptive_weight": weight, "disc_loss": disc_loss,
                "disc_real": real, "disc_fake": fake}

    def preview(self, models, samples):
        """Rows: tiles, their renders shifted with the largest beta trained on, those refined."""
        beta = tf.fill([len(samples)], self.config.beta_high)
        shifted = self.shifted_render(tf.constant(samples), beta, self.config.alpha)
        return [samples, shifted, models["model"](shifted, training=False)]

    def describe(self, config, plan):
        return (f"the style refiner toward {self.style_label!r} against {plan.models}, "
                f"{config.identity_steps} identity steps first,")

    def saved_models(self, networks, config):
        shape = (None, None, 3) if config.latent == "spatial" else (config.height, config.width, 3)
        return {"refiner": (networks["model"], shape)}

    def model_json(self, config, step, logdir):
        return {"refiner_step": step, "refiner_style": list(config.style)}
