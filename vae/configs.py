"""What a training run's config.json holds, for any model type, without TensorFlow.

Each setting is declared once, as a field of a config dataclass made with `setting()`: its
command-line option (`--name-with-dashes`), its help, its lower bound and whether it shapes the
checkpoint come from that one line, and so do the options (`add_options`), their checks
(`given`) and the checks of config.json. A run's own settings (vae/run_config.py) are declared
the same way. A model type is a `Kind` (config.json's "model" name, its config class,
and `spec()`, which makes its training Spec), defined in a module of its own that vae/kinds
finds by that name. Nothing here imports TensorFlow: scripts refuse a wrong command line or
--logdir before its seconds of start-up.
"""
import dataclasses
import json
import os

from vae.cli import UserError

DEFAULT_LEARNING_RATE = 2e-4  # Adam's rate for a kind that names none of its own (the original VAE's)


def setting(default, help, *, architecture=False, low=None, above=None, choices=None, option=True, metavar=None):
    """A config field that is also a command-line option. `architecture`: it shapes the
    checkpoint, so a resumed run must keep it; `low`: the smallest allowed value; `above`: a
    value it must exceed. A tuple of texts is a repeatable option, a bool a flag, and a
    setting without a default (dataclasses.MISSING) a required option."""
    return dataclasses.field(default=default, metadata=dict(help=help, architecture=architecture, low=low, above=above,
                                                            choices=choices, option=option, metavar=metavar))


def fixed(default=dataclasses.MISSING, architecture=True):
    """A config field that no option sets (the tile size comes from the data)."""
    return dataclasses.field(default=default, metadata=dict(architecture=architecture, option=False))


def option_name(field):
    return "--" + field.name.replace("_", "-")


def settings(config_class):
    """The fields of a config class that are command-line options."""
    return [f for f in dataclasses.fields(config_class) if f.metadata.get("option")]


def declared_once(*field_lists):
    """The setting fields of several config classes (kinds sharing one command line), each once:
    a field of a shared base class (the two refiners' common settings) is one declaration, and
    two declarations of one name are a bug."""
    fields = {}
    for field in (f for fields_ in field_lists for f in fields_):
        if fields.setdefault(field.name, field) is not field:
            raise TypeError(f"{option_name(field)} is declared twice; declare it once, in a shared config class")
    return list(fields.values())


def add_options(parser, fields, unset_is_none=True, help_defaults=None):
    """One option per setting field. `unset_is_none`: an option not given reads None (a resumed
    run then keeps its stored value); otherwise it reads the field's default. `help_defaults`:
    {name: text} for a default that depends on something else (the latent kind's learning rate)."""
    for field in fields:
        required = field.default is dataclasses.MISSING
        help = field.metadata["help"]
        if help_defaults and field.name in help_defaults:
            help += f" (default: {help_defaults[field.name]})"
        elif unset_is_none and field.default not in ((), None, False) and not required and "(default" not in help:
            help += f" (default: {field.default})"
        default = None if (unset_is_none or required) else field.default
        if field.type is bool:
            parser.add_argument(option_name(field), action="store_true", default=default, help=help)
            continue
        kind = dict(action="append") if field.type is tuple else dict(type=field.type)
        parser.add_argument(option_name(field), default=default, required=required, choices=field.metadata["choices"],
                            metavar=field.metadata["metavar"], help=help, **kind)


def given(fields, args):
    """{name: value} of the settings the command line gave (not None), each checked against its bounds."""
    values = {}
    for field in fields:
        value = getattr(args, field.name, None)
        if value is None:
            continue
        low, above = field.metadata["low"], field.metadata["above"]
        if low is not None and value < low:
            raise UserError(f"{option_name(field)} must be at least {low}")
        if above is not None and value <= above:
            raise UserError(f"{option_name(field)} must be above {above}")
        values[field.name] = tuple(value) if field.type is tuple else value
    return values


