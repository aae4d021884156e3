#!/usr/bin/env python3
"""Re-render a video so that its latent codes drift toward a painting style, sound included."""
from vae import cli, codecs


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
    p.add_argument("--crf", type=int, default=18,
                   help="quality, lower is better (0-51): x264's -crf, or NVENC's -cq on the card")
    p.add_argument("--encoder", default="auto", choices=codecs.ENCODERS,
                   help="H.264 encoder: auto takes h264_nvenc (the NVIDIA card) when a trial frame encodes, "
                        "else libx264 (the CPU)")
    p.add_argument("--decoder", default="auto", choices=codecs.DECODERS,
                   help="video decoder: auto decodes on the NVIDIA card (-hwaccel cuda) when ffmpeg can open it, "
                        "else on the CPU")
    args = p.parse_args(argv)
    if not 0 <= args.smooth < 1:
        raise cli.UserError("--smooth must be at least 0 and below 1")
    if args.batch_size is not None and args.batch_size < 1:
        raise cli.UserError("--batch-size must be at least 1")
    codec_args, encoder_note = codecs.pick_encoder(args.encoder, args.crf, args.preset)
    decoder_args = codecs.decoder_args(args.decoder)
    cli.quiet_tensorflow()
    cli.raise_on_sigterm()
    from vae import device, export, latent, mogrify, video
    batch_size = args.batch_size or mogrify.default_batch_size()
    device.report(batch_size=batch_size)
    if encoder_note:
        cli.info(encoder_note)
    crop = video.parse_crop(args.crop)
    video.probe(args.input)  # a bad input fails before the models load
    models = export.Models(args.models)
    sources = latent.load_embeddings(args.models, models.codes)
    result = mogrify.mogrify(args.input, args.output, models, sources, args.style, args.alpha, args.beta,
                             args.smooth, batch_size, crop, args.inset, not args.no_audio,
                             args.preset, args.crf, codec_args=codec_args, decoder_args=decoder_args)
    width, height = result["size"]
    print(f"wrote {args.output}: {width - width % 2}x{height - height % 2}, styled toward {result['style']!r}")
    if "ssim" in result:
        before, after, ssim = result["input_distance"], result["output_distance"], result["ssim"]
        print(f"palette distance to {result['style']!r} (mean Lab colour): input {before:.1f}, output {after:.1f} "
              f"({100 * (before - after) / max(before, 1e-9):+.0f}% closer); structural similarity to input {ssim:.2f}")
    return 0


if __name__ == "__main__":
    cli.run(main)
