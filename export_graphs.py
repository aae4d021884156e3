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
    fields = {"width": width, "height": height, "codes": codes, "vae_step": vae_step,
              "vae_logdir": os.path.abspath(args.vae)}
    refiner_net = None
    if refiner_config is not None:
        refiner_net = refiner.build_refiner(refiner_config)
        fields["refiner_step"] = restore(args.refiner, refiner_net)
    os.makedirs(args.out, exist_ok=True)
    export.save("encoder", vae.encoder, (height, width, 3), args.out)
    export.save("decoder", vae.decoder, (codes,), args.out)
    if refiner_net is not None:
        export.save("refiner", refiner_net, (height, width, 3), args.out)
    export.update_model_json(args.out, **fields)
    written = "encoder, decoder" + (", refiner" if refiner_net is not None else "")
    print(f"exported {written} ({width}x{height}, {codes} codes, VAE step {vae_step}) to {args.out}")
    return 0


if __name__ == "__main__":
    cli.run(main)
