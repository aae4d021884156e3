#!/usr/bin/env python3
"""Re-render a video so that its latent codes drift toward a painting style, sound included."""
from vae import cli


def main(argv):
    p = cli.parser(__doc__)
    p.add_argument("input", help="the video to re-render")
    p.add_argument("output", help="the MP4 to write")
    p.add_argument("--models", required=True, help="folder written by export_graphs.py and evaluate_embeddings.py")
    p.add_argument("--style", help="source to move toward (default: the image source with the most tiles)")
    p.add_argument("--alpha", type=float, default=0.25, help="how much of the input's own mean code to remove")
    p.add_argument("--beta", type=float, default=0.5, help="how much of the style's mean code to add")
    p.add_argument("--smooth", type=float, default=0.2, help="weight of the previous output frame (0: none)")
    p.add_argument("--batch-size", type=int, help="frames per model call (default: 64 on a GPU, 16 on a CPU)")
    p.add_argument("--crop", default="auto", help="auto (remove black borders), none, or TOP,LEFT,BOTTOM,RIGHT")
    p.add_argument("--inset", action="store_true", help="show the original frame small in a corner")
    p.add_argument("--no-audio", action="store_true", help="leave the input's audio out")
    p.add_argument("--preset", default="veryfast",
                   help="x264 preset: slower ones make smaller files but take CPU from the models")
    p.add_argument("--crf", type=int, default=18, help="x264 quality, lower is better (0-51)")
    cli.unsafe_models_flag(p)
    args = p.parse_args(argv)
    if not 0 <= args.smooth < 1:
        raise cli.UserError("--smooth must be at least 0 and below 1")
    if args.batch_size is not None and args.batch_size < 1:
        raise cli.UserError("--batch-size must be at least 1")
    cli.quiet_tensorflow()
    cli.raise_on_sigterm()
    from vae import export, latent, mogrify, video
    crop = video.parse_crop(args.crop)
    video.probe(args.input)  # a bad input fails before the models load
    models = export.Models(args.models, unsafe=args.unsafe_models)
    sources = latent.load_embeddings(args.models, models.codes)
    result = mogrify.mogrify(args.input, args.output, models, sources, args.style, args.alpha, args.beta,
                             args.smooth, args.batch_size, crop, args.inset, not args.no_audio,
                             args.preset, args.crf)
    width, height = result["size"]
    print(f"wrote {args.output}: {width - width % 2}x{height - height % 2}, styled toward {result['style']!r}")
    if "ssim" in result:
        before, after, ssim = result["input_distance"], result["output_distance"], result["ssim"]
        print(f"palette distance to {result['style']!r} (mean Lab colour): input {before:.1f}, output {after:.1f} "
              f"({100 * (before - after) / max(before, 1e-9):+.0f}% closer); structural similarity to input {ssim:.2f}")
    return 0


if __name__ == "__main__":
    cli.run(main)
