#!/usr/bin/env python3
"""The README's real-footage table and pictures for one held-out clip (doc/real_run.sh trains the
models first).

The clip is rendered every way the README compares (spatial models trained on whole frames and at
the scale they render, --match at a few strengths, with and without --detail, the texture-loss
refiner alone and after matching) and through the two plain filters of doc/compare.py. Every
output is then measured the same way, independently of the render that made it
(vae.measures.measure_files on the decoded files), against the style's tiles as the scaled model
learned them; the paintings' floor is fresh crops of the painting at that scale, measured the
same way. Texture is reported on the finer pyramid levels (the marks: all but the coarsest, which
is the footage's layout), in colour and on luminance alone, and as the share of the way from the
input to the floor.

    python doc/study.py --input heldout.mp4 --work /tmp/renders --fit F --scaled S --texture T \
        --style wave --painting wave.jpg --name heldout --out doc
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
from vae import decode, ffmpeg, images, measures, probe  # noqa: E402

PANELS = ("spatial, whole frames", "whole frames, --match 1", "at its scale, --match 1", "--match 1 --detail 0.5",
          "texture refiner, --match 1", "Reinhard", "oil paint")


def rows(args):
    """(label, what it is, command that writes OUT) for each rendered row."""
    shift = ["--alpha", str(args.alpha), "--beta", str(args.beta), "--style", args.style, "--crop", "none"]
    mogrify = [sys.executable, os.path.join(ROOT, "mogrify_video.py"), args.input]
    compare = [sys.executable, os.path.join(ROOT, "doc", "compare.py"), args.input, "--models", args.scaled,
               "--style", args.style]

    def compared(name):
        command = lambda out: compare + ["--filter", name, "--out", out]  # noqa: E731
        command.models = args.scaled
        return command

    def render(models, *more):
        command = lambda out: mogrify + [out, "--models", models, *shift, *more]  # noqa: E731
        command.models = models
        return command

    return [
        ("spatial, whole frames", "trained on whole frames and paintings shrunk to the tile, at the frame's size",
         render(args.fit)),
        ("whole frames, --match 1", "the same, --match 1", render(args.fit, "--match", "1")),
        ("at its scale", "trained on crops at half size, the painting at the frame's height; renders at half size",
         render(args.scaled)),
        ("at its scale, --match 0.5", "the same, --match 0.5", render(args.scaled, "--match", "0.5")),
        ("at its scale, --match 1", "the same, --match 1", render(args.scaled, "--match", "1")),
        ("--match 1 --detail 0.5", "the same, with half the input's own detail put back",
         render(args.scaled, "--match", "1", "--detail", "0.5")),
        ("texture refiner", "at its scale + the texture-loss refiner (no discriminator)", render(args.texture)),
        ("texture refiner, --match 1", "the same after --match 1", render(args.texture, "--match", "1")),
        ("Reinhard", "colour transfer in Lab toward the style's tiles", compared("reinhard")),
        ("oil paint", "OpenCV xphoto.oilPainting(7, 1)", compared("oil")),
    ]


def painting_floor(painting, side, size, path, crops=48, seed=7):
    """Fresh crops of the painting at the scale the models learned it (shorter side `side`, tiles
    of `size`), written as a clip and measured as every render is: how close footage could get."""
    frames = images.crops_at_scale(images.at_side(images.load_rgb(painting), side), size, crops,
                                   np.random.default_rng(seed))
    w, h = size
    subprocess.run([ffmpeg.exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
                    "-r", "25", "-i", "-", "-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p", path],
                   input=np.stack(frames).tobytes(), check=True)
    return path


def frame_at(path, index):
    meta = probe.probe(path)
    for frame in decode.read_frames(meta, meta.display_size):
        if frame.index == index:
            return frame.image
    raise SystemExit(f"{path}: no frame {index}")


def pictures(args, outputs, painting):
    """The frame each way (the whole frame), and a 1:1 cut of its middle (the marks as shown)."""
    input_frame = frame_at(args.input, args.frame)
    frames = [("input (held out)", input_frame)] + [(label, frame_at(outputs[label], args.frame))
                                                     for label in PANELS if label in outputs]
    frames.append((f"the style: {os.path.basename(args.painting)}", painting))
    for suffix, cut in (("", False), ("_cut", True)):
        fig, axes = plt.subplots(3, 3, figsize=(16, 9.6))
        for ax, (title, image) in zip(axes.flat, frames):
            if cut and not title.startswith("the style"):
                h, w = image.shape[:2]
                ch, cw = h // 3, w // 3
                image = image[h // 2 - ch // 2:h // 2 + ch // 2, w // 2 - cw // 2:w // 2 + cw // 2]
            ax.imshow(image, interpolation="nearest")
            ax.set_title(title)
            ax.axis("off")
        fig.savefig(os.path.join(args.out, f"real_look_{args.name}{suffix}.png"), dpi=60, bbox_inches="tight")
        plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--fit", required=True, help="models folder of the spatial VAE trained on whole frames")
    p.add_argument("--scaled", required=True, help="models folder of the spatial VAE trained at its render scale")
    p.add_argument("--texture", required=True, help="the scaled VAE with the texture-loss refiner")
    p.add_argument("--style", required=True)
    p.add_argument("--painting", required=True, help="the style's painting, shown beside the frames")
    p.add_argument("--side", type=int, default=360, help="the painting's shorter side in the scaled model's tiles")
    p.add_argument("--name", required=True, help="the clip's name in the files written")
    p.add_argument("--alpha", type=float, default=0.25)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--frame", type=int, default=20)
    p.add_argument("--out", required=True, help="folder for real_table_NAME.md and real_look_NAME*.png")
    p.add_argument("--render-only", action="store_true",
                   help="only render the rows whose models are there (while others still train), no table")
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    reference = measures.style_reference(args.scaled, {args.style: 1.0})
    with open(os.path.join(args.scaled, "embeddings.json")) as f:
        style_lab = json.load(f)["sources"][args.style]["lab_mean"]
    with open(os.path.join(args.scaled, "model.json")) as f:
        tile = json.load(f)
    floor_clip = painting_floor(args.painting, args.side, (tile["width"], tile["height"]),
                                os.path.join(args.work, "painting_floor.mp4"))
    floor = measures.measure_files(floor_clip, floor_clip, reference, style_lab=style_lab)
    results, outputs = [], {}
    for label, what, command in rows(args):
        out = os.path.join(args.work, "".join(c if c.isalnum() else "_" for c in label).strip("_") + ".mp4")
        if not os.path.exists(out):
            if not os.path.isfile(os.path.join(command.models, "model.json")):
                print(f"{label}: left out, {command.models} is not exported yet", file=sys.stderr)
                continue  # that model is still training: render it on a later run
            subprocess.run(command(out), check=True, stdout=subprocess.DEVNULL)
        if args.render_only:
            continue
        measured_path = out + ".measures.json"  # the measures of a render, kept for the next run
        if not os.path.exists(measured_path):
            with open(measured_path, "w") as f:
                json.dump(measures.measure_files(args.input, out, reference, style_lab=style_lab), f)
        with open(measured_path) as f:
            measured = json.load(f)
        results.append((label, what, measured))
        outputs[label] = out
        print(f"{label}: " + ", ".join(f"{k} {measured[k]:.3g}" for k in ("structure", "palette_after", "sharpness",
                                                                            "flicker")), file=sys.stderr)
    if args.render_only:
        return
    before = results[0][2]
    fine_floor = {kind: measures.fine_texture(floor[f"texture{kind}_levels_after"]) for kind in ("", "_luma")}
    fine_before = {kind: measures.fine_texture(before[f"texture{kind}_levels_before"]) for kind in ("", "_luma")}
    meta = probe.probe(args.input)
    lines = [f"Held-out clip {args.name} ({os.path.basename(args.input)}, {meta.width}x{meta.height}), style "
             f"{args.style!r}, alpha {args.alpha:g}, beta {args.beta:g}. Fine texture (all pyramid levels but the "
             f"coarsest), colour / luminance: input {fine_before['']:.0f} / {fine_before['_luma']:.0f}, the "
             f"painting's floor {fine_floor['']:.0f} / {fine_floor['_luma']:.0f}; palette: input "
             f"{before['palette_before']:.1f}. 'way' is the share of the way from the input to the floor.", "",
             "| row | what | structure | palette | fine texture | way | fine texture, luminance | way | sharpness "
             "| flicker |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
             f"| input | the footage itself | 1.00 | {before['palette_before']:.1f} | {fine_before['']:.0f} | 0% | "
             f"{fine_before['_luma']:.0f} | 0% | 1.00 | 1.00 |"]
    table = {}
    for label, what, m in results:
        after = {kind: measures.fine_texture(m[f"texture{kind}_levels_after"]) for kind in ("", "_luma")}
        ways = {kind: measures.share_of_the_way(fine_before[kind], after[kind], fine_floor[kind]) for kind in after}
        table[label] = {**m, "fine_texture": after[""], "fine_texture_luma": after["_luma"], "way": ways[""],
                        "way_luma": ways["_luma"]}
        lines.append(f"| {label} | {what} | {m['structure']:.2f} | {m['palette_after']:.1f} | {after['']:.0f} | "
                     f"{100 * ways['']:.0f}% | {after['_luma']:.0f} | {100 * ways['_luma']:.0f}% | "
                     f"{m['sharpness']:.2f} | {m['flicker']:.2f} |")
    lines.append(f"| painting | fresh crops of {os.path.basename(args.painting)} at the scale the models learned it "
                 f"| | 0 | {fine_floor['']:.0f} | 100% | {fine_floor['_luma']:.0f} | 100% | | |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, f"real_table_{args.name}.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.work, "study.json"), "w") as f:
        json.dump({"floor": floor, "fine_floor": fine_floor, "fine_before": fine_before, "rows": table}, f, indent=2)
    print(text)
    pictures(args, outputs, images.load_rgb(args.painting))
    print(f"wrote {args.out}/real_table_{args.name}.md and real_look_{args.name}.png, real_look_{args.name}_cut.png")


if __name__ == "__main__":
    main()
