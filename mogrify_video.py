#!/usr/bin/env python3
"""Re-render a video, a photo or a folder of both so that its latent codes drift toward a
painting style, sound included."""
import json
import os

from vae import cli, codecs, latent, live, measures, mogrify, probe, sources


def main(argv):
    p = cli.parser(__doc__)
    p.add_argument("input", help="a video, an image, or a folder of them")
    p.add_argument("output", help="an MP4 for a video, a .png or .jpg for an image, a folder for a folder")
    p.add_argument("--models", required=True, help="folder written by export_graphs.py and evaluate_embeddings.py")
    p.add_argument("--style", action="append", metavar="NAME[:WEIGHT]",
                   help="source to move toward, repeatable to mix (weights normalised to sum 1); "
                        "default: the image source with the most tiles")
    p.add_argument("--alpha", default="0.25",
                   help="how much of the input's own mean code to remove: a number or keyframes SECONDS=VALUE,...")
    p.add_argument("--beta", default="0.5",
                   help="how much of the style's mean code to add: a number or keyframes SECONDS=VALUE,...")
    p.add_argument("--detail", type=float, default=0.0,
                   help="how much of the input's own picture to keep at full resolution (0: the original look, "
                        "1: sharp, the shift as an edit of the input)")
    p.add_argument("--smooth", type=float, default=0.2, help="weight of the previous output frame (0: none)")
    p.add_argument("--start", type=float, help="render from this many seconds into the input")
    p.add_argument("--duration", type=float, help="render this many seconds")
    p.add_argument("--render-size", metavar="WxH|SIDE",
                   help="spatial models: render inside this box (or with this longest side), aspect kept, and "
                        "scale up to the output (default: the frame's own size times the model's render_scale, the "
                        "scale its footage was cut at by extract_tiles.py --video-scale, when model.json has one)")
    p.add_argument("--match", default="0",
                   help="spatial models: the share of each neighbourhood of the shifted code map replaced by the "
                        "style's own most similar code neighbourhoods (0 to 1: 0 is the plain shift, 1 paints with "
                        "the paintings' local codes), a number or keyframes SECONDS=VALUE,...")
    p.add_argument("--batch-size", type=int, help="frames per model call (default: 64 on a GPU, 16 on a CPU)")
    p.add_argument("--crop", default="auto", help="auto (remove black borders), none, or TOP,LEFT,BOTTOM,RIGHT")
    p.add_argument("--inset", action="store_true", help="show the original frame small in a corner")
    p.add_argument("--no-audio", action="store_true", help="leave the input's audio out")
    p.add_argument("--audio-track", type=int, default=0, help="which audio track to carry, from 0")
    p.add_argument("--stats", metavar="FILE.json", help="also write the measures as JSON")
    p.add_argument("--preset", default="veryfast",
                   help="x264 preset: slower ones make smaller files but take CPU from the models")
    p.add_argument("--crf", type=int, default=18, help="quality, lower is better (0-51; x264's -crf, NVENC's -cq)")
    p.add_argument("--encoder", default="auto", choices=codecs.ENCODERS,
                   help="H.264 encoder: auto takes h264_nvenc (the NVIDIA card) when a trial frame encodes, "
                        "else libx264 on the CPU")
    p.add_argument("--decoder", default="auto", choices=codecs.DECODERS,
                   help="video decoder: auto decodes on the NVIDIA card (-hwaccel cuda) when ffmpeg can open it, "
                        "else on the CPU")
    p.add_argument("--live", action="store_true",
                   help="render as it comes, dropping frames the models cannot keep up with (implied by a stream "
                        "URL or capture device input; a file is read at its own rate, as a rehearsal); the output "
                        "is a stream URL (udp, srt, tcp, rtmp), a video device /dev/videoN (a virtual camera) "
                        "or an .mp4 or .ts file written as it goes")
    p.add_argument("--source", metavar="NAME",
                   help="live: the trained source whose mean code is removed (default: a running mean of the input's)")
    p.add_argument("--reconnect", type=float, default=10.0, metavar="SECONDS",
                   help="live: how long to wait for an input that drops out before the run ends")
    cli.unsafe_models_flag(p)
    args = p.parse_args(argv)
    if not 0 <= args.smooth < 1:
        raise cli.UserError("--smooth must be at least 0 and below 1")
    if not args.detail >= 0:
        raise cli.UserError(f"--detail {args.detail}: must be at least 0")
    if args.batch_size is not None and args.batch_size < 1:
        raise cli.UserError("--batch-size must be at least 1")
    if args.audio_track < 0:
        raise cli.UserError("--audio-track counts from 0")
    if args.stats and not os.path.isdir(os.path.dirname(os.path.abspath(args.stats))):
        raise cli.UserError(f"--stats {args.stats}: its folder does not exist")
    codec_args, encoder_note = codecs.pick_encoder(args.encoder, args.crf, args.preset)
    decoder_args = codecs.decoder_args(args.decoder)
    look = mogrify.Look(latent.Strength(args.alpha, "--alpha"), latent.Strength(args.beta, "--beta"),
                        args.detail, args.smooth, args.style, mogrify.parse_render_size(args.render_size),
                        mogrify.parse_match(args.match))
    options = mogrify.VideoOptions(start=args.start, duration=args.duration, crop=probe.parse_crop(args.crop),
                                   inset=args.inset, audio_track=None if args.no_audio else args.audio_track,
                                   preset=args.preset, crf=args.crf, codec_args=codec_args,
                                   decoder_args=decoder_args)
    if args.live or sources.is_live_input(args.input):
        given = [name for name, value in (("--start", args.start), ("--duration", args.duration)) if value is not None]
        given += (["--inset"] if args.inset else []) + (["--crop"] if args.crop not in ("auto", "none") else [])
        live_options = live.LiveOptions(args.input, args.output, args.source, args.reconnect, options.audio_track,
                                        args.batch_size or live.BATCH_SIZE, codec_args, args.crf, args.preset, given)
        result = live.render(live_options, args.models, look, encoder_note, args.unsafe_models)
        print(f"wrote {args.output}: {live.Meter.line(result)} over {result['seconds']:.1f} s ({result['stopped']})")
        if args.stats:
            write_stats(args.stats, result)
        return 0
    # Before TensorFlow's seconds of start-up, so that a typo fails at once.
    request = mogrify.check_request(args.input, args.output, args.models, look, options)
    meta = request.found[0]
    note, warning = latent.refiner_style_note(meta, request.sources, look.styles)
    if note:
        cli.info(note)
    if warning:
        cli.warn(warning)
    cli.quiet_tensorflow()
    cli.raise_on_sigterm()
    from vae import device, export
    batch_size = args.batch_size or mogrify.default_batch_size()
    device.report(batch_size=batch_size)
    if encoder_note:
        cli.info(encoder_note)
    models = export.Models(args.models, unsafe=args.unsafe_models, found=request.found)
    session = mogrify.Session(models, request.sources, look, batch_size)
    if os.path.isdir(args.input):
        summary = mogrify.render_folder(session, args.input, args.output, options)
        for name, result in summary["rendered"]:
            report(f"{name}: ", result)
        print(f"{len(summary['rendered'])} rendered, {len(summary['skipped'])} skipped (output exists), "
              f"{len(summary['failed'])} failed")
        for name, why in summary["failed"]:
            print(f"  failed: {name}: {why}")
        if args.stats:
            write_stats(args.stats, {name: result for name, result in summary["rendered"]})
        return 1 if summary["failed"] else 0
    result = mogrify.render_any(session, args.input, args.output, options, request.meta)
    width, height = result["size"]
    print(f"wrote {args.output}: {width}x{height}, {result['frames']} frame(s), styled toward {result['style']!r}")
    report("", result)
    if args.stats:
        write_stats(args.stats, result)
    return 0


