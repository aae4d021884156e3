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

from vae import manifest
from vae.cli import UserError, warn

SCHEMA = {"raw": "bytes", "height": "int64", "width": "int64", "source": "bytes", "kind": "bytes",
          "index": "int64"}
COMPRESSION = "GZIP"


def features():
    """The schema as tf.io parsing features."""
    import tensorflow as tf  # here and below: only readers pay TensorFlow's start-up, not extraction
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
    for path in files:  # two bytes each: a wrong file fails before TensorFlow's start-up
        with open(path, "rb") as f:
            magic = f.read(2)
        if not magic:
            raise UserError(f"{path}: empty, not a tile record file")
        if magic != b"\x1f\x8b":
            raise UserError(f"{path}: not a gzip tile record file")
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


def manifest_counts(files):
    """Tiles per file from the manifests beside them (None where a file has none): start-up
    reads no records to count them."""
    counts = []
    for path in files:
        listing = manifest.read_listing(path)
        if listing is None:
            counts.append(None)
        elif manifest.shard_base(path):
            by_name = {s["path"]: s["count"] for s in listing.get("shards", [])}
            counts.append(by_name.get(os.path.basename(path)))
        else:
            counts.append(sum(s["count"] for s in listing.get("sources", [])) or None)
    return counts


def default_cache_gb():
    """Half the memory free now: the cache must leave room for the model and the rest."""
    try:
        with open("/proc/meminfo") as f:
            free_kb = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
        return free_kb / (1 << 20) / 2
    except (OSError, StopIteration, ValueError):
        return 1.0


_warned = set()


def _check_end(path, count, consumed):
    """At the end of a file's records in tf.data: a clean end has consumed as many bytes as the
    gzip trailer says the file holds; anything else means the reader stopped at damage."""
    path = path.numpy().decode()
    if consumed.numpy() % (1 << 32) != _gzip_size(path) and path not in _warned:
        _warned.add(path)
        warn(f"{path}: truncated or corrupt after {count.numpy()} records; training on those")
    return True


def _file_batches(path, batch=64):
    """One file's serialized records in batches, as tf.data reads them natively (gzip inflated
    in C++, one thread per file), stopping at damage, which _check_end reports once.

    The count of records and bytes that finds damage runs once a batch, not once a record:
    per-record bookkeeping cost a quarter of the reading rate at 320x180.
    """
    import tensorflow as tf
    batches = tf.data.TFRecordDataset(path, compression_type=COMPRESSION).ignore_errors().batch(batch)
    end = tf.data.Dataset.from_tensors((tf.zeros([0], tf.string), True))
    marked = batches.map(lambda serialized: (serialized, False)).concatenate(end)

    def count(state, item):
        serialized, last = item
        n = tf.size(serialized, tf.int64)
        state = (state[0] + n, state[1] + tf.reduce_sum(tf.cast(tf.strings.length(serialized), tf.int64)) + 16 * n)
        clean = tf.cond(last, lambda: tf.py_function(_check_end, [path, state[0], state[1]], tf.bool),
                        lambda: tf.constant(True))
        return state, (serialized, tf.logical_and(clean, tf.logical_not(last)))

    def kept(serialized, keep):
        return keep

    def serialized_only(serialized, keep):
        return serialized

    zero = tf.constant(0, tf.int64)
    return marked.scan((zero, zero), count).filter(kept).map(serialized_only)


