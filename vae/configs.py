"""What a training run's config.json holds, for any model type, without TensorFlow.

Each setting is declared once, as a field of a config dataclass made with `setting()`: its
command-line option (`--name-with-dashes`), its help, its lower bound and whether it shapes the
checkpoint come from that one line, and so do `Kind.add_options`, `Kind.configure` and the
checks of config.json. A model type is a `Kind` (config.json's "model" name, its config class,
and `spec()`, which makes its training Spec), defined in a module of its own that vae/kinds
finds by that name. Nothing here imports TensorFlow: scripts refuse a wrong command line or
--logdir before its seconds of start-up.
"""
import dataclasses
import json
import os

from vae.cli import UserError

DEFAULT_LEARNING_RATE = 2e-4  # Adam's rate for a kind that names none of its own (the original VAE's)


def setting(default, help, *, architecture=False, low=None, choices=None, option=True, metavar=None):
    """A config field that is also a command-line option. `architecture`: it shapes the
    checkpoint, so a resumed run must keep it; `low`: the smallest allowed value. A tuple of
    texts is a repeatable option."""
    return dataclasses.field(default=default, metadata=dict(help=help, architecture=architecture, low=low,
                                                            choices=choices, option=option, metavar=metavar))


def fixed(default=dataclasses.MISSING, architecture=True):
    """A config field that no option sets (the tile size comes from the data)."""
    return dataclasses.field(default=default, metadata=dict(architecture=architecture, option=False))


def option_name(field):
    return "--" + field.name.replace("_", "-")


class Kind:
    """A model type as config.json knows it. A kind module (vae/kinds) subclasses it, sets the
    names below and `spec()`; everything else comes from the config class's fields."""
    name = ""            # config.json's "model", and the name of its module in vae/kinds
    config_class = None  # a dataclass of fixed() and setting() fields: all that rebuilds the model
    exports = ()         # the SavedModels export_graphs.py writes from it: "encoder", "decoder", "refiner"

    def spec(self):
        """A new kinds.Spec of this kind for one run or export: its networks, step and exports.
        Where TensorFlow is imported, so that a kind module loads without it."""
        raise NotImplementedError

    @property
    def architecture(self):
        """The config fields that shape the checkpoint: a resumed run must keep them."""
        return tuple(f.name for f in dataclasses.fields(self.config_class) if f.metadata.get("architecture"))

    def settings(self):
        return [f for f in dataclasses.fields(self.config_class) if f.metadata.get("option")]

    def add_options(self, parser):
        """One option per setting. Its default is None ("not given"): a new run takes the
        field's default, a resumed one keeps what it was trained with."""
        for field in self.settings():
            if option_name(field) in parser._option_string_actions:
                continue  # a kind sharing a setting of another on one command line (train_refiner.py)
            shown = field.default not in ((), None) and "(default" not in field.metadata["help"]
            default = f" (default: {field.default})" if shown else ""
            repeated = dict(action="append") if field.type is tuple else dict(type=field.type)
            parser.add_argument(option_name(field), default=None, choices=field.metadata["choices"],
                                metavar=field.metadata["metavar"], help=field.metadata["help"] + default,
                                **repeated)

    def configure(self, args, config):
        """`config` (the stored one, or a fresh one at the data's tile size) with the settings the
        command line gives, each checked against its bound."""
        given = {}
        for field in self.settings():
            value = getattr(args, field.name, None)
            if value is None:
                continue
            low = field.metadata["low"]
            if low is not None and value < low:
                raise UserError(f"{option_name(field)} must be at least {low}")
            given[field.name] = tuple(value) if field.type is tuple else value
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

    def default_learning_rate(self, args, config):
        return DEFAULT_LEARNING_RATE

    def learning_rate(self, args, config=None):
        """--learning-rate, or else the kind's default (`config`: the stored run's when resuming, so
        a resumed spatial run keeps the spatial default; None for a new run)."""
        if args.learning_rate is not None:
            return args.learning_rate
        return self.default_learning_rate(args, config)


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


def run_config(kind, args, width=None, height=None):
    """The config of this run; on resume the stored one, with what the command line may change,
    refused if that changes the architecture. Without the data's tile size (a script checking
    before TensorFlow reads the records) only the command line's settings are compared, and a
    new run gives None."""
    path = config_path(args.logdir)
    if not os.path.isfile(path):
        if width is None:
            kind.configure(args, kind.config_class(width=1, height=1))  # only to check the bounds
            return None
        return kind.configure(args, kind.config_class(width=width, height=height))
    stored = load_config(args.logdir, kind)
    size = {} if width is None else dict(width=width, height=height)
    config = kind.configure(args, dataclasses.replace(stored, **size))
    for name in kind.architecture:
        if getattr(stored, name) != getattr(config, name):
            raise UserError(f"{args.logdir} holds a run with {name}={getattr(stored, name)}, not "
                            f"{getattr(config, name)}; use another --logdir")
    return config


def run_data(logdir):
    """The record files a run last trained on (its config.json's `data`)."""
    data = read_stored(logdir)[1].get("data")
    return [path for path in data if isinstance(path, str)] if isinstance(data, list) else []


def save_config(kind, config, args, files, notes, kind_module=None):
    """config.json: the kind's name and config, the Spec's `notes` (facts of the run) and, for a
    kind outside vae/kinds, `kind_module`: the module that export_graphs.py imports to find it."""
    where = {"kind_module": kind_module} if kind_module else {}
    with open(config_path(args.logdir) + ".tmp", "w") as f:
        json.dump({"model": kind.name, **where, **dataclasses.asdict(config), **notes, "batch_size": args.batch_size,
                   "learning_rate": args.learning_rate, "seed": args.seed,
                   "data": [os.path.abspath(path) for path in files]}, f, indent=2)  # export reads their manifests
    os.replace(config_path(args.logdir) + ".tmp", config_path(args.logdir))
