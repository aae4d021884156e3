"""Latent codes per source and the style shift: z - alpha * mean(source) + beta * mean(style)."""
import json
import os

import cv2
import numpy as np

from vae import images, records, safety
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


def encode_sources(models, files, size, keep_codes=False, keep_tiles=2000, samples_per_source=16,
                   spread_per_source=64, seed=0):
    """Per source: count, mean code, mean Lab colour. With keep_codes, in the same pass: every
    code (for projections), the first `keep_tiles` tiles (for the projector's sprite), the
    first `samples_per_source` tiles of each source (for the report's pictures) and
    `spread_per_source` uint8 tiles of each drawn evenly at random from all of its tiles
    ("spread", for the texture measure: tiles.npz).

    A spatial model's code of a tile is its map's mean over positions, one number per channel:
    the source means (over tiles and positions) and the projections are of those."""
    sums, counts, labs, kinds = {}, {}, {}, {}
    kept = {"codes": [], "sources": [], "tiles": [], "samples": {}, "spread": {}}
    rng = np.random.default_rng(seed)
    with progress(desc="encoding tiles", unit="tile") as bar:
        for batch in records.iterate(files, size):
            mean, _ = models.encode(batch["image"])
            mean = mean.numpy()
            if mean.ndim == 4:  # [N,h,w,channels]: every position weighs the same
                mean = mean.mean((1, 2), dtype=np.float64).astype(np.float32)
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
                    _reservoir(kept["spread"].setdefault(name, []), batch["image"][mask],
                               counts[name] - int(mask.sum()), spread_per_source, rng)
            if keep_codes:
                kept["codes"].append(mean)
                kept["sources"] += [s.decode() for s in batch["source"]]
                room = keep_tiles - sum(len(t) for t in kept["tiles"])
                if room > 0:
                    kept["tiles"].append(images.to_uint8(batch["image"][:room]))
            bar.update(len(mean))
    sources = {name: {"kind": kinds[name], "count": counts[name],
                      "mean": (sums[name] / counts[name]).astype(np.float32).tolist(),
                      "lab_mean": (labs[name] / counts[name]).tolist()} for name in sorted(counts)}
    if keep_codes:
        kept["codes"] = np.concatenate(kept["codes"])
        kept["tiles"] = np.concatenate(kept["tiles"])
        kept["samples"] = {name: np.stack(tiles) for name, tiles in kept["samples"].items()}
        kept["spread"] = {name: images.to_uint8(np.stack(tiles)) for name, tiles in kept["spread"].items()}
        return sources, kept
    return sources


def _reservoir(bucket, new, seen, size, rng):
    """Keep in `bucket` a uniform random sample of `size` of all tiles seen so far (`seen`
    before `new`): each new tile replaces a kept one with probability size / its number."""
    for tile in new:
        seen += 1
        if len(bucket) < size:
            bucket.append(tile)
        else:
            slot = rng.integers(seen)
            if slot < size:
                bucket[slot] = tile


