#!/usr/bin/env python3
"""A model type of a test's own, in this one file: a tiny dense autoencoder that trains, resumes
and exports through the project's training core like the VAE, and a script of a few lines.

    python tests/toy_kind.py train --data ... --logdir ... --steps N
    python tests/toy_kind.py export LOGDIR OUT
"""
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vae import cli, configs  # noqa: E402
from vae.training_options import check_run, training_options  # noqa: E402

cli.quiet_tensorflow()
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers, ops  # noqa: E402

from vae import export, training  # noqa: E402


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    width: int = configs.fixed()
    height: int = configs.fixed()
    codes: int = configs.setting(8, "codes of the toy", architecture=True, low=1)
    noise: float = configs.setting(0.0, "noise added to the tiles while training", low=0)


@configs.register
class Toy(training.Spec):
    name = "toy"
    config_class = ToyConfig
    exports = ("encoder", "decoder")
    tracked = ("loss",)

    def default_learning_rate(self, args, config):
        return 1e-3

    def networks(self, config):
        tiles = keras.Input((config.height, config.width, 3))
        flat = layers.Flatten()(tiles)
        encoder = keras.Model(tiles, [layers.Dense(config.codes)(flat), layers.Dense(config.codes)(flat)])
        z = keras.Input((config.codes,))
        pixels = layers.Dense(config.height * config.width * 3, activation="sigmoid")(z)
        decoder = keras.Model(z, layers.Reshape((config.height, config.width, 3))(pixels))
        return {"model": ToyModel(encoder, decoder)}

    def losses(self, net, tiles, config, state):
        noisy = tiles + config.noise * tf.random.stateless_normal(tf.shape(tiles), state.draw_seed(0))
        mean, _ = net.encoder(noisy, training=True)
        return {"loss": ops.mean(ops.square(net.decoder(mean, training=True) - tiles))}

    def preview(self, models, samples):
        net = models["model"]
        return [samples, net.decoder(net.encoder(samples)[0])]

    def describe(self, config, args):
        return f"a toy of {config.codes} codes"

    def saved_models(self, networks, config):
        net = networks["model"]
        return {"encoder": (net.encoder, (config.height, config.width, 3)), "decoder": (net.decoder, (config.codes,))}

    def model_json(self, config, step, logdir):
        return {"width": config.width, "height": config.height, "codes": config.codes, "vae_step": step}


class ToyModel(keras.Model):
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder


def main(argv):
    command, *rest = argv
    if command == "export":
        logdir, out = rest
        kind, config = configs.load_run(logdir, exporting="encoder")
        fields, _ = export.write_run(export.restore_run(kind, config, logdir), config, logdir, out)
        export.update_model_json(out, **fields)
        return 0
    p = cli.parser(__doc__)
    training_options(p, learning_rate="1e-3")
    Toy().add_options(p)
    args = p.parse_args(rest)
    check_run(args, Toy())
    return training.run(args, Toy())


if __name__ == "__main__":
    cli.run(main)
