#!/usr/bin/env python3
"""Train the convolutional VAE on tile records; resumes from the latest checkpoint in --logdir."""
from vae import cli, configs
from vae.training_options import check_positive, check_run, training_options


def main(argv):
    p = cli.parser(__doc__)
    training_options(p, learning_rate=2e-4)
    p.add_argument("--codes", type=int, default=512, help="latent codes")
    p.add_argument("--kl-weight", type=float, default=1.0,
                   help="weight of the KL term; small tiles have few pixels to outweigh it, so try "
                        "(W*H)/(320*180) there if every reconstruction looks alike")
    args = p.parse_args(argv)
    check_positive(args, "steps", "batch-size", "codes", "log-every", "preview-every", "save-every")
    check_run(args, configs.VAE())
    cli.quiet_tensorflow()
    from vae import model, training  # after the checks above: these import TensorFlow
    return training.run(args, model.Spec())


if __name__ == "__main__":
    cli.run(main)
