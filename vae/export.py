"""SavedModels with the contract's signatures, and loading them back.

Each exported model is a tf.Module holding the Keras model as a tracked attribute and one
`serving_default` signature; it loads with TensorFlow alone. `Models` loads an export folder,
once vae/safety.py has checked it, and keeps the loaded objects alive while their signatures are used.
"""
import json
import os

import tensorflow as tf

from vae import safety, training
from vae.cli import UserError, atomic_path

SIGNATURES = safety.SIGNATURES


class Exported(tf.Module):
    """One Keras model, tracked so that the serving signature reaches its variables."""

    def __init__(self, kind, keras_model):
        super().__init__(name=kind)
        self.model = keras_model


def serving_signature(module, kind, input_shape):
    """The contract's `serving_default` for an Exported module: the model in inference mode,
    float32 in and out. Not an attribute of the module, so that it is saved once, as the
    signature alone (as an attribute too, a second copy of its graph made every load slower:
    0.9 s against 0.7 s for the three models of the demo)."""
    input_name, output_names = SIGNATURES[kind]
    spec = tf.TensorSpec([None, *input_shape], tf.float32, name=input_name)

    def serve(x):
        outputs = module.model(x, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return {name: tf.cast(out, tf.float32) for name, out in zip(output_names, outputs)}

    return tf.function(serve, input_signature=[spec]).get_concrete_function()


def save(kind, keras_model, input_shape, folder):
    """Write DIR/kind as a SavedModel, beside and then renamed into place."""
    module = Exported(kind, keras_model)
    with atomic_path(os.path.join(folder, kind)) as tmp:
        tf.saved_model.save(module, tmp, signatures={"serving_default": serving_signature(module, kind, input_shape)})


def restore_run(kind, config, logdir):
    """A finished run's networks rebuilt from its config (kinds.load_run) and restored from its
    latest checkpoint, every weight found there (a changed layout is an error, as in training).
    Returns (its Spec, the networks, the step)."""
    spec = kind.spec()
    networks = spec.networks(config)
    latest = tf.train.latest_checkpoint(os.path.join(logdir, "checkpoints"))
    if not latest:
        raise UserError(f"{logdir}: no checkpoint yet; train first")
    step = tf.Variable(0, dtype=tf.int64)
    training.restore(tf.train.Checkpoint(step=step, **networks), latest, logdir, partial=True)
    return spec, networks, int(step.numpy())


def write_run(restored, config, logdir, folder):
    """Write the SavedModels of one restored run (restore_run's answer) into `folder`; returns
    what it adds to model.json and the names written."""
    spec, networks, step = restored
    written = spec.saved_models(networks, config)
    os.makedirs(folder, exist_ok=True)
    for name, (keras_model, input_shape) in written.items():
        save(name, keras_model, input_shape, folder)
    return spec.model_json(config, step, logdir), list(written)


def update_model_json(folder, **fields):
    """model.json: tile size, code count and the step of each exported checkpoint (and what each
    run adds: Spec.model_json); a field given as None is removed."""
    path = os.path.join(folder, "model.json")
    current = {}
    if os.path.isfile(path):
        with open(path) as f:
            current = json.load(f)
    current.update(fields)
    current = {k: v for k, v in current.items() if v is not None}  # None: a field the new export drops
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(current, f, indent=2)
    return current


class Models:
    """An export folder loaded: encode, decode and refine as batched TensorFlow calls.

    `latent` is "global" (tile-size images, codes [N,codes]) or "spatial" (images of any size,
    codes [N,h,w,codes] at 1/`downsample` of it, rounded up); `downsample` is None for global.
    `render_scale`: S when a spatial model learned its footage at S times the frame's size, else None.
    """

    def __init__(self, folder, need_refiner=False, unsafe=False, found=None):
        """`found`: what safety.read_models_folder returned for this folder, when a script
        checked it before importing TensorFlow; read here otherwise."""
        self.meta, paths = found or safety.read_models_folder(folder, need_refiner)
        self.folder = folder
        self.width, self.height, self.codes = self.meta["width"], self.meta["height"], self.meta["codes"]
        self.latent = self.meta.get("latent", "global")
        self.downsample = self.meta["downsample"] if self.latent == "spatial" else None
        self.render_scale = self.meta.get("render_scale")  # a spatial model's learned scale, or None
        safety.check_ops(paths, unsafe)  # a shared folder is data: nothing in it runs before this
        # kept: the signatures need the loaded objects alive
        self._loaded = {kind: tf.saved_model.load(path) for kind, path in paths.items()}
        self._fn = safety.serving_functions(folder, self._loaded, self.width, self.height, self.codes,
                                            self.downsample)
        self.has_refiner = "refiner" in self._fn

    def check_tile_size(self, size):
        """Refuse records whose tiles, (width, height), are not the size the models were trained at."""
        if (self.width, self.height) != tuple(size):
            raise UserError(f"the models in {self.folder} take {self.width}x{self.height} tiles, "
                            f"the records hold {size[0]}x{size[1]}")

    def encode(self, images):
        out = self._fn["encoder"](images=images)
        return out["mean"], out["log_var"]

    def decode(self, z, size=None):
        """Images of the codes; a spatial model's are h*d x w*d, or cut to `size` (width,
        height) at the bottom and right: the size of the images that were encoded."""
        images = self._fn["decoder"](z=z)["images"]
        if size is not None and self.latent == "spatial":
            images = images[:, :size[1], :size[0]]
        return images

    def refine(self, images):
        return self._fn["refiner"](images=images)["images"] if self.has_refiner else images

    def render(self, z, size=None):
        """Decode (cut to `size`, as decode), then refine when a refiner was exported."""
        return self.refine(self.decode(z, size))
