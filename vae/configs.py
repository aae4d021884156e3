"""What a training run's config.json holds, for each model type, without TensorFlow: the config
dataclasses, the fields that shape a checkpoint, what the command line sets, and reading and
writing the file. Scripts use it to refuse a wrong --logdir before TensorFlow's start-up; the
model types' Specs (vae/model.py, vae/refiner.py) build on these kinds.
"""
import dataclasses
import json
import os

from vae.cli import UserError

FILTERS = (64, 64, 128, 128, 192, 256)
KERNELS = (7, 5, 5, 3, 3, 3)
LATENTS = ("global", "spatial")
DOWNSAMPLE = 8


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Everything that builds the VAE; saved as LOGDIR/config.json, which export_graphs.py rebuilds it from."""
    width: int
    height: int
    codes: int = 512
    kl_weight: float = 1.0
    filters: tuple = FILTERS
    kernels: tuple = KERNELS
    # "global": one code of `codes` numbers per tile (the original); "spatial": a map of `codes`
    # channels at 1/downsample of the tile's size. A config.json without them is global.
    latent: str = "global"
    downsample: int = DOWNSAMPLE

    def __post_init__(self):
        if self.latent not in LATENTS:
            raise UserError(f"latent must be one of {', '.join(LATENTS)}, not {self.latent!r}")
        if not is_power_of_two(self.downsample) or self.downsample < 2:
            raise UserError(f"downsample must be a power of two of at least 2, not {self.downsample}")


def is_power_of_two(n):
    return type(n) is int and n > 0 and n & (n - 1) == 0


def spatial_layers(downsample):
    """Filters and kernels of a spatial VAE's log2(downsample) strided convolutions (and, in
    reverse, of its decoder): chosen by measurement (see vae/model.py)."""
    depth = downsample.bit_length() - 1
    filters = tuple(min(32 * 2 ** i, 128) for i in range(depth))
    kernels = (5,) + (3,) * (depth - 1)
    return filters, kernels


@dataclasses.dataclass(frozen=True)
class RefinerConfig:
    """Everything that builds the refiner and weighs its losses; saved as LOGDIR/config.json."""
    width: int
    height: int
    filters: int = 32
    blocks: int = 4
    identity_steps: int = 500
    tile_weight: float = 1.0
    away_weight: float = 0.001
    away_margin: float = 0.01


class Kind:
    """A model type as config.json knows it. Subclasses set the three names and `configure`."""
    name = ""            # config.json's "model"
    config_class = None  # a dataclass with `width` and `height`: all that rebuilds the model
    architecture = ()    # config fields that shape the checkpoint; a resumed run must keep them
    notes = {}           # extra facts for config.json, set by a Spec's build()

    def configure(self, args, config):
        """The run's config: `config` (the stored one, or a fresh one at the data's tile size)
        with what the command line sets."""
        raise NotImplementedError


class VAE(Kind):
    name = "vae"
    config_class = VAEConfig
    architecture = ("width", "height", "latent", "downsample", "codes", "filters", "kernels")

    def configure(self, args, config):
        layers = {}
        if args.latent == "spatial" and config.latent != "spatial":  # a new run (or one refused for its latent)
            layers = dict(zip(("filters", "kernels"), spatial_layers(args.downsample)))
        return dataclasses.replace(config, codes=args.codes, kl_weight=args.kl_weight, latent=args.latent,
                                   downsample=args.downsample, **layers)


class Refiner(Kind):
    name = "refiner"
    config_class = RefinerConfig
    architecture = ("width", "height", "filters", "blocks")

    def configure(self, args, config):
        return dataclasses.replace(config, filters=args.filters, blocks=args.blocks,
                                   identity_steps=args.identity_steps, tile_weight=args.tile_weight,
                                   away_weight=args.away_weight, away_margin=args.away_margin)


def config_path(logdir):
    return os.path.join(logdir, "config.json")


def config_from_json(config_class, stored, path):
    """The dataclass from config.json's fields; fields it lacks (older runs) keep their defaults.
    Each value must have its field's type: the file is data, and nothing in it is run."""
    values = {}
    for field in dataclasses.fields(config_class):
        if field.name not in stored:
            continue
        value, kind = stored[field.name], field.type
        expected, ok = {int: ("a whole number", lambda v: type(v) is int and v >= 0),
                        float: ("a number", lambda v: type(v) in (int, float)),
                str: ("a string", lambda v: type(v) is str),
                        tuple: ("a list of positive whole numbers",
                                lambda v: isinstance(v, list) and all(type(x) is int and x > 0 for x in v))}[kind]
        if not ok(value):
            raise UserError(f"{path}: {field.name} must be {expected}, not {value!r}")
        values[field.name] = tuple(value) if kind is tuple else value
    try:
        return config_class(**values)
    except UserError as e:  # a value of the right type out of its range
        raise UserError(f"{path}: {e}") from None


def load_config(logdir, kind):
    """A logdir's config, or a UserError saying there is no run of this kind there."""
    path = config_path(logdir)
    if not os.path.isfile(path):
        raise UserError(f"{logdir}: no training run here (no config.json); train first")
    try:
        with open(path) as f:
            stored = json.load(f)
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})")
    if not isinstance(stored, dict) or stored.get("model") != kind.name:
        raise UserError(f"{logdir}: not a {kind.name} training run")
    return config_from_json(kind.config_class, stored, path)


def run_config(kind, args, width=None, height=None):
    """The config of this run; on resume the stored one, with what the command line may change,
    refused if that changes the architecture. Without the data's tile size (a script checking
    before TensorFlow reads the records) only the command line's settings are compared, and a
    new run gives None."""
    path = config_path(args.logdir)
    if not os.path.isfile(path):
        return None if width is None else kind.configure(args, kind.config_class(width=width, height=height))
    stored = load_config(args.logdir, kind)
    size = {} if width is None else dict(width=width, height=height)
    config = kind.configure(args, dataclasses.replace(stored, **size))
    for name in kind.architecture:
        if getattr(stored, name) != getattr(config, name):
            raise UserError(f"{args.logdir} holds a run with {name}={getattr(stored, name)}, not "
                            f"{getattr(config, name)}; use another --logdir")
    return config


def save_config(kind, config, args, files):
    with open(config_path(args.logdir) + ".tmp", "w") as f:
        json.dump({"model": kind.name, **dataclasses.asdict(config), **kind.notes, "batch_size": args.batch_size,
                   "learning_rate": args.learning_rate, "seed": args.seed, "data": files}, f, indent=2)
    os.replace(config_path(args.logdir) + ".tmp", config_path(args.logdir))
