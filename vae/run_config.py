"""How a training run goes, beside what it trains: its settings (`RunConfig`, declared once as
setting() fields, like a kind's), and the `Plan`: everything a run needs that can be checked
before TensorFlow loads (the record files, the stored config when resuming, the exported
models a refiner trains against), computed once. train_vae.py, train_refiner.py and a new
kind's script each call `main`; training.run consumes the plan. No TensorFlow import here.
"""
import dataclasses
import json
import os

from vae import cli, configs, kinds, records, safety
from vae.cli import UserError
from vae.configs import setting


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A run's own settings: they do not rebuild the model, so a resumed run may change any."""
    steps: int = setting(dataclasses.MISSING, "total optimizer steps to reach (resumes)", low=1)
    batch_size: int = setting(50, "tiles per step, over all devices", low=1)
    learning_rate: float = setting(None, "Adam learning rate", above=0)  # None: the kind's default
    seed: int = setting(0, "random seed")
    log_every: int = setting(10, "write scalars every N steps", low=1)
    preview_every: int = setting(200, "write preview images every N steps", low=1)
    save_every: int = setting(500, "save a checkpoint every N steps", low=1)
    mixed_precision: bool = setting(False, "compute in float16 (GPU) or bfloat16 (CPU), keep weights in float32")
    xla: bool = setting(False, "compile the train step with XLA")
    cache_gb: float = setting(None, "memory for decoded tiles, so that epochs after the first come from RAM; record "
                                    "files past it stream every epoch (write --shards to cache part of larger "
                                    "data); 0 always streams (default: half the free memory)", low=0)
    cpu_replicas: int = setting(0, "split the CPU into N devices under MirroredStrategy (for testing distribution)",
                                low=0)


@dataclasses.dataclass(frozen=True)
class Plan:
    """A training run, checked: the kind, where it writes, what it reads and with what settings."""
    kind: configs.Kind
    logdir: str
    files: list               # the record files, found and checked once
    run: RunConfig            # its learning rate resolved (the kind's default unless given)
    given: dict               # the kind's settings the command line gave, checked against their bounds
    stored: object = None     # the kind's config in LOGDIR/config.json when resuming, else None
    models: str = None        # the exported VAE a refiner trains against
    found_models: tuple = None  # what safety.read_models_folder found there (model.json, model folders)
    unsafe_models: bool = False
    debug: bool = False

    def config(self, width, height):
        """The kind's config at the data's tile size: a new one, or the stored one with what the
        command line may change, refused if that changes the architecture."""
        base = self.stored or self.kind.config_class(width=width, height=height)
        config = self.kind.configure(self.given, dataclasses.replace(base, width=width, height=height), self)
        for name in self.kind.architecture if self.stored else ():
            if getattr(self.stored, name) != getattr(config, name):
                raise UserError(f"{self.logdir} holds a run with {name}={getattr(self.stored, name)}, not "
                                f"{getattr(config, name)}; use another --logdir")
        return config

    @property
    def models_meta(self):
        return self.found_models[0] if self.found_models else None

    def load_models(self, config):
        """The exported VAE a refiner trains against, loaded from what the plan found (this
        imports TensorFlow) and refused unless it takes the records' tiles."""
        from vae import export
        models = export.Models(self.models, unsafe=self.unsafe_models, found=self.found_models)
        models.check_tile_size((config.width, config.height))
        return models

    def save(self, config, notes):
        """LOGDIR/config.json: the kind's name and config, the run's settings, the Spec's `notes`
        (facts of the run), the record files (export reads their manifests) and, for a kind
        outside vae/kinds, `kind_module`: the module that export_graphs.py imports to find it."""
        module = kinds.module_of(self.kind)
        path = configs.config_path(self.logdir)
        with open(path + ".tmp", "w") as f:
            json.dump({"model": self.kind.name, **({"kind_module": module} if module else {}),
                       **dataclasses.asdict(self.run), **dataclasses.asdict(config), **notes,
                       "data": [os.path.abspath(path) for path in self.files]}, f, indent=2)
        os.replace(path + ".tmp", path)


def add_options(parser, kinds_, models=False):
    """The run's options, then every setting of `kinds_` (one command line may train several
    kinds: train_refiner.py), each declared once."""
    parser.add_argument("--data", nargs="+", required=True, help="record files or glob patterns")
    parser.add_argument("--logdir", required=True, help="folder for checkpoints and TensorBoard events")
    if models:
        parser.add_argument("--models", required=True, help="folder written by export_graphs.py (the VAE to refine)")
        cli.unsafe_models_flag(parser)
    rates = sorted({kind.learning_rate_help for kind in kinds_})
    configs.add_options(parser, configs.settings(RunConfig), unset_is_none=False,
                        help_defaults={"learning_rate": ", ".join(rates)})
    configs.add_options(parser, configs.declared_once(*(kind.settings() for kind in kinds_)))


def plan(args, kind, others=()):
    """The checked Plan of a parsed command line for `kind`: what training.run would refuse
    later, refused now from the files alone (--data matching no record files, a --logdir
    holding another kind of run or one whose architecture the options would change, a models
    folder that is not one, a kind that export_graphs.py could not find by name). The tile
    size is compared once TensorFlow has read the records. `others`: kinds sharing the command
    line, whose own settings this kind refuses."""
    kinds.module_of(kind)
    given = configs.given(kind.settings(), args)
    kind.refuse_others(args, others)
    run = RunConfig(**configs.given(configs.settings(RunConfig), args))
    files = records.find_files(args.data)
    stored = None
    if os.path.isfile(configs.config_path(args.logdir)):
        stored = configs.load_config(args.logdir, kind)
    models = getattr(args, "models", None)
    checked = Plan(kind, args.logdir, files, run, given, stored, models,
                   safety.read_models_folder(models) if models else None,
                   getattr(args, "unsafe_models", False), getattr(args, "debug", False))
    checked.config(*((stored.width, stored.height) if stored else (1, 1)))  # the bounds and the architecture
    rate = run.learning_rate if run.learning_rate is not None else kind.default_learning_rate(given, stored)
    return dataclasses.replace(checked, run=dataclasses.replace(run, learning_rate=rate))


def main(argv, doc, kinds_, choose=None, models=False):
    """A training script: its command line, the plan checked before TensorFlow loads, the run.
    `choose(args)` picks the kind when the script trains several (train_refiner.py)."""
    parser = cli.parser(doc)
    add_options(parser, kinds_, models)
    args = parser.parse_args(argv)
    kind = choose(args) if choose else kinds_[0]
    checked = plan(args, kind, [k for k in kinds_ if k is not kind])
    cli.quiet_tensorflow()
    from vae import training  # after the checks above: it imports TensorFlow
    return training.run(checked)
