#!/usr/bin/env python3
"""Train the convolutional VAE on tile records; resumes from the latest checkpoint in --logdir."""
from vae import cli
from vae.training_options import check_positive, training_options


def main(argv):
    p = cli.parser(__doc__)
    training_options(p, learning_rate=2e-4)
    p.add_argument("--codes", type=int, default=512, help="latent codes")
    p.add_argument("--kl-weight", type=float, default=1.0,
                   help="weight of the KL term; small tiles have few pixels to outweigh it, so try "
                        "(W*H)/(320*180) there if every reconstruction looks alike")
    args = p.parse_args(argv)
    check_positive(args, "steps", "batch-size", "codes", "log-every", "preview-every", "save-every")
    cli.quiet_tensorflow()
    from vae import device, training
    strategy = training.make_strategy(args.cpu_replicas)  # before any other TensorFlow op

    import keras
    import tensorflow as tf
    from vae import model, records
    files = records.find_files(args.data)
    width, height = records.tile_size(files)
    chief = training.is_chief(strategy)
    training.save_config(args.logdir, {"model": "vae", "width": width, "height": height, "codes": args.codes,
                                       "batch_size": args.batch_size, "learning_rate": args.learning_rate,
                                       "kl_weight": args.kl_weight, "data": files}, chief)
    keras.utils.set_random_seed(args.seed)
    training.set_precision(args.mixed_precision, args.xla)
    device.report(keras.mixed_precision.global_policy().name, args.xla, args.batch_size)
    with strategy.scope():
        vae = model.build_vae(height, width, args.codes, seed=args.seed, kl_weight=args.kl_weight)
        optimizer = training.make_optimizer(args.learning_rate)
        vae.compile(optimizer=optimizer)
        optimizer.build(vae.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(step=step, model=vae, optimizer=optimizer)
    counts = records.readable_counts(files)
    batches = records.dataset(files, (width, height), args.batch_size, shuffle=True, repeat=True,
                              seed=args.seed, drop_remainder=True, counts=counts)
    samples = training.sample_tiles(files, (width, height), counts)
    preview = training.Previews(args.logdir, lambda: training.image_grid([samples, vae.reconstruct(samples)]))
    step_fn = tf.function(vae.train_step, jit_compile=True) if args.xla else vae.train_step
    cli.info(f"training a {args.codes}-code VAE on {width}x{height} tiles from {len(files)} file(s), "
             f"{strategy.num_replicas_in_sync} replica(s)")
    status = training.train(strategy=strategy, logdir=args.logdir, total_steps=args.steps, batches=batches,
                            step_fn=step_fn, checkpoint=checkpoint, step=step, optimizer=optimizer,
                            learning_rate=args.learning_rate,
                            preview=preview, log_every=args.log_every, preview_every=args.preview_every,
                            save_every=args.save_every, global_batch=args.batch_size,
                            weights=vae.weights)
    print(f"{args.logdir}: step {int(step.numpy())} of {args.steps}")
    return status


if __name__ == "__main__":
    cli.run(main)
