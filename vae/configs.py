"""What a training run's config.json holds, for each model type, without TensorFlow.

Each setting is declared once, as a field of a config dataclass made with `setting()`: its
command-line option (`--name-with-dashes`), its help, its lower bound and whether it shapes the
checkpoint come from that one line, and so do `Kind.add_options`, `Kind.configure` and the
checks of config.json. A model type is a `Kind` (config.json's "model" name, its config class
and where its `training.Spec` lives), registered in `KINDS`; the scripts look kinds up there, so
export_graphs.py needs no change for a new one. Nothing here imports TensorFlow: scripts refuse
a wrong command line or --logdir before its seconds of start-up.
"""
import dataclasses
import importlib
import json
import os

from vae import safety
from vae.cli import UserError

FILTERS = (64, 64, 128, 128, 192, 256)
KERNELS = (7, 5, 5, 3, 3, 3)
LATENTS = ("global", "spatial")
DOWNSAMPLE = 8
# A spatial VAE's own defaults where they differ from the fields' (the global model's), chosen by
# the README's runs: a map has far fewer numbers per pixel to pay KL on, and trains well faster.
SPATIAL_DEFAULTS = dict(codes=16, kl_weight=0.05)
LEARNING_RATES = {"global": 2e-4, "spatial": 1e-3}
DEFAULT_LEARNING_RATE = LEARNING_RATES["global"]


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


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Everything that builds the VAE; saved as LOGDIR/config.json, which export_graphs.py rebuilds it from."""
    width: int = fixed()
    height: int = fixed()
    codes: int = setting(512, "latent codes: numbers per tile (global), channels of the map (spatial) "
                              "(default: 512 global, 16 spatial)", architecture=True, low=1)
    latent: str = setting("global", "global: one code of --codes numbers per tile (the original); spatial: a map "
                                    "of --codes channels at 1/--downsample of the tile's size, fully convolutional "
                                    "(runs at any size)", architecture=True, choices=LATENTS)
    downsample: int = setting(DOWNSAMPLE, "spatial only: the code map's size is the tile's divided by this, a "
                                          "power of two", architecture=True, low=2)
    kl_weight: float = setting(1.0, "weight of the KL term; small tiles have few pixels to outweigh it, so try "
                                    "(W*H)/(320*180) there if every global reconstruction looks alike "
                                    "(default: 1 global, 0.05 spatial)", low=0)
    filters: tuple = fixed(FILTERS)
    kernels: tuple = fixed(KERNELS)

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
    width: int = fixed()
    height: int = fixed()
    filters: int = setting(32, "feature maps at full resolution", architecture=True, low=1)
    blocks: int = setting(4, "residual blocks", architecture=True, low=1)
    identity_steps: int = setting(500, "first steps spent learning to return the VAE output unchanged", low=0)
    tile_weight: float = setting(1.0, "weight of the pull toward the tile", low=0)
    away_weight: float = setting(0.001, "weight of the push away from the VAE output", low=0)
    away_margin: float = setting(0.01, "distance at which the push away is half its weight (keeps it finite)",
                                 low=0)
    latent: str = fixed("global")  # the VAE's kind (model.json): a spatial VAE's refiner runs at any size


@dataclasses.dataclass(frozen=True)
class StyleRefinerConfig:
    """The refiner trained adversarially toward a style's texture (vae/style.py)."""
    width: int = fixed()
    height: int = fixed()
    style: tuple = setting((), "train toward this source's texture (a patch discriminator on its tiles), "
                               "repeatable to mix as in mogrify_video.py; without it, the original refiner",
                           architecture=True, metavar="NAME[:WEIGHT]")
    filters: int = setting(32, "feature maps at full resolution", architecture=True, low=1)
    blocks: int = setting(4, "residual blocks", architecture=True, low=1)
    identity_steps: int = setting(500, "first steps spent learning to return the VAE output unchanged", low=0)
    disc_filters: int = setting(64, "feature maps of the patch discriminator's first layer", architecture=True,
                                low=1)
    disc_layers: int = setting(3, "strided layers of the patch discriminator (3: 70-pixel patches)",
                               architecture=True, low=1)
    disc_scales: int = setting(2, "scales the discriminator looks at (each half the last: larger strokes)",
                               architecture=True, low=1)
    disc_learning_rate: float = setting(2e-4, "Adam learning rate of the discriminator", low=0)
    content_weight: float = setting(1.0, "weight of the layout term (low-pass distance to the unrefined render)",
                                    low=0)
    content_pool: int = setting(4, "the layout term compares averages over squares of this side", low=1)
    style_identity_weight: float = setting(1.0, "weight of the term that keeps a painting refined the same",
                                           low=0)
    steady_weight: float = setting(1.0, "weight of the term against flicker: the refined picture of a frame "
                                        "moved by a pixel or two must move with it", low=0)
    adversarial_weight: float = setting(1.0, "scale of the adversarial term after its balance by gradient norms "
                                             "(0: no discriminator step at all)", low=0)
    max_adaptive_weight: float = setting(10.0, "cap on the gradient-norm balance of the adversarial term", low=0)
    texture_weight: float = setting(0.0, "weight of the texture term: the sliced Wasserstein distance between "
                                         "Laplacian-pyramid patches of the refined renders and of the style's "
                                         "tiles, as the texture measure takes it (0: none; with "
                                         "--adversarial-weight 0 it replaces the discriminator)", low=0)
    texture_layout_weight: float = setting(0.0, "weight of the texture term's coarsest level (the low-pass rest: "
                                                "the layout, which the content term keeps) beside the finer "
                                                "levels' 1 each", low=0)
    alpha: float = setting(0.25, "the shift's alpha during training, as mogrify_video.py --alpha", low=0)
    beta_low: float = setting(0.0, "the shift's beta is drawn per tile between --beta-low and --beta-high",
                              low=0)
    beta_high: float = setting(1.0, "see --beta-low", low=0)
    latent: str = fixed("global")  # the VAE's kind (model.json): a spatial VAE's refiner runs at any size


