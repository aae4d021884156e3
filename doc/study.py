#!/usr/bin/env python3
"""The README's real-footage table and picture (doc/real_run.sh trains the models first).

A held-out clip is rendered every way the README compares (the original look, --detail 1, the
spatial model, the style refiner) and through the two plain filters of doc/compare.py; every
output is then measured the same way, independently of the render that made it
(vae.measures.measure_files on the decoded files, against the style's tiles), beside the
paintings' own floor: fresh crops of the painting measured against the same tiles.

    python doc/study.py --input heldout.mp4 --work /tmp/renders --global G --spatial S --styled T \
        --style wave --painting wave.jpg --out doc
"""
import argparse
import json
import os
import subprocess
import sys

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from vae import images, measures, video  # noqa: E402

KEYS = ("structure", "palette_after", "texture_after", "sharpness", "flicker")


def rows(args):
    """(label, what it is, command that writes OUT) for each rendered row."""
    shift = ["--alpha", str(args.alpha), "--beta", str(args.beta), "--style", args.style, "--crop", "none"]
    mogrify = [sys.executable, os.path.join(ROOT, "mogrify_video.py"), args.input]
    compare = [sys.executable, os.path.join(ROOT, "doc", "compare.py"), args.input, "--models", args.spatial,
               "--style", args.style]
    return [
        ("original look", "global VAE + refiner, --detail 0",
         lambda out: mogrify + [out, "--models", args.global_, *shift]),
        ("--detail 1", "global VAE + refiner, --detail 1",
         lambda out: mogrify + [out, "--models", args.global_, *shift, "--detail", "1"]),
        ("spatial", "spatial VAE, --detail 0, at the frame's size",
         lambda out: mogrify + [out, "--models", args.spatial, *shift]),
        ("style refiner", "spatial VAE + style refiner, --detail 0",
         lambda out: mogrify + [out, "--models", args.styled, *shift]),
        ("style refiner, loose", "the same, --content-pool 8 --content-weight 0.5 --adversarial-weight 2",
         lambda out: mogrify + [out, "--models", args.styled_loose, *shift]),
        ("Reinhard", "colour transfer in Lab toward the style's tiles",
         lambda out: compare + ["--filter", "reinhard", "--out", out]),
        ("oil paint", "OpenCV xphoto.oilPainting(7, 1)",
         lambda out: compare + ["--filter", "oil", "--out", out]),
    ]


def painting_floor(painting, reference, crops=32, seed=7):
    """The texture of fresh crops of the painting (at the analysis size frames are measured at)
    against the reference: how close footage could get."""
    image = images.load_rgb(painting)
    size = (measures.ANALYSIS_WIDTH, measures.ANALYSIS_WIDTH * 9 // 16)
    patches, rng = measures.PatchSet(), np.random.default_rng(seed)
    for tile in images.cut_tiles(image, size, crops, rng)[1:]:
        patches.add(reference.patches_of(tile, rng))
    return reference.distance(patches)


def frame_at(path, index):
    meta = video.probe(path)
    for frame in video.read_frames(meta, meta.display_size):
        if frame.index == index:
            return frame.image
    raise SystemExit(f"{path}: no frame {index}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--global", dest="global_", required=True, help="models folder of the global VAE")
    p.add_argument("--spatial", required=True, help="models folder of the spatial VAE")
    p.add_argument("--styled", required=True, help="models folder of the spatial VAE with the style refiner")
    p.add_argument("--styled-loose", required=True, help="the same with the looser content term")
    p.add_argument("--style", required=True)
    p.add_argument("--painting", required=True, help="the style's painting, shown beside the frames")
    p.add_argument("--alpha", type=float, default=0.25)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--frame", type=int, default=20)
    p.add_argument("--out", required=True, help="folder for real_table.md and real_look.png")
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    reference = measures.style_reference(args.spatial, {args.style: 1.0})
    with open(os.path.join(args.spatial, "embeddings.json")) as f:
        style_lab = json.load(f)["sources"][args.style]["lab_mean"]
    results, outputs = [], {}
    for label, what, command in rows(args):
        out = os.path.join(args.work, "".join(c if c.isalnum() else "_" for c in label).strip("_") + ".mp4")
        if not os.path.exists(out):
            subprocess.run(command(out), check=True, stdout=subprocess.DEVNULL)
        measured = measures.measure_files(args.input, out, reference, style_lab=style_lab)
        print(f"{label}: " + ", ".join(f"{k} {measured.get(k, float('nan')):.3g}" for k in KEYS), file=sys.stderr)
        results.append((label, what, measured))
        outputs[label] = out
    before = results[0][2]
    floor = painting_floor(args.painting, reference)
    lines = [f"Held-out clip: {os.path.basename(args.input)}, style {args.style!r}, alpha {args.alpha:g}, "
             f"beta {args.beta:g}. Texture: input {before['texture_before']:.0f}, the painting's own floor "
             f"{floor:.0f}; palette: input {before['palette_before']:.1f}.", "",
             "| row | what | structure | palette | texture | sharpness | flicker |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
             f"| input | the footage itself | 1.00 | {before['palette_before']:.1f} | {before['texture_before']:.0f} "
             f"| 1.00 | 1.00 |"]
    for label, what, m in results:
        lines.append(f"| {label} | {what} | {m['structure']:.2f} | {m['palette_after']:.1f} | {m['texture_after']:.0f} "
                     f"| {m['sharpness']:.2f} | {m['flicker']:.2f} |")
    lines.append(f"| painting | fresh crops of {os.path.basename(args.painting)} | | 0 | {floor:.0f} | | |")
    table = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "real_table.md"), "w") as f:
        f.write(table)
    with open(os.path.join(args.work, "study.json"), "w") as f:
        json.dump({"floor": floor, "rows": {label: m for label, _, m in results}}, f, indent=2)
    print(table)
    panels = [("input (held out)", frame_at(args.input, args.frame))]
    panels += [(label, frame_at(outputs[label], args.frame)) for label, _, _ in results]
    painting = images.load_rgb(args.painting)
    panels.append((f"the style: {os.path.basename(args.painting)}", painting))
    fig, axes = plt.subplots(3, 3, figsize=(16, 9.6))
    for ax, (title, image) in zip(axes.flat, panels):
        ax.imshow(image)
        ax.set_title(title)
        ax.axis("off")
    fig.savefig(os.path.join(args.out, "real_look.png"), dpi=80, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {args.out}/real_table.md and real_look.png")


if __name__ == "__main__":
    main()
