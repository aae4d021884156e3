"""The one place that knows the tile record schema, and how records are written and read.

A record file is a gzip TFRecord of tf.train.Example, one per tile:
raw (uint8 RGB bytes, row-major), height, width, source, kind ('video' or 'images'), index.
The manifest beside each file (FILE.json) is vae/manifest.py's.

Writing needs no TensorFlow: the Example's protocol-buffer bytes and the TFRecord framing are
simple enough to write directly, which keeps extraction free of TensorFlow's start-up time.
Reading goes through tf.data.
"""
import collections
import glob
import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import google_crc32c
import numpy as np

from vae.cli import UserError

SCHEMA = {"raw": "bytes", "height": "int64", "width": "int64", "source": "bytes", "kind": "bytes",
          "index": "int64"}
COMPRESSION = "GZIP"


def features():
    """The schema as tf.io parsing features."""
    import tensorflow as tf
    dtypes = {"bytes": tf.string, "int64": tf.int64}
    return {name: tf.io.FixedLenFeature([], dtypes[kind]) for name, kind in SCHEMA.items()}


def _varint(n):
    n &= 0xFFFFFFFFFFFFFFFF  # negative int64s take ten bytes, as protobuf does
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number, payload):
    """A length-delimited protocol-buffer field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature(kind, value):
    if kind == "bytes":
        return _field(1, _field(1, value))  # Feature.bytes_list { value }
    return _field(3, _field(1, _varint(value)))  # Feature.int64_list { packed value }


def encode_tile(tile, source, kind, index):
    """A tile (uint8 HxWx3) and its labels as a serialized tf.train.Example."""
    height, width = tile.shape[:2]
    values = {"raw": np.ascontiguousarray(tile, np.uint8).tobytes(), "height": height, "width": width,
              "source": source.encode(), "kind": kind.encode(), "index": int(index)}
    # Example.features (1) -> Features.feature (1): map entries of key (1) and Feature (2).
    entries = b"".join(_field(1, _field(1, name.encode()) + _field(2, _feature(SCHEMA[name], values[name])))
                       for name in SCHEMA)
    return _field(1, entries)


def decode_tile(serialized):
    """A serialized Example back as a dict of NumPy values (for scripts and tests)."""
    import tensorflow as tf
    example = tf.io.parse_single_example(serialized, features())
    h, w = int(example["height"]), int(example["width"])
    return {"tile": np.frombuffer(example["raw"].numpy(), np.uint8).reshape(h, w, 3),
            "source": example["source"].numpy().decode(), "kind": example["kind"].numpy().decode(),
            "index": int(example["index"])}


def _masked_crc(data):
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _deflate(chunk, last):
    """Raw deflate of one chunk; all but the last end on a byte boundary with a sync flush, so
    that chunks compressed apart concatenate into one valid stream (as pigz does)."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
    return compressor.compress(chunk) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class RecordWriter:
    """A gzip TFRecord file: per record its length, the length's masked CRC-32C, the data and
    the data's masked CRC-32C.

    The gzip stream is compressed in chunks on every core (zlib works outside the GIL) and
    written in order as one ordinary gzip member. Level 1: raw pixels barely compress further
    at higher levels, which cost far more time.
    """
    CHUNK = 4 << 20

    def __init__(self, path):
        self.file = open(path, "wb")
        self.file.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")  # gzip header: deflate, no name
        self.workers = os.cpu_count() or 2
        self.pool = ThreadPoolExecutor(self.workers)
        self.pending, self.buffer, self.buffered = collections.deque(), [], 0
        self.crc, self.size = 0, 0

    def write(self, data):
        length = struct.pack("<Q", len(data))
        self.buffer += [length, struct.pack("<I", _masked_crc(length)), data, struct.pack("<I", _masked_crc(data))]
        self.buffered += len(data) + 16
        if self.buffered >= self.CHUNK:
            self._submit(last=False)

    def _submit(self, last):
        chunk = b"".join(self.buffer)
        self.buffer, self.buffered = [], 0
        self.crc, self.size = zlib.crc32(chunk, self.crc), self.size + len(chunk)
        self.pending.append(self.pool.submit(_deflate, chunk, last))
        while self.pending and (len(self.pending) > 2 * self.workers or self.pending[0].done()):
            self.file.write(self.pending.popleft().result())

    def close(self):
        try:
            self._submit(last=True)
            while self.pending:
                self.file.write(self.pending.popleft().result())
            self.file.write(struct.pack("<II", self.crc, self.size & 0xFFFFFFFF))
        finally:
            self.pool.shutdown()
            self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


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
    import tensorflow as tf
    try:
        for serialized in tf.data.TFRecordDataset(path, compression_type=COMPRESSION).take(1):
            return tf.io.parse_single_example(serialized, features())
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
    import tensorflow as tf
    width, height = size
    parsed = tf.io.parse_example(serialized, features())
    raw = tf.io.decode_raw(parsed["raw"], tf.uint8)
    tiles = tf.reshape(raw, [-1, height, width, 3])
    return {"image": tf.cast(tiles, tf.float32) / 255.0, "source": parsed["source"],
            "kind": parsed["kind"], "index": parsed["index"]}


def readable_counts(files):
    """Records readable in each file. A damaged tail costs a warning and keeps what precedes it;
    a file with nothing readable is an error naming it."""
    import tensorflow as tf
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
    import tensorflow as tf
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
    import tensorflow as tf
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
