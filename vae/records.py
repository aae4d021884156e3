"""The one place that knows the tile record schema, the manifest and how to read records.

A record file is a gzip TFRecord of tf.train.Example, one per tile:
raw (uint8 RGB bytes, row-major), height, width, source, kind ('video' or 'images'), index.
The manifest beside each file (FILE.json) is vae/manifest.py's.
"""
import glob
import os

import numpy as np
import tensorflow as tf

from vae.cli import UserError

FEATURES = {
    "raw": tf.io.FixedLenFeature([], tf.string),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
    "source": tf.io.FixedLenFeature([], tf.string),
    "kind": tf.io.FixedLenFeature([], tf.string),
    "index": tf.io.FixedLenFeature([], tf.int64),
}
COMPRESSION = "GZIP"


def encode_tile(tile, source, kind, index):
    """A tile (uint8 HxWx3) and its labels as a serialized tf.train.Example."""
    height, width = tile.shape[:2]

    def b(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def i(value):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))

    return tf.train.Example(features=tf.train.Features(feature={
        "raw": b(np.ascontiguousarray(tile, np.uint8).tobytes()),
        "height": i(height), "width": i(width),
        "source": b(source.encode()), "kind": b(kind.encode()), "index": i(index),
    })).SerializeToString()


def decode_tile(serialized):
    """A serialized Example back as a dict of NumPy values (for scripts and tests)."""
    example = tf.io.parse_single_example(serialized, FEATURES)
    h, w = int(example["height"]), int(example["width"])
    return {"tile": np.frombuffer(example["raw"].numpy(), np.uint8).reshape(h, w, 3),
            "source": example["source"].numpy().decode(), "kind": example["kind"].numpy().decode(),
            "index": int(example["index"])}


def writer(path):
    # Level 1: raw pixels barely compress further at higher levels, which cost a quarter more time.
    return tf.io.TFRecordWriter(path, options=tf.io.TFRecordOptions(compression_type=COMPRESSION,
                                                                    compression_level=1))


def find_files(patterns):
    """Record files matching the --data glob patterns, or a UserError saying none do."""
    files = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern)))
        files += [m for m in matches if os.path.isfile(m) and not m.endswith(".json")]
    if not files:
        raise UserError(f"no record files match {' '.join(patterns)}")
    return list(dict.fromkeys(files))


def _first_example(path):
    try:
        for serialized in tf.data.TFRecordDataset(path, compression_type=COMPRESSION).take(1):
            return tf.io.parse_single_example(serialized, FEATURES)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        raise UserError(f"{path}: not a readable gzip tile record file ({e.message.splitlines()[0]})")
    raise UserError(f"{path}: holds no tiles")


def tile_size(files):
    """(width, height) shared by all files; mixed sizes are refused, naming both files."""
    sizes = {}
    for path in files:
        example = _first_example(path)
        sizes[path] = (int(example["width"]), int(example["height"]))
    distinct = sorted(set(sizes.values()))
    if len(distinct) > 1:
        by_size = {size: path for path, size in sizes.items()}
        described = ", ".join(f"{w}x{h} in {by_size[(w, h)]}" for w, h in distinct)
        raise UserError(f"the records have different tile sizes ({described}); train on one size")
    return distinct[0]


def parse_batch(serialized, size):
    """Parse a batch of serialized Examples into float tiles in 0..1 plus labels."""
    width, height = size
    parsed = tf.io.parse_example(serialized, FEATURES)
    raw = tf.io.decode_raw(parsed["raw"], tf.uint8)
    tiles = tf.reshape(raw, [-1, height, width, 3])
    return {"image": tf.cast(tiles, tf.float32) / 255.0, "source": parsed["source"],
            "kind": parsed["kind"], "index": parsed["index"]}


def readable_counts(files):
    """Records readable in each file. A damaged tail costs a warning and keeps what precedes it;
    a file with nothing readable is an error naming it."""
    from vae.cli import warn
    counts = []
    for path in files:
        count = 0
        try:
            for _ in tf.data.TFRecordDataset(path, compression_type=COMPRESSION):
                count += 1
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as e:
            if count == 0:
                raise UserError(f"{path}: not a readable gzip tile record file ({e.message.splitlines()[0]})")
            warn(f"{path}: truncated or corrupt after {count} records; training on those")
        if count == 0:
            raise UserError(f"{path}: holds no tiles")
        counts.append(count)
    return counts


def dataset(files, size, batch_size, shuffle=False, repeat=False, seed=None, drop_remainder=False,
            images_only=True, counts=None):
    """A tf.data pipeline of batches of tiles: parallel read and parse, prefetched.

    With images_only it yields just the float image batch (for training). With counts, only
    that many records are read from each file (the readable part of a damaged file).
    """
    counts = counts or [-1] * len(files)
    ds = tf.data.Dataset.from_tensor_slices((files, tf.constant(counts, tf.int64)))
    ds = ds.interleave(lambda f, n: tf.data.TFRecordDataset(f, compression_type=COMPRESSION).take(n),
                       cycle_length=min(4, len(files)), num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=not shuffle)
    if repeat:
        ds = ds.repeat()
    if shuffle:
        ds = ds.shuffle(2048, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda s: parse_batch(s, size), num_parallel_calls=tf.data.AUTOTUNE)
    if images_only:
        ds = ds.map(lambda b: b["image"])
    options = tf.data.Options()
    # Workers split batches, not files: one record file must still feed every worker.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def iterate(files, size, batch_size=256):
    """Every tile of the files as NumPy batches, in file order; a clear error if damaged."""
    ds = dataset(files, size, batch_size, images_only=False)
    try:
        for batch in ds:
            yield {k: v.numpy() for k, v in batch.items()}
    except tf.errors.DataLossError as e:
        raise UserError(f"the records in {' '.join(files)} are truncated or corrupt: "
                        f"{e.message.splitlines()[0]}")
    except tf.errors.InvalidArgumentError as e:
        raise UserError(f"a record in {' '.join(files)} does not match the tile schema: "
                        f"{e.message.splitlines()[0]}")
