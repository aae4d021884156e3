"""The pictures of evaluate_embeddings.py --report, drawn with matplotlib."""
import os

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorboard.plugins import projector  # noqa: E402

from vae import images, latent  # noqa: E402
from vae.cli import atomic_path  # noqa: E402

MIX_SHIFT = (0.5, 1.0)
SWEEP = [(0.0, 0.0), (0.25, 0.25), (0.25, 0.5), (0.5, 0.75), (0.5, 1.0), (1.0, 1.5)]
NOISE = [0.0, 0.5, 1.0, 2.0]


def save(fig, path):
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)


def grid_figure(rows, row_labels, col_labels=None, title=None, gap=4):
    """A figure of one image grid (rows of equally sized float RGB images), labelled beside and above."""
    picture = images.grid(rows, gap)
    h, w = rows[0][0].shape[:2]
    scale = max(1.0, 1.4 / (w / 100))
    fig, ax = plt.subplots(figsize=(picture.shape[1] / 100 * scale + 1.2, picture.shape[0] / 100 * scale + 0.6))
    ax.imshow(picture, interpolation="nearest")
    ax.set_yticks([r * (h + gap) + h / 2 for r in range(len(rows))], row_labels, fontsize=8)
    ax.set_xticks([c * (w + gap) + w / 2 for c in range(len(col_labels))] if col_labels else [], col_labels or [],
                  fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title:
        ax.set_title(title, fontsize=10, pad=14 if col_labels else 6)
    return fig


def psnr(a, b):
    mse = np.mean((np.asarray(a) - np.asarray(b)) ** 2, axis=(1, 2, 3))
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-10))


