#!/usr/bin/env python3
"""Cut video frames and paintings into tiles and write them, shuffled, to a gzip TFRecord."""
from vae import cli


def parse_size(text):
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        assert w >= 8 and h >= 8
        return w, h
    except (ValueError, AssertionError):
        raise cli.UserError(f"--size must be WIDTHxHEIGHT, each at least 8, not {text!r}")


def parse_video_scale(text):
    """`fit` or a number S in (0, 1]: the frame as shown times S."""
    if text == "fit":
        return text
    try:
        scale = float(text)
        assert 0 < scale <= 1
        return scale
    except (ValueError, AssertionError):
        raise cli.UserError(f"--video-scale must be fit or a number above 0 and at most 1, not {text!r}")


def parse_image_side(text, size):
    """`fit` or a pixel count N, at least the tile's longer side (so a tile fits in any image)."""
    if text == "fit":
        return text
    least = max(size)
    try:
        side = int(text)
        assert side >= least
        return side
    except (ValueError, AssertionError):
        raise cli.UserError(f"--image-side must be fit or a whole number of pixels, at least the tile's longer side "
                            f"{least} (--size {size[0]}x{size[1]}), not {text!r}")


def main(argv):
    p = cli.parser(__doc__)
    p.add_argument("--out", required=True, help="output FILE.tfrecord.gz; FILE.json is written beside it")
    p.add_argument("--video", action="append", default=[], help="a video file (repeatable); each is one source")
    p.add_argument("--images", action="append", default=[],
                   help="a folder of images, searched recursively (repeatable); each is one source")
    p.add_argument("--frame-step", type=int, default=10, help="keep every Nth video frame")
    p.add_argument("--size", default="320x180", help="tile size WIDTHxHEIGHT")
    p.add_argument("--crop", default="auto", help="auto (remove black borders), none, or TOP,LEFT,BOTTOM,RIGHT pixels")
    p.add_argument("--crops-per-image", type=int, default=1,
                   help="tiles per image: the centred crop, then random crops")
    p.add_argument("--video-scale", default="fit", metavar="fit|S",
                   help="fit: each kept frame shrunk whole to one tile (for a global model); a number S in (0, 1]: "
                        "tile-size crops at random places of the frame as shown scaled by S (1: full size), so that "
                        "a spatial model learns the footage at the scale it renders it (mogrify_video.py renders "
                        "such a model at S times the frame's size)")
    p.add_argument("--crops-per-frame", type=int,
                   help="with --video-scale S: random crops per kept frame (default: 4)")
    p.add_argument("--image-side", default="fit", metavar="fit|N",
                   help="fit: each image centre-cut to the tile's aspect and shrunk to the tile; a number N: each "
                        "image resized so that its shorter side is N pixels (at least the tile's longer side; "
                        "smaller images are upscaled, with a warning), then cut into tile-size crops (the centre, "
                        "then random places, --crops-per-image in all). N sets the size of the painting's marks in "
                        "the output: with --video-scale S of footage H pixels high, N = S*H shows the strokes as if "
                        "the painting filled the frame; a smaller N gives broader strokes, a larger finer")
    p.add_argument("--seed", type=int, default=0, help="seed for shuffling and random crops")
    p.add_argument("--shards", type=int, default=1,
                   help="files to deal the shuffled tiles into, FILE-00000-of-0000N.tfrecord.gz and so on, so that "
                        "training reads them in parallel; one manifest FILE.json for all")
    args = p.parse_args(argv)
    if not args.video and not args.images:
        raise cli.UserError("give at least one --video or --images source")
    if not args.out.endswith(".tfrecord.gz"):
        raise cli.UserError(f"--out must end in .tfrecord.gz, not {args.out!r}")
    if args.frame_step < 1 or args.crops_per_image < 1 or args.shards < 1:
        raise cli.UserError("--frame-step, --crops-per-image and --shards must be at least 1")
    size = parse_size(args.size)
    video_scale = parse_video_scale(args.video_scale)
    image_side = parse_image_side(args.image_side, size)
    if args.crops_per_frame is not None and video_scale == "fit":
        raise cli.UserError("--crops-per-frame is for --video-scale S; with fit each kept frame gives one tile")
    crops_per_frame = 4 if args.crops_per_frame is None else args.crops_per_frame
    if crops_per_frame < 1:
        raise cli.UserError("--crops-per-frame must be at least 1")
    cli.raise_on_sigterm()
    from vae import extract, probe  # after the argument checks: they load NumPy and OpenCV
    crop = probe.parse_crop(args.crop)
    sources = extract.extract(args.out, args.video, args.images, size, args.frame_step, crop,
                              args.crops_per_image, args.seed, args.shards, video_scale, crops_per_frame, image_side)
    total = sum(s["count"] for s in sources)
    where = args.out if args.shards == 1 else " ".join(extract.shard_paths(args.out, args.shards)[::args.shards - 1])
    print(f"wrote {total} tiles of {size[0]}x{size[1]} from {len(sources)} sources to {where}")
    return 0


if __name__ == "__main__":
    cli.run(main)
