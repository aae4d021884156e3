"""A model kind of the tests' own, kept outside vae/kinds: a tiny dense autoencoder that trains,
resumes and exports through the project's training core like the VAE. tests/train_toy.py trains
it; export_graphs.py finds it by the module name that its config.json records ("kind_module":
"toy_kind"), with this folder on PYTHONPATH.

Nothing here imports TensorFlow at the top, so that export_graphs.py can check a toy run's
config.json before TensorFlow's start-up; the Spec's methods import it when they run.
"""
import dataclasses

from vae import configs, kinds


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    width: int = configs.fixed()
    height: int = configs.fixed()
    codes: int = configs.setting(8, "codes of the toy", architecture=True, low=1)
    noise: float = configs.setting(0.0, "noise added to the tiles while training", low=0)


class Toy(configs.Kind):
    name = "toy"
    config_class = ToyConfig
    exports = ("encoder", "decoder")

    learning_rate_help = "1e-3"

    def default_learning_rate(self, given, stored):
        return 1e-3

    def spec(self):
        return ToySpec()


class ToySpec(kinds.Spec):
    tracked = ("loss",)

    def networks(self, config):
        import keras
        from keras import layers
        tiles = keras.Input((config.height, config.width, 3))
        flat = layers.Flatten()(tiles)
        encoder = keras.Model(tiles, [layers.Dense(config.codes)(flat), layers.Dense(config.codes)(flat)],
                              name="encoder")
        z = keras.Input((config.codes,))
        pixels = layers.Dense(config.height * config.width * 3, activation="sigmoid")(z)
        decoder = keras.Model(z, layers.Reshape((config.height, config.width, 3))(pixels), name="decoder")
        # One model holding both, so that the default train_step's one optimizer trains both.
        mean, _ = encoder(tiles)
        return {"model": keras.Model(tiles, decoder(mean), name="toy")}

    def losses(self, net, tiles, config, state):
        import tensorflow as tf
        from keras import ops
        noisy = tiles + config.noise * tf.random.stateless_normal(tf.shape(tiles), state.draw_seed(0))
        return {"loss": ops.mean(ops.square(net(noisy, training=True) - tiles))}

    def preview(self, models, samples):
        return [samples, models["model"](samples)]

    def describe(self, config, plan):
        return f"a toy of {config.codes} codes"

    def saved_models(self, networks, config):
        net = networks["model"]
        return {"encoder": (net.get_layer("encoder"), (config.height, config.width, 3)),
                "decoder": (net.get_layer("decoder"), (config.codes,))}

    def model_json(self, config, step, logdir):
        return {"width": config.width, "height": config.height, "codes": config.codes, "vae_step": step}


KIND = Toy()
