#!/usr/bin/env python3
"""Train the tests' toy kind (tests/toy_kind.py); resumes from the latest checkpoint in --logdir.
A new kind's script is these few lines; export_graphs.py exports its runs unchanged."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project, for vae

from vae import cli, kinds, run_config  # noqa: E402

if __name__ == "__main__":
    # this script's folder is on sys.path, so the kind's module is found by its name
    cli.run(lambda argv: run_config.main(argv, __doc__, [kinds.find("toy", kind_module="toy_kind")]))