def training_dataset(files, size, batch_size, seed=None, cache_gb=None, sources=None):
    """Endless shuffled batches of uint8 tiles [B,H,W,3] for training (with `sources`, a list
    of source names: only their tiles).

    The files (shards or not) are read in parallel, one stream per core; a damaged tail is found
    where the stream reaches it, with a warning, and the records before it are used. Decoded
    tiles are cached in memory, whole files at a time, as far as `cache_gb` goes (default: half
    the free memory; 0: stream every epoch): the first epoch streams and fills the cache, later
    ones take the cached files' tiles from memory, shuffled whole, and stream only the files
    past the budget (with --shards, data larger than memory is partly cached).
    """
    import tensorflow as tf
    width, height = size
    tile_bytes = width * height * 3
    counts = manifest_counts(files)
    # Files without a manifest: the gzip trailer holds the uncompressed size (mod 4 GiB).
    sizes = [c * tile_bytes if c is not None else _gzip_size(p) for c, p in zip(counts, files)]
    budget = (default_cache_gb() if cache_gb is None else cache_gb) * (1 << 30)
    cached, streamed, used = [], [], 0
    for path, nbytes in zip(files, sizes):
        fits = 0 < nbytes and used + nbytes <= budget
        (cached if fits else streamed).append(path)
        used += nbytes if fits else 0

    def tile_count(paths):
        return max(1, sum(c if c is not None else n // tile_bytes
                          for c, n, p in zip(counts, sizes, files) if p in paths))

    def decode(serialized):
        wanted = {"raw": tf.io.FixedLenFeature([], tf.string)}
        if sources is not None:
            wanted["source"] = tf.io.FixedLenFeature([], tf.string)
        parsed = tf.io.parse_example(serialized, wanted)
        tiles = tf.reshape(tf.io.decode_raw(parsed["raw"], tf.uint8), [-1, height, width, 3])
        if sources is None:
            return tiles
        keep = tf.reduce_any(tf.equal(parsed["source"][:, None], tf.constant(list(sources))[None, :]), axis=1)
        return tf.boolean_mask(tiles, keep)

    def tiles_of(paths):
        if len(paths) == 1:  # interleave's hand-over costs a single stream time and buys nothing
            batches = _file_batches(tf.constant(paths[0]))
        else:
            parallel = min(len(paths), os.cpu_count() or 2)
            batches = tf.data.Dataset.from_tensor_slices(paths).interleave(
                _file_batches, cycle_length=parallel, num_parallel_calls=parallel, deterministic=False)
        return batches.map(decode, num_parallel_calls=tf.data.AUTOTUNE).unbatch()

    parts, weights = [], []
    if cached:
        tiles = tiles_of(cached).cache()
        # The first epoch fills the cache through a stream-sized buffer, so training starts at
        # once; the later ones come from memory, shuffled across all the cached tiles.
        parts.append(tiles.shuffle(2048, seed=seed).concatenate(
            tiles.shuffle(max(tile_count(cached), 2048), seed=seed, reshuffle_each_iteration=True).repeat()))
        weights.append(tile_count(cached))
    if streamed:
        parts.append(tiles_of(streamed).shuffle(2048, seed=seed, reshuffle_each_iteration=True).repeat())
        weights.append(tile_count(streamed))
    # Cached and streamed tiles mixed in proportion to their numbers: one epoch's worth of draws
    # takes each part about once through.
    ds = parts[0] if len(parts) == 1 else tf.data.Dataset.sample_from_datasets(
        parts, weights=[w / sum(weights) for w in weights], seed=seed)
    ds = ds.batch(batch_size, drop_remainder=True)
    options = tf.data.Options()
    # Workers split batches, not files: one record file must still feed every worker.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _gzip_size(path):
    try:
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            return struct.unpack("<I", f.read(4))[0]
    except OSError:
        return os.path.getsize(path) * 2


def dataset(files, size, batch_size):
    """Batches of every tile of the files in file order (float images in 0..1 and labels):
    parallel read and parse, prefetched. A damaged file raises tf.errors.DataLossError."""
    import tensorflow as tf
    ds = tf.data.Dataset.from_tensor_slices(files)
    ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type=COMPRESSION),
                       cycle_length=min(4, len(files)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size).map(lambda s: parse_batch(s, size), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def iterate(files, size, batch_size=256):
    """Every tile of the files as NumPy batches, in file order; a clear error if damaged."""
    import tensorflow as tf
    ds = dataset(files, size, batch_size)
    try:
        for batch in ds:
            yield {k: v.numpy() for k, v in batch.items()}
    except tf.errors.DataLossError as e:
        raise UserError(f"the records in {' '.join(files)} are truncated or corrupt: "
                        f"{e.message.splitlines()[0]}")
    except tf.errors.InvalidArgumentError as e:
        raise UserError(f"a record in {' '.join(files)} does not match the tile schema: "
                        f"{e.message.splitlines()[0]}")
