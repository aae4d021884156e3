#!/usr/bin/env python3
"""Train the convolutional VAE on tile records; resumes from the latest checkpoint in --logdir."""
from vae import cli, kinds
from vae.training_options import check_positive, check_run, training_options


def main(argv):
    kind = kinds.find("vae")
    p = cli.parser(__doc__)
    training_options(p, learning_rate="2e-4 global, 1e-3 spatial")
    kind.add_options(p)
    args = p.parse_args(argv)
    check_positive(args, "steps", "batch-size", "log-every", "preview-every", "save-every")
    check_run(args, kind)
    cli.quiet_tensorflow()
    from vae import training  # after the checks above: it imports TensorFlow
    return training.run(args, kind)


if __name__ == "__main__":
    cli.run(main)
