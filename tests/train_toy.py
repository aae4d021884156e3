#!/usr/bin/env python3
"""Train the tests' toy kind (tests/toy_kind.py); resumes from the latest checkpoint in --logdir.
A new kind's script is these few lines; export_graphs.py exports its runs unchanged."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project, for vae

from vae import cli, kinds  # noqa: E402
from vae.training_options import check_positive, check_run, training_options  # noqa: E402


def main(argv):
    kind = kinds.find("toy", kind_module="toy_kind")  # this script's folder is on sys.path
    p = cli.parser(__doc__)
    training_options(p, learning_rate="1e-3")
    kind.add_options(p)
    args = p.parse_args(argv)
    check_positive(args, "steps", "batch-size", "log-every", "preview-every", "save-every")
    check_run(args, kind)
    cli.quiet_tensorflow()
    from vae import training  # after the checks above: it imports TensorFlow
    return training.run(args, kind)


if __name__ == "__main__":
    cli.run(main)
