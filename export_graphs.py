#!/usr/bin/env python3
"""Export trained models as SavedModels that any TensorFlow program loads by path."""
import os

from vae import cli, configs


def main(argv):
    p = cli.parser(__doc__)
    p.add_argument("--vae", required=True, help="logdir of train_vae.py")
    p.add_argument("--refiner", help="logdir of train_refiner.py")
    p.add_argument("--out", required=True, help="folder for encoder/, decoder/, refiner/ and model.json")
    args = p.parse_args(argv)
    # config.json is all that says how each model was built; read before TensorFlow's start-up,
    # so that a wrong logdir fails at once.
    vae_config = configs.load_config(args.vae, configs.VAE())
    width, height, codes = vae_config.width, vae_config.height, vae_config.codes
    spatial = vae_config.latent == "spatial"
    refiner_config = configs.load_config(args.refiner, configs.Refiner()) if args.refiner else None
    if refiner_config is not None and (refiner_config.width, refiner_config.height) != (width, height):
        raise cli.UserError(f"{args.refiner} was trained on {refiner_config.width}x{refiner_config.height} "
                            f"tiles, the VAE on {width}x{height}")
    cli.quiet_tensorflow()
    cli.raise_on_sigterm()
    import tensorflow as tf
    from vae import device, export, model, refiner
    device.report()

    def restore(logdir, net):
        latest = tf.train.latest_checkpoint(os.path.join(logdir, "checkpoints"))
        if not latest:
            raise cli.UserError(f"{logdir}: no checkpoint yet; train first")
        step = tf.Variable(0, dtype=tf.int64)
        tf.train.Checkpoint(step=step, model=net).restore(latest).expect_partial()
        return int(step.numpy())

    vae = model.build_vae(vae_config)
    vae_step = restore(args.vae, vae)
    fields = {"width": width, "height": height, "codes": codes, "latent": vae_config.latent, "vae_step": vae_step,
              "vae_logdir": os.path.abspath(args.vae)}
    if spatial:
        fields["downsample"] = vae_config.downsample
    refiner_net = None
    if refiner_config is not None:
        # Against a spatial VAE it runs at any size; its weights are the same for every size.
        refiner_net = refiner.build_refiner(refiner_config, any_size=spatial)
        fields["refiner_step"] = restore(args.refiner, refiner_net)
    # A spatial model's height and width are open: the encoder, decoder and refiner run at any size.
    image_shape = (None, None, 3) if spatial else (height, width, 3)
    os.makedirs(args.out, exist_ok=True)
    export.save("encoder", vae.encoder, image_shape, args.out)
    export.save("decoder", vae.decoder, (None, None, codes) if spatial else (codes,), args.out)
    if refiner_net is not None:
        export.save("refiner", refiner_net, image_shape, args.out)
    export.update_model_json(args.out, drop=() if spatial else ("downsample",), **fields)
    written = "encoder, decoder" + (", refiner" if refiner_net is not None else "")
    kind = f"spatial, a map of {codes} channels at 1/{vae_config.downsample}" if spatial else f"{codes} codes"
    print(f"exported {written} ({width}x{height}, {kind}, VAE step {vae_step}) to {args.out}")
    return 0


if __name__ == "__main__":
    cli.run(main)
