#!/usr/bin/env python3
"""Train the convolutional VAE on tile records; resumes from the latest checkpoint in --logdir."""
from vae import cli, configs
from vae.training_options import check_positive, check_run, training_options


def main(argv):
    p = cli.parser(__doc__)
    training_options(p, learning_rate=2e-4)
    p.add_argument("--latent", choices=configs.LATENTS, default="global",
                   help="global: one code of --codes numbers per tile (the original); spatial: a map of --codes "
                        "channels at 1/--downsample of the tile's size, fully convolutional (runs at any size)")
    p.add_argument("--downsample", type=int, default=None,
                   help=f"spatial only: the code map's size is the tile's divided by this, a power of two "
                        f"(default: {configs.DOWNSAMPLE})")
    p.add_argument("--codes", type=int, default=None,
                   help="latent codes: numbers per tile (global), channels of the map (spatial) "
                        "(default: 512 global, 16 spatial)")
    p.add_argument("--kl-weight", type=float, default=1.0,
                   help="weight of the KL term; small tiles have few pixels to outweigh it, so try "
                        "(W*H)/(320*180) there if every reconstruction looks alike")
    args = p.parse_args(argv)
    spatial = args.latent == "spatial"
    if args.downsample is not None and not spatial:
        raise cli.UserError("--downsample is for --latent spatial only")
    if args.downsample is not None and not (args.downsample >= 2 and configs.is_power_of_two(args.downsample)):
        raise cli.UserError(f"--downsample {args.downsample}: must be a power of two of at least 2 (2, 4, 8, 16, ...)")
    args.downsample = args.downsample or configs.DOWNSAMPLE
    args.codes = args.codes if args.codes is not None else (16 if spatial else 512)
    check_positive(args, "steps", "batch-size", "codes", "log-every", "preview-every", "save-every")
    check_run(args, configs.VAE())
    cli.quiet_tensorflow()
    from vae import model, training  # after the checks above: these import TensorFlow
    return training.run(args, model.Spec())


if __name__ == "__main__":
    cli.run(main)
