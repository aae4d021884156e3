"""Pictures for people: a loss curve from TensorBoard events, a frame before and after, and
the look of a clip under several --detail and --smooth settings with the measures of each.

    python -m vae.figures training --logdir demo/log/vae --before clip.mp4 --after styled.mp4 --out demo/pictures
    python -m vae.figures look --input clip.mp4 --models demo/models --work /tmp/renders --out doc/look
"""
import argparse
import json
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vae import cli, decode, probe  # noqa: E402


def read_scalars(logdir, tags):
    # Here, after cli.quiet_tensorflow() in main: TensorFlow's start-up notes stay parked.
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(logdir, size_guidance={"tensors": 0})
    acc.Reload()
    return {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
            for tag in tags if tag in acc.Tags()["tensors"]}


def loss_curve(logdir, path):
    scalars = read_scalars(logdir, ["loss", "reconstruction_loss", "kl_loss"])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for tag, points in scalars.items():
        steps, values = zip(*points)
        ax.plot(steps, values, label=tag)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("per tile")
    ax.legend()
    ax.set_title("VAE training")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def frame_at(path, index):
    meta = probe.probe(path)
    for frame in decode.read_frames(meta, (meta.width, meta.height)):
        if frame.index == index:
            return frame.image
    raise ValueError(f"{path} has no frame {index}")


def before_after(before, after, path, index):
    a, b = frame_at(before, index), frame_at(after, index)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for ax, image, title in zip(axes, (a, b), ("input", "styled")):
        ax.imshow(image)
        ax.set_title(title)
        ax.axis("off")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


DETAILS = (0.0, 0.5, 1.0)
SMOOTHS = (0.0, 0.2, 0.5)


def render_settings(input_path, models, work, detail, smooth, alpha, beta, styles=(), match=None):
    """Render the clip with mogrify_video.py as a user would; returns (output path, measures)."""
    out = os.path.join(work, f"detail{detail}_smooth{smooth}.mp4")
    stats = out + ".json"
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mogrify_video.py")
    extra = [arg for style in styles for arg in ("--style", style)]
    if match is not None:
        extra += ["--match", str(match)]
    subprocess.run([sys.executable, script, input_path, out, "--models", models, "--detail", str(detail),
                    "--smooth", str(smooth), "--alpha", str(alpha), "--beta", str(beta), "--stats", stats, *extra],
                   check=True, stdout=subprocess.DEVNULL)
    with open(stats) as f:
        return out, json.load(f)


def look(input_path, models, work, out, frame, alpha, beta, smooths, styles=(), match=None):
    """look.png (one frame as input and at each --detail) and measures.md (the measures
    for each --detail and --smooth)."""
    os.makedirs(work, exist_ok=True)
    os.makedirs(out, exist_ok=True)
    rows, renders = [], {}
    for detail in DETAILS:
        for smooth in smooths:
            path, stats = render_settings(input_path, models, work, detail, smooth, alpha, beta, styles, match)
            renders[detail, smooth] = path
            rows.append((detail, smooth, stats))
            print(f"detail {detail} smooth {smooth}: " + ", ".join(f"{k} {stats[k]:.3g}" for k in
                  ("structure", "palette_after", "texture_after", "sharpness", "flicker") if k in stats), file=sys.stderr)
    smooth = 0.2 if 0.2 in smooths else smooths[0]
    panels = [("input", frame_at(input_path, frame))]
    with open(os.path.join(models, "model.json")) as f:
        spatial = json.load(f).get("latent") == "spatial"
    first = " (the decoded codes alone)" if spatial else " (the original look)"
    panels += [(f"--detail {d:g}" + (first if d == 0 else ""), frame_at(renders[d, smooth], frame)) for d in DETAILS]
    fig, axes = plt.subplots(2, 2, figsize=(12, 12 * panels[0][1].shape[0] / panels[0][1].shape[1] + 0.6))
    for ax, (title, image) in zip(axes.flat, panels):
        ax.imshow(image)
        ax.set_title(title)
        ax.axis("off")
    title = f"alpha {alpha}, beta {beta}, smooth {smooth}"
    if styles:
        title += ", style " + " ".join(styles)
    if match is not None:
        title += f", match {match:g}"
    fig.suptitle(title)
    fig.savefig(os.path.join(out, "look.png"), dpi=100, bbox_inches="tight")
    plt.close(fig)
    lines = ["| --detail | --smooth | structure | palette before | palette after | texture before | texture after "
             "| sharpness | flicker |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    nan = float("nan")
    lines += [f"| {d:g} | {s:g} | {m.get('structure', nan):.2f} | {m.get('palette_before', nan):.1f} "
              f"| {m.get('palette_after', nan):.1f} | {m.get('texture_before', nan):.0f} "
              f"| {m.get('texture_after', nan):.0f} | {m.get('sharpness', nan):.2f} | {m.get('flicker', nan):.2f} |"
              for d, s, m in rows]
    with open(os.path.join(out, "measures.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "measures.json"), "w") as f:
        json.dump([{"detail": d, "smooth": s, **m} for d, s, m in rows], f, indent=2)
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="command", required=True)
    training = commands.add_parser("training", help="loss curve and a frame before and after")
    training.add_argument("--logdir", required=True)
    training.add_argument("--before", required=True)
    training.add_argument("--after", required=True)
    training.add_argument("--frame", type=int, default=60)
    training.add_argument("--out", required=True)
    looks = commands.add_parser("look", help="a frame and the measures under several --detail and --smooth")
    looks.add_argument("--input", required=True)
    looks.add_argument("--models", required=True)
    looks.add_argument("--work", required=True, help="folder for the renders")
    looks.add_argument("--out", required=True, help="folder for look.png and measures.md")
    looks.add_argument("--frame", type=int, default=60)
    looks.add_argument("--alpha", type=float, default=0.5)
    looks.add_argument("--beta", type=float, default=1.0)
    looks.add_argument("--style", action="append", default=[], metavar="NAME[:WEIGHT]",
                       help="passed to mogrify_video.py, repeatable (default: mogrify's own)")
    looks.add_argument("--match", type=float, default=None,
                       help="spatial models: passed to mogrify_video.py (default: not passed, mogrify's 0)")
    looks.add_argument("--all-smooths", action="store_true", help=f"every --smooth of {SMOOTHS}, not only 0.2")
    args = p.parse_args()
    cli.quiet_tensorflow()
    if args.command == "look":
        look(args.input, args.models, args.work, args.out, args.frame, args.alpha, args.beta,
             SMOOTHS if args.all_smooths else (0.2,), args.style, args.match)
        print(f"wrote look.png and measures.md to {args.out}")
        return
    os.makedirs(args.out, exist_ok=True)
    loss_curve(args.logdir, os.path.join(args.out, "loss.png"))
    before_after(args.before, args.after, os.path.join(args.out, "before_after.png"), args.frame)
    print(f"wrote loss.png and before_after.png to {args.out}")


if __name__ == "__main__":
    main()
