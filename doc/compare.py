#!/usr/bin/env python3
"""Render a video through one of the plain filters a user could pick instead of the models, and
measure it as mogrify_video.py measures its renders (vae.measures.measure_files):

- reinhard: Reinhard et al.'s colour transfer, each Lab channel moved to the mean and spread of
  the style's tiles;
- oil: OpenCV's xphoto.oilPainting.

    python doc/compare.py INPUT.mp4 --models DIR --style NAME --filter reinhard --out OUT.mp4
"""
import json
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vae import cli, decode, latent, measures, probe, safety, sinks  # noqa: E402


def lab_statistics(rgb):
    lab = cv2.cvtColor(np.asarray(rgb).reshape(-1, 1, 3), cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float32)
    return lab.mean(0), lab.std(0)


def reinhard(style_tiles):
    target_mean, target_std = lab_statistics(style_tiles)

    def apply(frame):
        lab = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB).astype(np.float32)
        mean, std = lab.reshape(-1, 3).mean(0), lab.reshape(-1, 3).std(0)
        lab = (lab - mean) * (target_std / np.maximum(std, 1e-6)) + target_mean
        return cv2.cvtColor(np.clip(lab + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)

    return apply


def oil(_style_tiles):
    def apply(frame):
        return cv2.cvtColor(cv2.xphoto.oilPainting(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), 7, 1), cv2.COLOR_BGR2RGB)

    return apply


FILTERS = {"reinhard": reinhard, "oil": oil}


def main(argv):
    p = cli.parser(__doc__)
    p.add_argument("input")
    p.add_argument("--models", required=True, help="a models folder with embeddings.json and tiles.npz")
    p.add_argument("--style", action="append", metavar="NAME[:WEIGHT]", help="as mogrify_video.py's --style")
    p.add_argument("--filter", required=True, choices=sorted(FILTERS))
    p.add_argument("--out", required=True, help="the filtered MP4")
    p.add_argument("--stats", metavar="FILE.json", help="also write the measures as JSON")
    args = p.parse_args(argv)
    meta = probe.probe(args.input)
    sources = safety.check_embeddings(latent.embeddings_path(args.models),
                                      safety.read_models_folder(args.models)[0]["codes"])
    weights = latent.style_weights(sources, args.style)
    path = measures.tiles_path(args.models)
    if not os.path.isfile(path):
        raise cli.UserError(f"{path}: missing; run evaluate_embeddings.py again to write the style's tiles")
    tiles = safety.check_tiles(path, list(sources))
    style_tiles = np.concatenate([tiles[name] for name in weights])
    apply = FILTERS[args.filter](style_tiles)
    sink = sinks.Mp4Sink(args.out, meta.display_size, meta.fps, meta.display_size, source=meta, preset="veryfast",
                         crf=18)
    try:
        for frame in decode.read_frames(meta, meta.display_size):
            sink.write(apply(frame.image), frame.time, frame.duration)
    except BaseException:
        sink.abort()
        raise
    sink.close()
    mix = latent.mix_styles(sources, args.style)
    reference = measures.style_reference(args.models, weights)  # the tiles mogrify_video.py measures against
    result = {**measures.measure_files(args.input, args.out, reference, style_lab=mix[2]),
              "style": mix[0], "filter": args.filter}
    print(f"wrote {args.out} ({args.filter})")
    for key, value in result.items():
        print(f"  {key}: {value:.3f}" if isinstance(value, float) else f"  {key}: {value}")
    if args.stats:
        with cli.atomic_path(args.stats) as tmp, open(tmp, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    cli.run(main)