def save_tiles(path, tiles):
    """{source: uint8 [N,h,w,3]} into an .npz, atomically (nothing pickled: safety.check_tiles)."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **tiles)


def embeddings_path(models_dir):
    return os.path.join(models_dir, "embeddings.json")


def save_embeddings(models_dir, sources):
    with atomic_path(embeddings_path(models_dir)) as tmp, open(tmp, "w") as f:
        json.dump({"sources": sources}, f)


def load_embeddings(models_dir, codes):
    path = embeddings_path(models_dir)
    if not os.path.isfile(path):
        raise UserError(f"{path}: missing; run evaluate_embeddings.py --data ... --models {models_dir} first")
    return safety.check_embeddings(path, codes)  # strict JSON, finite means of the models' code count


def _known(sources):
    return ", ".join(sorted(sources))


def parse_style(text, sources):
    """`NAME` or `NAME:WEIGHT` -> (name, weight). A name that itself holds a colon still works:
    the whole text is tried as a name first."""
    if text in sources:
        return text, 1.0
    name, colon, weight = text.rpartition(":")
    if colon and name in sources:
        try:
            value = float(weight)
        except ValueError:
            value = None
        if value is None or not np.isfinite(value) or value < 0:
            raise UserError(f"--style {text!r}: the weight must be a number of at least 0")
        return name, value
    raise UserError(f"unknown --style {text!r}; known sources: {_known(sources)}")


def style_weights(sources, styles=None):
    """{source name: weight}, weights normalised to sum 1, of --style texts; by default the
    image source with the most tiles."""
    if not styles:
        candidates = [n for n, e in sources.items() if e["kind"] == "images"]
        if not candidates:
            raise UserError(f"no image source to take a style from; give --style (known: {_known(sources)})")
        styles = [max(candidates, key=lambda n: sources[n]["count"])]
    weights = {}
    for text in styles:
        name, weight = parse_style(text, sources)
        weights[name] = weights.get(name, 0.0) + weight
    total = sum(weights.values())
    if total <= 0:
        raise UserError(f"--style weights are all zero; known sources: {_known(sources)}")
    return {n: w / total for n, w in weights.items()}


def style_label(weights):
    return " + ".join(n if len(weights) == 1 else f"{n}:{w:.2f}" for n, w in weights.items())


def mix_styles(sources, styles=None):
    """The style as (label, mean code, mean Lab colour or None): the weighted average of the
    named sources (weights normalised to sum 1), or by default the image source with the most
    tiles."""
    weights = style_weights(sources, styles)
    mean = sum(w * np.asarray(sources[n]["mean"], np.float64) for n, w in weights.items())
    labs = [sources[n].get("lab_mean") for n in weights]
    lab = None if None in labs else sum(w * np.asarray(sources[n]["lab_mean"], np.float64)
                                        for n, w in weights.items())
    return style_label(weights), mean.astype(np.float32), lab


def refiner_style_note(meta, sources, styles):
    """For a refiner trained toward a style (model.json's refiner_style): (a line saying so, a
    warning when --style asks for another style, or None); (None, None) for any other refiner."""
    trained = meta.get("refiner_style")
    if not trained:
        return None, None
    try:
        trained_weights = style_weights(sources, trained)
    except UserError:
        label = " + ".join(trained)
        return (f"the refiner was trained toward {label!r}",
                f"the refiner was trained toward {label!r}, which embeddings.json does not list")
    asked = style_weights(sources, styles)
    note = f"the refiner was trained toward {style_label(trained_weights)!r}: it paints that style's texture"
    same = set(asked) == set(trained_weights) and all(abs(asked[n] - trained_weights[n]) < 1e-3 for n in asked)
    warning = None if same else (f"--style asks for {style_label(asked)!r} but the refiner was trained toward "
                                 f"{style_label(trained_weights)!r}: colours move toward the one, texture "
                                 "toward the other")
    return note, warning


class Strength:
    """--alpha or --beta: a number, or keyframes `SECONDS=VALUE,...` in increasing time, linear in
    between and held beyond the ends."""

    def __init__(self, text, name="--beta"):
        self.text = str(text)
        times, values = [], []
        try:
            if "=" not in self.text:
                times, values = [0.0], [float(self.text)]
            else:
                for pair in self.text.split(","):
                    time, value = pair.split("=")
                    times.append(float(time))
                    values.append(float(value))
        except ValueError:
            raise UserError(f"{name} {self.text!r}: give a number or keyframes SECONDS=VALUE,... "
                            "(for example 0=0,4=1.2,10=0.5)") from None
        if not all(np.isfinite(times + values)):
            raise UserError(f"{name} {self.text!r}: times and values must be finite numbers")
        if any(b <= a for a, b in zip(times, times[1:])):
            raise UserError(f"{name} {self.text!r}: keyframe times must increase, each time once")
        self.times, self.values = np.array(times, np.float64), np.array(values, np.float64)

    def at(self, seconds):
        """The value at each of `seconds` (from the input's start), as float32."""
        return np.interp(np.asarray(seconds, np.float64), self.times, self.values).astype(np.float32)

    @property
    def constant(self):
        return len(self.values) == 1

    def __str__(self):
        return self.text
