"""Model kinds, each a module found by its name, as big_vision finds models by name.

config.json's "model" names the kind. Its module is `vae.kinds.<name>`, or for a kind kept
outside this package (a test's, a user's own) the module that config.json's "kind_module" names,
imported from sys.path like any Python module (its folder on PYTHONPATH). The module defines:

- its config dataclass (configs.setting() and configs.fixed() fields);
- `KIND`, an instance of its configs.Kind subclass: the name, the config class, the exports,
  and `spec()`, which makes a `Spec` for one run or export.

The module's top imports no TensorFlow: scripts find the kind and check the command line and
the logdir before TensorFlow's start-up; `spec()`, and the Spec's methods, import it when they
run.
"""
import importlib
import pkgutil
import re

from vae import configs
from vae.cli import UserError

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def built_in():
    """The names of the kinds in this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__))


def find(name, kind_module=None, where="config.json"):
    """The KIND of `vae.kinds.<name>`, or of module `kind_module`; `where` names the file that
    asked, for the error."""
    if not isinstance(name, str) or not NAME.match(name):
        raise UserError(f"{where}: model type {name!r} is not a model name")
    if kind_module is not None and (not isinstance(kind_module, str) or not MODULE.match(kind_module)):
        raise UserError(f"{where}: kind_module {kind_module!r} is not a Python module name")
    module_name = kind_module or f"{__name__}.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is None or not (module_name == e.name or module_name.startswith(e.name + ".")):
            raise  # the kind's module exists, and something it imports is missing: a real bug
        if kind_module:
            raise UserError(f"{where}: model type {name!r} comes from module {kind_module!r}, which is not "
                            "importable here; put its folder on PYTHONPATH") from None
        raise UserError(f"{where}: unknown model type {name!r} (no vae/kinds/{name}.py; known: "
                        f"{', '.join(built_in())})") from None
    kind = getattr(module, "KIND", None)
    if not isinstance(kind, configs.Kind) or kind.name != name:
        raise UserError(f"{where}: module {module_name} defines no KIND named {name!r}")
    return kind


def module_of(kind):
    """What config.json must say for `find` to import this kind again: None for a kind of this
    package, else its module's name. A kind defined in a script that runs as __main__ could not
    be imported by another script, so it is refused."""
    module = type(kind).__module__
    if module == f"{__name__}.{kind.name}":
        return None
    if module == "__main__":
        raise UserError(f"the {kind.name} kind is defined in the script that runs it; define it in a module "
                        "that the script imports, so that export_graphs.py can import it too")
    return module


def load_run(logdir, exporting=None):
    """(kind, config) of the run in a logdir, its kind found by config.json's model name; with
    `exporting`, the kind must export that SavedModel (for export_graphs.py's --vae, --refiner)."""
    path, stored = configs.read_stored(logdir)
    name = stored.get("model")
    kind = find(name, stored.get("kind_module"), where=path)
    if exporting and exporting not in kind.exports:
        raise UserError(f"{logdir}: a {name} run, which gives no {exporting}")
    return kind, configs.config_from_json(kind.config_class, stored, path)


class Spec:
    """What a model type brings to a run or an export, made by its Kind's `spec()`: `tracked`,
    `notes` and the methods below; it may keep the run's state (a frozen VAE, the config). The
    defaults fit a model trained by one optimizer on one loss (`losses`); a type with several
    models (a GAN) overrides `optimizers` and `train_step`, as the Keras DCGAN example does with
    two tapes. Defined without TensorFlow, which the methods import when they run."""
    tracked = ()         # names of the losses, logged as TensorBoard scalars
    notes = {}           # facts of the run for config.json, set by build()

    def networks(self, config):
        """{name: Keras model} that the checkpoint holds and export restores; "model" is the
        main one (old checkpoints name it so)."""
        raise NotImplementedError

    def build(self, config, plan):
        """The networks to train, built inside the strategy's scope (a type that trains
        against frozen models loads them here too: `plan` is the run's run_config.Plan)."""
        return self.networks(config)

    def optimizers(self, models, config, plan):
        """{model name: optimizer}: by default one Adam at the run's learning rate for "model"."""
        from vae import training
        return {"model": training.make_optimizer(plan.run.learning_rate)}

    def train_step(self, state, tiles, config):
        """One update on float tiles in 0..1 of this replica; returns {name: scalar}."""
        import tensorflow as tf
        with tf.GradientTape() as tape:
            losses = self.losses(state.models["model"], tiles, config, state)
        state.update("model", tape, losses["loss"])
        return losses

    def losses(self, net, tiles, config, state):
        """{name: scalar} for the default train_step; "loss" is minimised."""
        raise NotImplementedError

    def dataset(self, plan, size, config):
        """The batches train_step gets (uint8; made float on the device): by default shuffled
        tiles of every source of the plan's record files."""
        from vae import records
        return records.training_dataset(plan.files, size, plan.run.batch_size, seed=plan.run.seed,
                                        cache_gb=plan.run.cache_gb)

    def preview(self, models, samples):
        """Rows of images for the preview grid."""
        raise NotImplementedError

    def describe(self, config, plan):
        """A few words for the start-up line."""
        raise NotImplementedError

    def saved_models(self, networks, config):
        """{export name: (Keras model, input shape without the batch)} for export_graphs.py."""
        raise NotImplementedError

    def model_json(self, config, step, logdir):
        """What export_graphs.py adds to model.json for this run."""
        return {}
