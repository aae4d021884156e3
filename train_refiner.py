#!/usr/bin/env python3
"""Train the refiner against the exported, frozen VAE; resumes from the latest checkpoint in --logdir.

Without --style it is the original refiner (its output pulled toward the tile); with --style it
learns the style's texture from its tiles against a patch discriminator, a texture loss on their
patches (--texture-weight), or both."""
from vae import cli, kinds, safety
from vae.training_options import check_positive, check_run, training_options


def main(argv):
    plain, styled = kinds.find("refiner"), kinds.find("style_refiner")
    p = cli.parser(__doc__)
    training_options(p)
    p.add_argument("--models", required=True, help="folder written by export_graphs.py (the VAE to refine)")
    styled.add_options(p)
    plain.add_options(p)  # the settings both share are declared by the first
    cli.unsafe_models_flag(p)
    args = p.parse_args(argv)
    kind = styled if args.style else plain
    kind.refuse_others(args, (plain, styled))
    check_positive(args, "steps", "batch-size", "log-every", "preview-every", "save-every")
    check_run(args, kind)
    safety.read_models_folder(args.models)  # its JSON now; the Spec loads the models after TensorFlow
    cli.quiet_tensorflow()
    from vae import training  # after the checks above: it imports TensorFlow
    return training.run(args, kind)


if __name__ == "__main__":
    cli.run(main)
