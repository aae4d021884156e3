#!/usr/bin/env python3
"""Train the convolutional VAE on tile records; resumes from the latest checkpoint in --logdir."""
from vae import cli, kinds, run_config


def main(argv):
    return run_config.main(argv, __doc__, [kinds.find("vae")])


if __name__ == "__main__":
    cli.run(main)
