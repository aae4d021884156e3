"""Pictures for people: a loss curve from TensorBoard events, and a frame before and after.

    python -m vae.figures --logdir demo/log/vae --before clip.mp4 --after styled.mp4 --out demo/pictures
"""
import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_scalars(logdir, tags):
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
    from vae import video
    meta = video.probe(path)
    for frame in video.read_frames(meta, (meta.width, meta.height)):
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--logdir", required=True)
    p.add_argument("--before", required=True)
    p.add_argument("--after", required=True)
    p.add_argument("--frame", type=int, default=60)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    from vae import cli
    cli.quiet_tensorflow()
    os.makedirs(args.out, exist_ok=True)
    loss_curve(args.logdir, os.path.join(args.out, "loss.png"))
    before_after(args.before, args.after, os.path.join(args.out, "before_after.png"), args.frame)
    print(f"wrote loss.png and before_after.png to {args.out}")


if __name__ == "__main__":
    main()
