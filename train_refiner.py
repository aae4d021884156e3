#!/usr/bin/env python3
"""Train the refiner against the exported, frozen VAE; resumes from the latest checkpoint in --logdir."""
from vae import cli, configs, safety
from vae.training_options import check_positive, check_run, training_options


def main(argv):
    p = cli.parser(__doc__)
    training_options(p, learning_rate=2e-4)
    p.add_argument("--models", required=True, help="folder written by export_graphs.py (the VAE to refine)")
    p.add_argument("--identity-steps", type=int, default=500,
                   help="first steps spent learning to return the VAE output unchanged")
    p.add_argument("--tile-weight", type=float, default=1.0, help="weight of the pull toward the tile")
    p.add_argument("--away-weight", type=float, default=0.001, help="weight of the push away from the VAE output")
    p.add_argument("--away-margin", type=float, default=0.01,
                   help="distance at which the push away is half its weight (keeps it finite)")
    p.add_argument("--filters", type=int, default=32, help="feature maps at full resolution")
    p.add_argument("--blocks", type=int, default=4, help="residual blocks")
    cli.unsafe_models_flag(p)
    args = p.parse_args(argv)
    check_positive(args, "steps", "batch-size", "log-every", "preview-every", "save-every", "filters", "blocks")
    check_run(args, configs.Refiner())
    safety.read_models_folder(args.models)  # its JSON now; refiner.Spec loads the models after TensorFlow
    cli.quiet_tensorflow()
    from vae import refiner, training  # after the checks above: these import TensorFlow
    return training.run(args, refiner.Spec())


if __name__ == "__main__":
    cli.run(main)
