#!/usr/bin/env python3
"""Train the refiner against the exported, frozen VAE; resumes from the latest checkpoint in --logdir.

Without --style it is the original refiner (its output pulled toward the tile); with --style it
learns the style's texture from its tiles against a patch discriminator, a texture loss on their
patches (--texture-weight), or both."""
from vae import cli, kinds, run_config


def main(argv):
    plain, styled = kinds.find("refiner"), kinds.find("style_refiner")
    return run_config.main(argv, __doc__, [styled, plain], choose=lambda args: styled if args.style else plain,
                           models=True)


if __name__ == "__main__":
    cli.run(main)
