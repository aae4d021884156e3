#!/usr/bin/env python3
"""Train the refiner against the exported, frozen VAE; resumes from the latest checkpoint in --logdir."""
from vae import cli
from vae.training_options import check_positive, training_options


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
    cli.quiet_tensorflow()
    from vae import device, training
    strategy = training.make_strategy(args.cpu_replicas)  # before any other TensorFlow op

    import keras
    import tensorflow as tf
    from vae import export, records, refiner
    files = records.find_files(args.data)
    width, height = records.tile_size(files)
    chief = training.is_chief(strategy)
    keras.utils.set_random_seed(args.seed)
    training.set_precision(args.mixed_precision, args.xla)
    device.report(keras.mixed_precision.global_policy().name, args.xla, args.batch_size)
    with strategy.scope():
        vae_models = export.Models(args.models, unsafe=args.unsafe_models)
        if (vae_models.width, vae_models.height) != (width, height):
            raise cli.UserError(f"the models in {args.models} take {vae_models.width}x{vae_models.height} tiles, "
                                f"the records hold {width}x{height}")
        net = refiner.build_refiner(height, width, args.filters, args.blocks)
        trainer = refiner.RefinerTrainer(net, vae_models, args.identity_steps, args.tile_weight,
                                         args.away_weight, args.away_margin)
        optimizer = training.make_optimizer(args.learning_rate)
        trainer.compile(optimizer=optimizer)
        optimizer.build(net.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    training.save_config(args.logdir, {"model": "refiner", "width": width, "height": height,
                                       "filters": args.filters, "blocks": args.blocks,
                                       "models": args.models, "vae_step": vae_models.meta.get("vae_step"),
                                       "data": files}, chief)
    checkpoint = tf.train.Checkpoint(step=step, model=net, optimizer=optimizer)
    counts = records.readable_counts(files)
    batches = records.dataset(files, (width, height), args.batch_size, shuffle=True, repeat=True,
                              seed=args.seed, drop_remainder=True, counts=counts)
    samples = training.sample_tiles(files, (width, height), counts)

    def render():
        blurry = trainer.vae_output(samples)
        return training.image_grid([samples, blurry, net(blurry, training=False)])

    step_fn = tf.function(trainer.train_step, jit_compile=True) if args.xla else trainer.train_step
    cli.info(f"training the refiner on {width}x{height} tiles against {args.models}, "
             f"{args.identity_steps} identity steps first")
    status = training.train(strategy=strategy, logdir=args.logdir, total_steps=args.steps, batches=batches,
                            step_fn=step_fn, checkpoint=checkpoint, step=step, optimizer=optimizer,
                            learning_rate=args.learning_rate,
                            preview=training.Previews(args.logdir, render), log_every=args.log_every,
                            preview_every=args.preview_every, save_every=args.save_every,
                            global_batch=args.batch_size,
                            weights=net.weights)
    print(f"{args.logdir}: step {int(step.numpy())} of {args.steps}")
    return status


if __name__ == "__main__":
    cli.run(main)