def write_report(folder, models, sources, samples, codes, style=None):
    """samples: {source: float tiles [N,H,W,3]}; codes: {'codes': [M,C], 'sources': [M]} (for a
    spatial model each tile's map averaged over its positions). A spatial model's codes are maps,
    its shifts and noise per channel, broadcast over the positions; its pictures are cut to the tile."""
    os.makedirs(folder, exist_ok=True)
    names = sorted(samples)
    tile_h, tile_w = samples[names[0]].shape[1:3]
    size = (tile_w, tile_h)
    written = []

    # Reconstructions: input above output, per source.
    rows, labels = [], []
    for name in names:
        tiles = samples[name][:6]
        mean, _ = models.encode(tiles)
        decoded = models.decode(mean, size).numpy()
        rows += [tiles, decoded]
        labels += [f"{name}\ninput", f"{name}\nVAE"]
        if models.has_refiner:
            rows.append(models.refine(decoded).numpy())
            labels.append(f"{name}\nrefined")
    save(grid_figure(rows, labels, title="reconstructions"), os.path.join(folder, "reconstructions.png"))
    written.append("reconstructions.png")

    # Salted codes: each source's tiles encoded, Gaussian noise of growing size added, decoded.
    spread = codes["codes"].std(0)
    if models.latent == "spatial":  # the spread of single positions, wider than that of tile means
        maps = np.concatenate([models.encode(samples[name])[0].numpy() for name in names])
        spread = maps.reshape(-1, maps.shape[-1]).std(0)
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for name in names:
        mean, _ = models.encode(samples[name][:6])
        for sigma in NOISE:
            salted = mean.numpy() + sigma * spread * rng.standard_normal(mean.shape).astype(np.float32)
            rows.append(models.render(salted, size).numpy())
            labels.append(f"{name}\nnoise {sigma}σ")
    save(grid_figure(rows, labels, title="decoded codes plus Gaussian noise (σ: spread of the codes)"),
         os.path.join(folder, "salted.png"))
    written.append("salted.png")

    # Shift sweep: frames of each non-style source under growing alpha/beta.
    style = latent.mix_styles(sources, [style] if style else None)[0]
    rows, labels = [], []
    for name in names:
        if name == style:
            continue
        mean, _ = models.encode(samples[name][:4])
        for i in range(len(mean)):
            shifts = [latent.shift_vector(sources[name]["mean"], sources[style]["mean"], a, b) for a, b in SWEEP]
            rows.append([models.render(mean[i:i + 1] + shift, size).numpy()[0] for shift in shifts])
            labels.append(f"{name} #{i}")
    if rows:
        save(grid_figure(rows, labels, [f"α={a} β={b}" for a, b in SWEEP], title=f"shift toward {style!r}"),
             os.path.join(folder, "shift_sweep.png"))
        written.append("shift_sweep.png")

    # Style mixing: frames of the first video source under blends of the first two image sources.
    painted = [n for n in names if sources[n]["kind"] == "images"][:2]
    filmed = [n for n in names if sources[n]["kind"] == "video"][:1]
    if len(painted) == 2 and filmed:
        mixes = [1.0, 0.75, 0.5, 0.25, 0.0]
        mean, _ = models.encode(samples[filmed[0]][:4])
        rows = []
        for i in range(len(mean)):
            row = []
            for w in mixes:
                style_mean = latent.mix_styles(sources, [f"{painted[0]}:{w}", f"{painted[1]}:{1 - w}"])[1]
                shift = latent.shift_vector(sources[filmed[0]]["mean"], style_mean, *MIX_SHIFT)
                row.append(models.render(mean[i:i + 1] + shift, size).numpy()[0])
            rows.append(row)
        save(grid_figure(rows, [f"{filmed[0]} #{i}" for i in range(len(rows))],
                         [f"{painted[0]} {w:.2f}\n{painted[1]} {1 - w:.2f}" for w in mixes],
                         title=f"style mixes (α={MIX_SHIFT[0]} β={MIX_SHIFT[1]})\n"),
             os.path.join(folder, "style_mixes.png"))
        written.append("style_mixes.png")

    # 2-D PCA of all codes, coloured by source, means marked.
    all_codes = codes["codes"]
    centred = all_codes - all_codes.mean(0)
    _, _, axes_ = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ axes_[:2].T
    labels_arr = np.array(codes["sources"])
    fig, ax = plt.subplots(figsize=(6, 5))
    for name in names:
        points = projected[labels_arr == name]
        ax.scatter(points[:, 0], points[:, 1], s=8, alpha=0.6, label=f"{name} ({len(points)})")
        centre = (np.asarray(sources[name]["mean"]) - all_codes.mean(0)) @ axes_[:2].T
        ax.scatter([centre[0]], [centre[1]], s=120, marker="X", edgecolors="black")
    ax.set_xlabel("first principal component")
    ax.set_ylabel("second principal component")
    per_tile = ", per tile the mean over positions" if models.latent == "spatial" else ""
    ax.set_title(f"latent codes (encoder mean{per_tile}), X: source mean")
    ax.legend(fontsize=8)
    save(fig, os.path.join(folder, "projection.png"))
    written.append("projection.png")

    # Table: count, reconstruction PSNR, distance between source means.
    table = []
    for name in names:
        mean, _ = models.encode(samples[name])
        value = float(np.mean(psnr(samples[name], models.render(mean, size).numpy())))
        distances = {other: float(np.linalg.norm(np.subtract(sources[name]["mean"], sources[other]["mean"])))
                     for other in names if other != name}
        table.append((name, sources[name]["count"], value, distances))
    header = ["source", "tiles", "PSNR dB"] + [f"to {n}" for n in names]
    cells = [[n, str(c), f"{p:.1f}"] + [("-" if o == n else f"{d[o]:.2f}") for o in names] for n, c, p, d in table]
    fig, ax = plt.subplots(figsize=(1.4 * len(header), 0.4 * (len(cells) + 1) + 0.4))
    ax.axis("off")
    ax.table(cellText=cells, colLabels=header, loc="center")
    save(fig, os.path.join(folder, "table.png"))
    written.append("table.png")
    return written, table


def write_projector(folder, codes):
    """A TensorBoard projector of the codes: labelled by source, each point shown as its tile.

    View with `tensorboard --logdir FOLDER`, Projector tab. Holds the first len(tiles) codes.
    """
    tiles = codes["tiles"]
    n, h, w = tiles.shape[:3]
    scale = min(1.0, 64 / w)
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    side = int(np.ceil(np.sqrt(n)))
    small = [cv2.resize(tile, (tw, th), interpolation=cv2.INTER_AREA) for tile in tiles]
    # The projector cuts the sprite into a side x side grid of cells without gaps.
    sprite = images.grid([small[r * side:(r + 1) * side] for r in range(side)], gap=0, columns=side)
    with atomic_path(folder) as tmp:
        os.makedirs(tmp)
        images.save_png(os.path.join(tmp, "sprite.png"), sprite)
        with open(os.path.join(tmp, "metadata.tsv"), "w") as f:
            f.writelines(f"{source}\n" for source in codes["sources"][:n])
        embedding = tf.Variable(codes["codes"][:n], name="codes")
        tf.train.Checkpoint(embedding=embedding).save(os.path.join(tmp, "embedding.ckpt"))
        config = projector.ProjectorConfig()
        entry = config.embeddings.add()
        entry.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
        entry.metadata_path = "metadata.tsv"
        entry.sprite.image_path = "sprite.png"
        entry.sprite.single_image_dim.extend([tw, th])
        projector.visualize_embeddings(tmp, config)
    return n