def closer(before, after):
    """"N% closer" or "N% farther" for a distance that went from `before` to `after`."""
    change = 100 * (before - after) / max(before, 1e-9)
    return f"{change:.0f}% closer" if round(change) >= 0 else f"{-change:.0f}% farther"


def fine_texture(result, key):
    """"input A, output B, floor C (N% of the way)" for the finer pyramid levels of `key`
    (texture_levels or texture_luma_levels), or None when the measures have no such levels."""
    before, after, floor = (measures.fine_texture(result.get(f"{key}_{name}")) for name in ("before", "after", "floor"))
    if before is None or after is None:
        return None
    text = f"input {before:.0f}, output {after:.0f}"
    if floor is None:
        return text
    share = measures.share_of_the_way(before, after, floor)
    return f"{text}, floor {floor:.0f} ({'input at the floor' if share is None else f'{100 * share:.0f}% of the way'})"


def report(prefix, result):
    if "structure" in result:
        print(f"{prefix}structure {result['structure']:.2f} (SSIM of output to input, 1 = same shapes)")
    if "palette_before" in result:
        before, after = result["palette_before"], result["palette_after"]
        print(f"{prefix}palette distance to {result['style']!r} (mean Lab colour): input {before:.1f}, "
              f"output {after:.1f} ({closer(before, after)})")
    if "texture_before" in result:
        before, after = result["texture_before"], result["texture_after"]
        print(f"{prefix}texture distance to {result['style']!r} (patch statistics, lower is closer): "
              f"input {before:.0f}, output {after:.0f} ({closer(before, after)})")
    colour, luma = fine_texture(result, "texture_levels"), fine_texture(result, "texture_luma_levels")
    if colour:
        print(f"{prefix}fine texture to {result['style']!r} (marks: all levels but the coarsest; the way from input "
              f"to the style's own floor): {colour}" + (f"; on luminance {luma}" if luma else ""))
    if "sharpness" in result:
        print(f"{prefix}sharpness {result['sharpness']:.2f} (detail of output over input, 1 = as sharp)")
    if "flicker" in result:
        print(f"{prefix}flicker {result['flicker']:.2f} (1 = as steady as the input)")


def write_stats(path, result):
    with cli.atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    cli.run(main)
