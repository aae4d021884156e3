"""Cutting tiles out of videos and image folders and writing them, shuffled, as records."""
import contextlib
import os
import random
import shutil
import struct
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from vae import decode, images, manifest, probe, records
from vae.cli import UserError, atomic_path, info, progress, warn

SHUFFLE_BUCKETS = 16
MEMORY_BUDGET = 1 << 30  # bytes of serialized tiles held before spilling to buckets


class ShuffledWriter:
    """Writes examples in a uniformly random order with bounded memory.

    Examples are held in memory and shuffled at the end. Past MEMORY_BUDGET they spill, each to
    one of several temporary bucket files at random; at the end each bucket is read alone,
    shuffled and appended to the output, so memory holds one bucket. Given several output
    paths (shards), the shuffled examples are dealt to them in turn.
    """

    def __init__(self, out_paths, seed):
        self.out_paths = [out_paths] if isinstance(out_paths, str) else list(out_paths)
        self.out_path = self.out_paths[0]
        self.rng = random.Random(seed)
        self.held, self.held_bytes, self.folder, self.buckets = [], 0, None, []
        self.count = 0
        self.shard_counts = [0] * len(self.out_paths)

    def __call__(self, tile, source, kind, index):
        serialized = records.encode_tile(tile, source, kind, index)
        self.held.append(serialized)
        self.held_bytes += len(serialized)
        self.count += 1
        if self.held_bytes > MEMORY_BUDGET:
            self._spill()

    def _spill(self):
        if self.folder is None:
            self.folder = tempfile.mkdtemp(prefix=".buckets.", dir=os.path.dirname(self.out_path))
            self.buckets = [open(os.path.join(self.folder, str(i)), "w+b") for i in range(SHUFFLE_BUCKETS)]
        for example in self.held:
            self.rng.choice(self.buckets).write(struct.pack("<Q", len(example)) + example)
        self.held, self.held_bytes = [], 0

    @staticmethod
    def _read_bucket(bucket):
        bucket.seek(0)
        data, examples, at = bucket.read(), [], 0
        while at < len(data):
            (length,) = struct.unpack_from("<Q", data, at)
            examples.append(data[at + 8:at + 8 + length])
            at += 8 + length
        return examples

    def finish(self):
        if self.folder is not None:
            self._spill()
        groups = [self.held] if self.folder is None else (self._read_bucket(b) for b in self.buckets)
        with contextlib.ExitStack() as stack:
            outs = [stack.enter_context(records.RecordWriter(path)) for path in self.out_paths]
            dealt = 0
            for examples in groups:
                self.rng.shuffle(examples)
                for example in examples:
                    outs[dealt % len(outs)].write(example)
                    self.shard_counts[dealt % len(outs)] += 1
                    dealt += 1

    def cleanup(self):
        for bucket in self.buckets:
            bucket.close()
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)


def check_sources(videos, image_dirs):
    """Fail before any work when a source is missing or two share a name."""
    names = {}
    for path in videos:
        if not os.path.isfile(path):
            raise UserError(f"{path}: no such video file")
    for path in image_dirs:
        if not os.path.isdir(path):
            raise UserError(f"{path}: no such folder")
    for path, kind in [(v, "video") for v in videos] + [(d, "images") for d in image_dirs]:
        name = source_name(path, kind)
        if name in names:
            raise UserError(f"{path} and {names[name]} would both be the source {name!r}; rename one")
        names[name] = path


def source_name(path, kind):
    if kind == "video":
        return os.path.splitext(os.path.basename(path))[0]
    return os.path.basename(os.path.normpath(os.path.abspath(path)))


