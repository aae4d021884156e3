"""Latent codes per source and the style shift: z - alpha * mean(source) + beta * mean(style)."""
import json
import os

import cv2
import numpy as np

from vae import records
from vae import safety
from vae.cli import UserError, atomic_path, progress


def mean_lab(images):
    """Mean CIELAB colour (L 0..100, a and b around 0) of RGB images, uint8 or float in 0..1."""
    images = np.asarray(images)
    flat = images.reshape(-1, images.shape[-2], 3) if images.ndim > 3 else images
    if images.dtype == np.uint8:  # OpenCV's fast 8-bit path stores L*255/100 and a, b + 128
        lab = cv2.cvtColor(flat, cv2.COLOR_RGB2LAB).reshape(-1, 3).mean(0)
        return np.array([lab[0] * 100 / 255, lab[1] - 128, lab[2] - 128])
    return cv2.cvtColor(flat.astype(np.float32), cv2.COLOR_RGB2LAB).reshape(-1, 3).mean(0)


def shift_vector(source_mean, style_mean, alpha, beta):
    """The constant added to every code: -alpha * mean(source) + beta * mean(style)."""
    return -alpha * np.asarray(source_mean, np.float32) + beta * np.asarray(style_mean, np.float32)


def encode_sources(models, files, size, keep_codes=False, keep_tiles=2000, samples_per_source=16):
    """Per source: count, mean code, mean Lab colour. With keep_codes, in the same pass: every
    code (for projections), the first `keep_tiles` tiles (for the projector's sprite) and the
    first `samples_per_source` tiles of each source (for the report's pictures)."""
    sums, counts, labs, kinds = {}, {}, {}, {}
    kept = {"codes": [], "sources": [], "tiles": [], "samples": {}}
    with progress(desc="encoding tiles", unit="tile") as bar:
        for batch in records.iterate(files, size):
            mean, _ = models.encode(batch["image"])
            mean = mean.numpy()
            for source in np.unique(batch["source"]):
                mask = batch["source"] == source
                name = source.decode()
                sums[name] = sums.get(name, 0) + mean[mask].sum(0, dtype=np.float64)
                labs[name] = labs.get(name, 0) + mean_lab(batch["image"][mask]) * mask.sum()
                counts[name] = counts.get(name, 0) + int(mask.sum())
                kinds[name] = batch["kind"][mask][0].decode()
                if keep_codes:
                    bucket = kept["samples"].setdefault(name, [])
                    bucket += list(batch["image"][mask][:samples_per_source - len(bucket)])
            if keep_codes:
                kept["codes"].append(mean)
                kept["sources"] += [s.decode() for s in batch["source"]]
                room = keep_tiles - sum(len(t) for t in kept["tiles"])
                if room > 0:
                    kept["tiles"].append((batch["image"][:room] * 255 + 0.5).astype(np.uint8))
            bar.update(len(mean))
    sources = {name: {"kind": kinds[name], "count": counts[name],
                      "mean": (sums[name] / counts[name]).astype(np.float32).tolist(),
                      "lab_mean": (labs[name] / counts[name]).tolist()} for name in sorted(counts)}
    if keep_codes:
        kept["codes"] = np.concatenate(kept["codes"])
        kept["tiles"] = np.concatenate(kept["tiles"])
        kept["samples"] = {name: np.stack(tiles) for name, tiles in kept["samples"].items()}
        return sources, kept
    return sources


def embeddings_path(models_dir):
    return os.path.join(models_dir, "embeddings.json")


def save_embeddings(models_dir, sources):
    with atomic_path(embeddings_path(models_dir)) as tmp, open(tmp, "w") as f:
        json.dump({"sources": sources}, f)


def load_embeddings(models_dir, codes):
    path = embeddings_path(models_dir)
    if not os.path.isfile(path):
        raise UserError(f"{path}: missing; run evaluate_embeddings.py --data ... --models {models_dir} first")
    safety.check_embeddings(path, codes)  # strict JSON, finite means of the models' code count
    try:
        with open(path) as f:
            sources = json.load(f)["sources"]
    except (ValueError, KeyError) as e:
        raise UserError(f"{path}: not a valid embeddings file ({e})")
    for name, entry in sources.items():
        if len(entry["mean"]) != codes:
            raise UserError(f"{path}: source {name!r} has {len(entry['mean'])} codes but the models use {codes}; "
                            "run evaluate_embeddings.py again after exporting")
    return sources


def pick_style(sources, name=None):
    """The named source, or by default the image source with the most tiles."""
    if name is None:
        candidates = [n for n, e in sources.items() if e["kind"] == "images"]
        if not candidates:
            raise UserError(f"no image source to take a style from; give --style (known: {', '.join(sorted(sources))})")
        return max(candidates, key=lambda n: sources[n]["count"])
    if name not in sources:
        raise UserError(f"unknown --style {name!r}; known sources: {', '.join(sorted(sources))}")
    return name
