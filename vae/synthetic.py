"""Synthetic media for the tests (and anyone who wants media of known content): warm "paintings"
and a cool moving video. The demo uses real media instead (data/demo/).

The two differ clearly in palette and texture (palette-knife strokes in reds, oranges and
ochres over dark grounds, against a blue-green panning scene with moving grey shapes), so a
style shift between them is easy to see and to measure. Deterministic for a given seed.

    python -m vae.synthetic --out /tmp/media
"""
import argparse
import os
import wave

import cv2
import numpy as np

from vae import encode

WARM = np.array([[200, 40, 30], [235, 110, 20], [245, 190, 60], [170, 30, 60], [250, 140, 90],
                 [120, 20, 10]], np.float32)
COOL = np.array([[40, 90, 160], [70, 150, 170], [60, 130, 80], [150, 170, 190], [30, 60, 90]],
                np.float32)


def painting(rng, width=320, height=240, strokes=220):
    """Palette-knife strokes in warm colours over a dark, slightly mottled ground (RGB)."""
    ground = rng.uniform(10, 40, 3).astype(np.float32)
    canvas = np.empty((height, width, 3), np.float32)
    canvas[:] = ground
    canvas += cv2.resize(rng.normal(0, 8, (height // 16 + 1, width // 16 + 1, 3)).astype(np.float32),
                         (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(strokes):
        colour = WARM[rng.integers(len(WARM))] + rng.normal(0, 15, 3)
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(10, 60)
        thickness = int(rng.integers(3, 12))
        dx, dy = np.cos(angle) * length, np.sin(angle) * length
        for k in range(3):  # ridges of a knife stroke: slightly shifted, lighter and darker
            shade = colour * (0.8 + 0.2 * k)
            offset = (k - 1) * thickness / 3
            p0 = (int(x0 + offset * np.sin(angle)), int(y0 - offset * np.cos(angle)))
            p1 = (int(x0 + dx + offset * np.sin(angle)), int(y0 + dy - offset * np.cos(angle)))
            cv2.line(canvas, p0, p1, tuple(float(c) for c in shade), max(1, thickness // 2), cv2.LINE_AA)
    canvas += rng.normal(0, 6, canvas.shape)  # canvas grain
    return np.clip(canvas, 0, 255).astype(np.uint8)


def scene_frames(rng, width=320, height=180, frames=75, letterbox=0, pillarbox=0, dark=False):
    """A slow pan over a cool landscape with grey and blue shapes moving across (RGB)."""
    inner_w, inner_h = width - 2 * pillarbox, height - 2 * letterbox
    world_w = inner_w * 2
    rows = np.linspace(0, 1, inner_h, dtype=np.float32)[:, None, None]
    sky, land = COOL[0] + 60, COOL[2]
    world = (1 - rows) * sky + rows * land + np.zeros((inner_h, world_w, 3), np.float32)
    world += cv2.resize(rng.normal(0, 25, (inner_h // 8 + 1, world_w // 8 + 1, 3)).astype(np.float32),
                        (world_w, inner_h), interpolation=cv2.INTER_CUBIC)
    shapes = [(rng.uniform(0, inner_w), rng.uniform(0, inner_h), rng.uniform(-3, 3), rng.uniform(-1.5, 1.5),
               rng.uniform(6, 24), COOL[rng.integers(len(COOL))] + 40, rng.integers(2)) for _ in range(6)]
    for t in range(frames):
        x = int((world_w - inner_w) * t / max(1, frames - 1) * 0.5)
        frame = world[:, x:x + inner_w].copy()
        for (sx, sy, vx, vy, r, colour, square) in shapes:
            cx, cy = int((sx + vx * t) % inner_w), int((sy + vy * t) % inner_h)
            c = tuple(float(v) for v in colour)
            if square:
                cv2.rectangle(frame, (int(cx - r), int(cy - r)), (int(cx + r), int(cy + r)), c, -1)
            else:
                cv2.circle(frame, (cx, cy), int(r), c, -1, cv2.LINE_AA)
        if dark:
            frame = frame * 0.25 + 30  # a night scene: dark, but never black
        out = np.zeros((height, width, 3), np.uint8)
        out[letterbox:letterbox + inner_h, pillarbox:pillarbox + inner_w] = np.clip(frame, 0, 255)
        yield out


def write_tone(path, seconds, rate=44100, frequency=220.0):
    """A quiet sine tone as 16-bit stereo WAV, to stand in for a music track."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.2 * 32767 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)
    with wave.open(path, "wb") as f:
        f.setnchannels(2)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(np.repeat(samples[:, None], 2, axis=1).tobytes())


def write_video(path, seed=0, width=320, height=180, frames=75, fps=25, letterbox=0, pillarbox=0,
                dark=False, audio=False):
    """The synthetic scene as an H.264 MP4, optionally with a tone as its audio track."""
    rng = np.random.default_rng(seed)
    tone = None
    if audio:
        tone = path + ".wav"
        write_tone(tone, frames / fps)
    try:
        encode.write_video(path, scene_frames(rng, width, height, frames, letterbox, pillarbox, dark), fps,
                          sound=tone, crf=20, preset="veryfast")
    finally:
        if tone:
            os.unlink(tone)
    return path


def write_paintings(folder, count=12, seed=0):
    """`count` paintings as JPEG files, in landscape and portrait shapes."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed + 1000)
    paths = []
    for i in range(count):
        width, height = (320, 240) if i % 3 else (240, 320)
        path = os.path.join(folder, f"painting_{i:03d}.jpg")
        cv2.imwrite(path, cv2.cvtColor(painting(rng, width, height), cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
        paths.append(path)
    return paths


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for paintings/ and the video")
    p.add_argument("--paintings", type=int, default=12, help="number of paintings")
    p.add_argument("--frames", type=int, default=100, help="video length in frames (25 fps)")
    p.add_argument("--size", default="320x180", help="video size WIDTHxHEIGHT")
    p.add_argument("--letterbox", type=int, default=16, help="height of black bars above and below")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    write_paintings(os.path.join(args.out, "paintings"), args.paintings, args.seed)
    clip = write_video(os.path.join(args.out, "clip.mp4"), args.seed, width, height, args.frames,
                       letterbox=args.letterbox, audio=True)
    print(f"wrote {args.paintings} paintings to {os.path.join(args.out, 'paintings')} and {clip}")


if __name__ == "__main__":
    main()