def scaled_size(size, scale):
    """(width, height) times `scale`, rounded, at least one pixel each way."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def video_tiles(path, size, frame_step, crop, sink, scale=manifest.FIT, crops_per_frame=1, rng=None):
    """Decode a video once, keeping every frame_step-th decoded frame of the picture as a player
    shows it (upright, square pixels, borders cut), and send its tiles to sink: with `scale` fit
    the whole frame shrunk to the tile, with a number S `crops_per_frame` tile-size crops at random
    places (from `rng`) of the frame shown at S times its size (ffmpeg scales, NumPy cuts)."""
    meta = probe.probe(path)
    with ThreadPoolExecutor(1) as pool:  # the exact count (for progress) while borders are found
        counting = pool.submit(probe.count_frames, meta)
        crop = probe.resolve_crop(meta, crop)
        meta.frames = counting.result()
    name = source_name(path, "video")
    if crop != probe.Crop():
        info(f"{name}: cropping borders {crop} (top,left,bottom,right) of {meta.width}x{meta.height}")
    if scale == manifest.FIT:
        frames = decode.read_frames(meta, size, crop, frame_step, keep_aspect=True)
    else:
        shown = crop.size_of(meta.width, meta.height)
        scaled = scaled_size(shown, scale)
        if scaled[0] < size[0] or scaled[1] < size[1]:
            raise UserError(f"{path}: --video-scale {scale} makes its {shown[0]}x{shown[1]} picture "
                            f"{scaled[0]}x{scaled[1]}, smaller than the {size[0]}x{size[1]} tile; "
                            "give a larger scale or a smaller --size")
        info(f"{name}: {crops_per_frame} crops of {size[0]}x{size[1]} a frame, from the picture at "
             f"{scaled[0]}x{scaled[1]} (--video-scale {scale})")
        frames = decode.read_frames(meta, scaled, crop, frame_step)
    count = kept = 0
    about = "" if meta.frames else ", about"
    total = (meta.frames_estimate - 1) // frame_step + 1
    with progress(total=total, desc=f"{name} frames{about}", unit="frame") as bar:
        for frame in frames:
            tiles = [frame.image] if scale == manifest.FIT else \
                images.crops_at_scale(frame.image, size, crops_per_frame, rng)
            for tile in tiles:
                sink(tile, name, "video", frame.index)
                count += 1
            kept += 1
            bar.update(1)
    if count == 0:
        raise UserError(f"{path}: no frames could be decoded")
    info(f"{name}: {count} tiles from {kept} of {'' if meta.frames else 'about '}{meta.frames_estimate} frames")
    entry = {"name": name, "kind": "video", "path": os.path.abspath(path), "count": count, "crop": str(crop),
             "scale": scale}
    return entry if scale == manifest.FIT else {**entry, "crops_per_frame": crops_per_frame}


def image_tiles(folder, size, crops_per_image, seed, sink, side=manifest.FIT):
    """Tiles from every readable image under folder; unreadable files are skipped, named. With
    `side` fit each image is centre-cut to the tile's aspect and shrunk to it (random crops of
    40-100% of that after the first); with a number N it is resized so that its shorter side is N
    pixels, and tile-size crops are cut from it as it is (the centre, then random places), so the
    strokes keep one size on every tile."""
    name = source_name(folder, "images")
    paths = images.find_images(folder)
    if not paths:
        raise UserError(f"{folder}: no images (jpg, jpeg, png, bmp, webp) in this folder")
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**31, len(paths))

    def load(ordinal):
        image = images.load_rgb(paths[ordinal])
        if image is None:
            return ordinal, None, None
        crop_rng = np.random.default_rng(seeds[ordinal])
        if side == manifest.FIT:
            return ordinal, images.cut_tiles(image, size, crops_per_image, crop_rng), None
        shorter = min(image.shape[:2])
        return ordinal, images.crops_at_scale(images.at_side(image, side), size, crops_per_image, crop_rng,
                                              centred=True), shorter if shorter < side else None

    count = 0
    # OpenCV decodes outside the GIL, so a few threads keep both cores busy.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool, \
            progress(total=len(paths), desc=f"{name} images", unit="image") as bar:
        for ordinal, tiles, upscaled in pool.map(load, range(len(paths))):
            bar.update(1)
            if tiles is None:
                warn(f"{paths[ordinal]}: not a readable image, skipped")
                continue
            if upscaled:
                warn(f"{paths[ordinal]}: its shorter side is {upscaled} pixels, below --image-side {side}: "
                     "upscaled, so its strokes are as broad as the others' but blurred")
            for tile in tiles:
                sink(tile, name, "images", ordinal)
                count += 1
    if count == 0:
        raise UserError(f"{folder}: none of its {len(paths)} image files could be read")
    info(f"{name}: {count} tiles from {len(paths)} images" + ("" if side == manifest.FIT else
                                                               f", each with its shorter side at {side} pixels"))
    return {"name": name, "kind": "images", "path": os.path.abspath(folder), "count": count, "side": side}


def shard_paths(out_path, shards):
    """FILE.tfrecord.gz itself for one shard, else FILE-00000-of-0000N.tfrecord.gz and so on."""
    if shards == 1:
        return [out_path]
    base = out_path[:-len(".tfrecord.gz")]
    return [f"{base}-{i:05d}-of-{shards:05d}.tfrecord.gz" for i in range(shards)]


def extract(out_path, videos, image_dirs, size, frame_step=10, crop="auto", crops_per_image=1,
            seed=0, shards=1, video_scale=manifest.FIT, crops_per_frame=4, image_side=manifest.FIT):
    """Write all tiles of all sources, shuffled, to out_path (or `shards` files named after it),
    and the one manifest beside it. `video_scale` and `image_side`: see video_tiles and image_tiles."""
    check_sources(videos, image_dirs)
    width, height = size
    paths = shard_paths(out_path, shards)
    with contextlib.ExitStack() as outputs:
        # Entered manifest first so it is renamed last: a manifest means complete records.
        tmp_manifest = outputs.enter_context(atomic_path(manifest.manifest_path(out_path)))
        tmp_records = [outputs.enter_context(atomic_path(path)) for path in paths]
        shuffler = ShuffledWriter(tmp_records, seed)
        try:
            sources = [video_tiles(p, size, frame_step, crop, shuffler, video_scale, crops_per_frame,
                                   np.random.default_rng([seed, i])) for i, p in enumerate(videos)]
            sources += [image_tiles(d, size, crops_per_image, seed + i, shuffler, image_side)
                        for i, d in enumerate(image_dirs)]
            info(f"shuffling {shuffler.count} tiles into {out_path}")
            shuffler.finish()
        finally:
            shuffler.cleanup()
        listed = None if shards == 1 else [{"path": os.path.basename(p), "count": n}
                                           for p, n in zip(paths, shuffler.shard_counts)]
        manifest.write_manifest(tmp_manifest, width, height, sources, shards=listed)
    return sources