class Kind:
    """A model type as config.json knows it. Subclasses set the names below; everything else
    comes from the config class's fields."""
    name = ""            # config.json's "model"
    config_class = None  # a dataclass of fixed() and setting() fields: all that rebuilds the model
    spec = ""            # "module:Class" of its training.Spec, imported once TensorFlow may load;
    # empty for a Kind that is its own Spec (a model type written in one file)
    exports = ()         # the SavedModels export_graphs.py writes from it: "encoder", "decoder", "refiner"
    notes = {}           # extra facts for config.json, set by a Spec's build()

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

    def spec_class(self):
        """The training.Spec of this kind (imports TensorFlow)."""
        if not self.spec:
            return type(self)
        module, _, name = self.spec.partition(":")
        return getattr(importlib.import_module(module), name)


KINDS = {}


def register(kind_class):
    """Make a Kind known by its config.json name (a decorator)."""
    KINDS[kind_class.name] = kind_class
    return kind_class


@register
class VAE(Kind):
    name = "vae"
    config_class = VAEConfig
    spec = "vae.model:Spec"
    exports = ("encoder", "decoder")

    def configure(self, args, config):
        """A new spatial run starts from the spatial defaults (16 channels, the layers for its
        downsample factor) before the options given apply."""
        latent, downsample = getattr(args, "latent", None), getattr(args, "downsample", None)
        if downsample is not None and not is_power_of_two(downsample):
            raise UserError(f"--downsample {downsample}: must be a power of two of at least 2 (2, 4, 8, 16, ...)")
        if latent == "spatial" and config.latent != "spatial":
            filters, kernels = spatial_layers(downsample or config.downsample)
            config = dataclasses.replace(config, latent="spatial", filters=filters, kernels=kernels,
                                         **SPATIAL_DEFAULTS)
        config = super().configure(args, config)
        if downsample is not None and config.latent != "spatial":
            raise UserError("--downsample is for --latent spatial only")
        return config


    def default_learning_rate(self, args, config):
        latent = config.latent if config is not None else (getattr(args, "latent", None) or "global")
        return LEARNING_RATES[latent]


class AgainstModels(Kind):
    """A kind trained against an exported VAE (--models): it takes the VAE's kind of code from
    model.json, since a spatial VAE's refiner runs at any size."""

    def configure(self, args, config):
        meta, _ = safety.read_models_folder(args.models)
        return super().configure(args, dataclasses.replace(config, latent=meta.get("latent", "global")))


@register
class Refiner(AgainstModels):
    name = "refiner"
    config_class = RefinerConfig
    spec = "vae.refiner:Spec"
    exports = ("refiner",)


@register
class StyleRefiner(AgainstModels):
    name = "style_refiner"
    config_class = StyleRefinerConfig
    spec = "vae.style:Spec"
    exports = ("refiner",)


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


def _read(logdir):
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
    path, stored = _read(logdir)
    if stored.get("model") != kind.name:
        raise UserError(f"{logdir}: not a {kind.name} training run")
    return config_from_json(kind.config_class, stored, path)


def load_run(logdir, exporting=None):
    """(kind, config) of the run in a logdir, its kind found by config.json's model name; with
    `exporting`, the kind must export that SavedModel (for export_graphs.py's --vae, --refiner)."""
    path, stored = _read(logdir)
    name = stored.get("model")
    if name not in KINDS:
        raise UserError(f"{path}: unknown model type {name!r} (known: {', '.join(sorted(KINDS))})")
    kind = KINDS[name]()
    if exporting and exporting not in kind.exports:
        raise UserError(f"{logdir}: a {name} run, which gives no {exporting}")
    return kind, config_from_json(kind.config_class, stored, path)


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
    data = _read(logdir)[1].get("data")
    return [path for path in data if isinstance(path, str)] if isinstance(data, list) else []


def save_config(kind, config, args, files):
    with open(config_path(args.logdir) + ".tmp", "w") as f:
        json.dump({"model": kind.name, **dataclasses.asdict(config), **kind.notes, "batch_size": args.batch_size,
                   "learning_rate": args.learning_rate, "seed": args.seed,
                   "data": [os.path.abspath(path) for path in files]}, f, indent=2)  # export reads their manifests
    os.replace(config_path(args.logdir) + ".tmp", config_path(args.logdir))
