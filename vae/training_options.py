"""Command-line options shared by train_vae.py and train_refiner.py, and their checks (no
TensorFlow import: a wrong command line fails before its seconds of start-up)."""
from vae import configs, kinds, records
from vae.cli import UserError


def training_options(p, learning_rate="2e-4"):
    """`learning_rate`: the default as --help shows it; the kind resolves it (Kind.learning_rate)."""
    p.add_argument("--data", nargs="+", required=True, help="record files or glob patterns")
    p.add_argument("--logdir", required=True, help="folder for checkpoints and TensorBoard events")
    p.add_argument("--steps", type=int, required=True, help="total optimizer steps to reach (resumes)")
    p.add_argument("--batch-size", type=int, default=50, help="tiles per step, over all devices")
    p.add_argument("--learning-rate", type=float, default=None,
                   help=f"Adam learning rate (default: {learning_rate})")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--log-every", type=int, default=10, help="write scalars every N steps")
    p.add_argument("--preview-every", type=int, default=200, help="write preview images every N steps")
    p.add_argument("--save-every", type=int, default=500, help="save a checkpoint every N steps")
    p.add_argument("--mixed-precision", action="store_true",
                   help="compute in float16 (GPU) or bfloat16 (CPU), keep weights in float32")
    p.add_argument("--xla", action="store_true", help="compile the train step with XLA")
    p.add_argument("--cache-gb", type=float, default=None,
                   help="memory for decoded tiles, so that epochs after the first come from RAM; record files "
                        "past it stream every epoch (write --shards to cache part of larger data); 0 always "
                        "streams (default: half the free memory)")
    p.add_argument("--cpu-replicas", type=int, default=0,
                   help="split the CPU into N devices under MirroredStrategy (for testing distribution)")


def check_positive(args, *names):
    for name in names:
        if getattr(args, name.replace('-', '_')) < 1:
            raise UserError(f"--{name} must be at least 1")


def check_run(args, kind):
    """What training.run would refuse later, checked now from the files alone: --data matching no
    record files, and a --logdir holding another kind of run or one whose architecture the
    options would change (its tile size is compared once TensorFlow has read the records), and a
    kind that export_graphs.py could not find by name."""
    kinds.module_of(kind)
    records.find_files(args.data)
    config = configs.run_config(kind, args)  # None for a new run
    args.learning_rate = kind.learning_rate(args, config)