class Kind:
    """A model type as config.json knows it. A kind module (vae/kinds) subclasses it, sets the
    names below and `spec()`; everything else comes from the config class's fields."""
    name = ""            # config.json's "model", and the name of its module in vae/kinds
    config_class = None  # a dataclass of fixed() and setting() fields: all that rebuilds the model
    exports = ()         # the SavedModels export_graphs.py writes from it: "encoder", "decoder", "refiner"
    learning_rate_help = str(DEFAULT_LEARNING_RATE)  # its default learning rate, as --help says it

    def spec(self):
        """A new kinds.Spec of this kind for one run or export: its networks, step and exports.
        Where TensorFlow is imported, so that a kind module loads without it."""
        raise NotImplementedError

    @property
    def architecture(self):
        """The config fields that shape the checkpoint: a resumed run must keep them."""
        return tuple(f.name for f in dataclasses.fields(self.config_class) if f.metadata.get("architecture"))

    def settings(self):
        return settings(self.config_class)

    def configure(self, given, config, plan):
        """`config` (the stored one, or a fresh one at the data's tile size) with the settings the
        command line gave (`given`, checked against their bounds); `plan` is the run's
        (run_config.Plan: the models folder a refiner trains against, ...)."""
        return self.complete(dataclasses.replace(config, **given))

    def refuse_others(self, args, kinds):
        """A command line shared by several kinds (train_refiner.py) must not give a setting of
        another kind that this one lacks."""
        mine = {f.name for f in self.settings()}
        for other in kinds:
            for field in other.settings():
                if field.name not in mine and getattr(args, field.name, None) is not None:
                    raise UserError(f"{option_name(field)} is a setting of the {other.name} run, not of "
                                    f"the {self.name} run this command line asks for")

    def complete(self, config):
        """Settings whose default depends on others; the config itself by default."""
        return config

    def default_learning_rate(self, given, stored):
        """The rate without --learning-rate: `given` the command line's settings, `stored` the
        resumed run's config (so that a resumed spatial run keeps the spatial default) or None."""
        return DEFAULT_LEARNING_RATE


def config_path(logdir):
    return os.path.join(logdir, "config.json")


def _check_value(field, value, path):
    kind = field.type
    expected, ok = {int: ("a whole number", lambda v: type(v) is int and v >= 0),
                    float: ("a number", lambda v: type(v) in (int, float)),
                    str: ("a text", lambda v: type(v) is str),
                    tuple: ("a list of positive whole numbers",
                            lambda v: isinstance(v, list) and all(type(x) is int and x > 0 for x in v)),
                    "texts": ("a list of texts", lambda v: isinstance(v, list) and all(type(x) is str for x in v))}[
        "texts" if kind is tuple and field.metadata.get("option") else kind]
    if not ok(value):
        raise UserError(f"{path}: {field.name} must be {expected}, not {value!r}")
    return tuple(value) if kind is tuple else value


def config_from_json(config_class, stored, path):
    """The dataclass from config.json's fields; fields it lacks (older runs) keep their defaults.
    Each value must have its field's type: the file is data, and nothing in it is run."""
    values = {f.name: _check_value(f, stored[f.name], path) for f in dataclasses.fields(config_class)
              if f.name in stored}
    missing = [f.name for f in dataclasses.fields(config_class)
               if f.name not in values and f.default is dataclasses.MISSING]
    if missing:
        raise UserError(f"{path}: {', '.join(missing)} missing")
    try:
        return config_class(**values)
    except UserError as e:  # a value of the right type out of its range
        raise UserError(f"{path}: {e}") from None


def read_stored(logdir):
    path = config_path(logdir)
    if not os.path.isfile(path):
        raise UserError(f"{logdir}: no training run here (no config.json); train first")
    try:
        with open(path) as f:
            stored = json.load(f)
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})")
    if not isinstance(stored, dict):
        raise UserError(f"{path}: not a training run's config")
    return path, stored


def load_config(logdir, kind):
    """A logdir's config, or a UserError saying there is no run of this kind there."""
    path, stored = read_stored(logdir)
    if stored.get("model") != kind.name:
        raise UserError(f"{logdir}: not a {kind.name} training run")
    return config_from_json(kind.config_class, stored, path)


def run_data(logdir):
    """The record files a run last trained on (its config.json's `data`)."""
    data = read_stored(logdir)[1].get("data")
    return [path for path in data if isinstance(path, str)] if isinstance(data, list) else []
