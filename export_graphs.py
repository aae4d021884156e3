#!/usr/bin/env python3
"""Export trained models as SavedModels that any TensorFlow program loads by path."""
from vae import cli, kinds


def main(argv):
    p = cli.parser(__doc__)
    p.add_argument("--vae", required=True, help="logdir of train_vae.py")
    p.add_argument("--refiner", help="logdir of train_refiner.py")
    p.add_argument("--out", required=True, help="folder for encoder/, decoder/, refiner/ and model.json")
    args = p.parse_args(argv)
    # config.json is all that says how each model was built: its "model" names the kind's module
    # (vae/kinds/<model>.py, or the one its "kind_module" names), imported here by that name and
    # before TensorFlow's start-up, so that a wrong logdir fails at once.
    runs = [(args.vae, *kinds.load_run(args.vae, exporting="encoder"))]
    if args.refiner:
        runs.append((args.refiner, *kinds.load_run(args.refiner, exporting="refiner")))
    sizes = {(config.width, config.height) for _, _, config in runs}
    if len(sizes) > 1:
        (vw, vh), (rw, rh) = ((c.width, c.height) for _, _, c in runs)
        raise cli.UserError(f"{args.refiner} was trained on {rw}x{rh} tiles, the VAE on {vw}x{vh}")
    cli.quiet_tensorflow()
    cli.raise_on_sigterm()
    from vae import device, export
    device.report()
    # Every run restored before anything is written: a checkpoint that does not fit leaves the
    # folder as it was.
    restored = [(export.restore_run(kind, config, logdir), config, logdir) for logdir, kind, config in runs]
    fields, written = {}, []
    for run, config, logdir in restored:
        more, names = export.write_run(run, config, logdir, args.out)
        fields.update(more)
        written += names
    meta = export.update_model_json(args.out, **fields)
    codes = (f"spatial, a map of {meta['codes']} channels at 1/{meta['downsample']}" if meta.get("latent") == "spatial"
             else f"{meta['codes']} codes")
    print(f"exported {', '.join(written)} ({meta['width']}x{meta['height']}, {codes}, "
          f"VAE step {meta['vae_step']}) to {args.out}")
    return 0


if __name__ == "__main__":
    cli.run(main)
