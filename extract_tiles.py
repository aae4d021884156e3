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
    cli.raise_on_sigterm()
    from vae import extract, video  # after the argument checks: they load NumPy and OpenCV
    crop = video.parse_crop(args.crop)
    sources = extract.extract(args.out, args.video, args.images, size, args.frame_step, crop,
                              args.crops_per_image, args.seed, args.shards)
    total = sum(s["count"] for s in sources)
    where = args.out if args.shards == 1 else " ".join(extract.shard_paths(args.out, args.shards)[::args.shards - 1])
    print(f"wrote {total} tiles of {size[0]}x{size[1]} from {len(sources)} sources to {where}")
    return 0


if __name__ == "__main__":
    cli.run(main)
