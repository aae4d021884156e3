#!/usr/bin/env python3
"""The spatial decoder's two borders, trained alike and measured on frames they never saw.

A new spatial run's decoder resizes and convolves at the lower size, which needs the resized map's
border continued by mirroring; runs before it padded the resized map with zeros. Inside the
picture the two compute the same function, so this trains one of each with the same data, seed
and steps (the zeros run from the mirror run's config.json with only `resize_border` changed) and
reports held-out PSNR over the whole frame, its outer band and the rest, beside a plain filter
(the frame shrunk to the code map's size and enlarged again), with a picture of one corner.

    python doc/decoder_border.py --video clip.mp4 --paintings folder --work /tmp/border --out doc
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from vae import ffmpeg  # noqa: E402

SIZE, TILE, D, BAND = (320, 180), (96, 56), 8, 4


def run(*cmd):
    subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL)


def frames(path, size):
    """Every frame of a video as shown, at `size`, as uint8 RGB."""
    w, h = size
    raw = subprocess.run([ffmpeg.exe(), "-v", "error", "-i", path, "-vf", f"scale={w}:{h}:flags=area",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


def psnr(a, b, mask):
    err = ((a.astype(np.float64) - b.astype(np.float64)) ** 2)[:, mask].mean()
    return 10 * np.log10(255.0 ** 2 / err)


def grid(pictures):
    """Differences between neighbours inside 2x2 blocks over those across blocks (squared, luma,
    both directions): about 1 for a picture without a 2x2 pattern; a sub-pixel decoder's grid
    moves it away from 1 (the README's decoder table)."""
    luma = pictures.astype(np.float64) @ [0.299, 0.587, 0.114]
    ratios = []
    for axis in (1, 2):
        step = np.diff(luma, axis=axis)
        inside, across = np.take(step, range(0, step.shape[axis], 2), axis), np.take(step, range(1, step.shape[axis], 2), axis)
        ratios.append((inside ** 2).mean() / (across ** 2).mean())
    return float(np.mean(ratios))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", required=True)
    parser.add_argument("--paintings", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--out", default=os.path.join(ROOT, "doc"))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--train-seconds", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    python, work = sys.executable, args.work
    train, heldout = os.path.join(work, "train.mp4"), os.path.join(work, "heldout.mp4")
    for out, span in ((train, ["-t", args.train_seconds]), (heldout, ["-ss", args.train_seconds])):
        run(ffmpeg.exe(), "-v", "error", "-y", "-i", args.video, *span, "-an", "-c:v", "libx264", "-crf", 12, out)
    tiles = os.path.join(work, "tiles.tfrecord.gz")
    run(python, os.path.join(ROOT, "extract_tiles.py"), "--out", tiles, "--video", train, "--images", args.paintings,
        "--size", f"{TILE[0]}x{TILE[1]}", "--frame-step", 1, "--video-scale", SIZE[0] / 1280, "--crops-per-frame", 4,
        "--crops-per-image", 20)
    train_args = ["--data", tiles, "--steps", args.steps, "--batch-size", 16, "--save-every", args.steps,
                  "--preview-every", args.steps, "--log-every", 50, "--seed", args.seed]
    logdirs = {border: os.path.join(work, border) for border in ("mirror", "zeros")}
    for logdir in logdirs.values():
        shutil.rmtree(logdir, ignore_errors=True)
    run(python, os.path.join(ROOT, "train_vae.py"), *train_args, "--logdir", logdirs["mirror"], "--latent", "spatial")
    with open(os.path.join(logdirs["mirror"], "config.json")) as f:
        config = json.load(f)
    assert config["resize_border"] == "mirror"
    os.makedirs(logdirs["zeros"])
    with open(os.path.join(logdirs["zeros"], "config.json"), "w") as f:
        json.dump({**config, "resize_border": "zeros"}, f)
    run(python, os.path.join(ROOT, "train_vae.py"), *train_args, "--logdir", logdirs["zeros"])

    import tensorflow as tf
    shown = frames(heldout, SIZE)
    outputs = {}
    for border, logdir in logdirs.items():
        models = os.path.join(work, f"models_{border}")
        run(python, os.path.join(ROOT, "export_graphs.py"), "--vae", logdir, "--out", models)
        encoder = tf.saved_model.load(os.path.join(models, "encoder"))
        decoder = tf.saved_model.load(os.path.join(models, "decoder"))
        x = tf.constant(shown.astype(np.float32) / 255.0)
        mean = encoder.signatures["serving_default"](images=x)["mean"]
        pixels = decoder.signatures["serving_default"](z=mean)["images"].numpy()[:, :SIZE[1], :SIZE[0]]
        outputs[f"decoder, {border} border"] = np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8)
    small = (SIZE[0] // D, SIZE[1] // D)
    outputs["plain filter (shrunk to the code map, enlarged)"] = np.stack(
        [cv2.resize(cv2.resize(f, small, interpolation=cv2.INTER_AREA), SIZE, interpolation=cv2.INTER_CUBIC)
         for f in shown])
    band = np.ones(shown.shape[1:3], bool)
    band[BAND:-BAND, BAND:-BAND] = False
    table = [f"Held-out PSNR (dB) on the last {len(shown)} frames of {os.path.basename(args.video)} at "
             f"{SIZE[0]}x{SIZE[1]}, after {args.steps} steps of 16 tiles of {TILE[0]}x{TILE[1]} each (seed {args.seed}):", "",
             f"| output | whole frame | outer {BAND} px | the rest | 2x2 grid (input {grid(shown):.2f}) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, out in outputs.items():
        table.append(f"| {name} | {psnr(shown, out, np.ones_like(band)):.2f} | {psnr(shown, out, band):.2f} | "
                     f"{psnr(shown, out, ~band):.2f} | {grid(out):.2f} |")
    text = "\n".join(table) + "\n"
    print(text)
    with open(os.path.join(args.out, "decoder_border.md"), "a" if args.seed else "w") as f:
        f.write(text)
    if args.seed:
        return
    corner = [shown[len(shown) // 2]] + [out[len(shown) // 2] for out in outputs.values()]
    strip = np.concatenate([cv2.resize(c[:45, :80], (320, 180), interpolation=cv2.INTER_NEAREST) for c in corner], 1)
    cv2.imwrite(os.path.join(args.out, "decoder_border.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    print("top-left corners, 4x, left to right: input, " + ", ".join(outputs) + f" -> {args.out}/decoder_border.png")


if __name__ == "__main__":
    main()
