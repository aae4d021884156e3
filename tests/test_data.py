"""The data stage: record schema, border detection, image conversion, both scripts end to end."""
import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import TILE, assert_one_line_error, run_script
from vae import images, manifest, probe, records, synthetic
from vae.decode import read_frames


def read_all(path):
    files = records.find_files([str(path)])
    size = records.tile_size(files)
    out = []
    for batch in records.iterate(files, size, batch_size=16):
        for i in range(len(batch["image"])):
            out.append({"tile": np.round(batch["image"][i] * 255).astype(np.uint8),
                        "source": batch["source"][i].decode(), "kind": batch["kind"][i].decode(),
                        "index": int(batch["index"][i])})
    return size, out


def test_schema_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 256, (36, 64, 3), dtype=np.uint8) for _ in range(5)]
    path = tmp_path / "t.tfrecord.gz"
    with records.RecordWriter(str(path)) as w:
        for i, t in enumerate(tiles):
            w.write(records.encode_tile(t, f"src{i % 2}", "video" if i % 2 else "images", i * 10))
    size, back = read_all(path)
    assert size == (64, 36)
    for i, (tile, got) in enumerate(zip(tiles, back)):
        np.testing.assert_array_equal(got["tile"], tile)
        assert (got["source"], got["kind"], got["index"]) == (f"src{i % 2}", "video" if i % 2 else "images", i * 10)


def test_records_compressed_in_parallel_chunks(tmp_path, monkeypatch):
    """Chunks deflated apart on several cores still make one gzip stream that TensorFlow and gzip read."""
    import gzip
    monkeypatch.setattr(records.RecordWriter, "CHUNK", 30_000)
    rng = np.random.default_rng(1)
    examples = [records.encode_tile(rng.integers(0, 256, (36, 64, 3), dtype=np.uint8), "s", "video", i)
                for i in range(60)]
    path = tmp_path / "chunks.tfrecord.gz"
    with records.RecordWriter(str(path)) as w:
        for e in examples:
            w.write(e)
    assert len(gzip.decompress(path.read_bytes())) == sum(len(e) + 16 for e in examples)
    _, back = read_all(path)
    assert [t["index"] for t in back] == list(range(60))
    assert [records.encode_tile(t["tile"], "s", "video", t["index"]) for t in back] == examples


@pytest.mark.parametrize("kind", ["letterbox", "pillarbox", "dark", "plain"])
def test_border_detection(tmp_path, kind):
    options = {"letterbox": dict(letterbox=20), "pillarbox": dict(pillarbox=30),
               "dark": dict(dark=True), "plain": {}}[kind]
    clip = synthetic.write_video(str(tmp_path / "v.mp4"), width=320, height=180, frames=30, **options)
    crop = probe.detect_crop(probe.probe(clip))
    expected = {"letterbox": probe.Crop(20, 0, 20, 0), "pillarbox": probe.Crop(0, 30, 0, 30)}.get(kind, probe.Crop())
    assert crop == expected


def test_image_conversion(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, :10] = (200, 30, 10)
    rgb[:, 10:20] = (10, 200, 30)
    rgb[:, 20:] = (10, 30, 200)
    # grayscale
    cv2.imwrite(str(tmp_path / "gray.png"), np.full((20, 30), 77, np.uint8))
    got = images.load_rgb(str(tmp_path / "gray.png"))
    assert got.shape == (20, 30, 3) and got.dtype == np.uint8 and (got == 77).all()
    # 16-bit colour
    cv2.imwrite(str(tmp_path / "deep.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    got = images.load_rgb(str(tmp_path / "deep.png"))
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, rgb)
    # RGBA: opaque pixels keep their colour, transparent ones become white
    rgba = np.dstack([rgb, np.full((20, 30), 255, np.uint8)])
    rgba[:5, :, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    got = images.load_rgb(str(tmp_path / "alpha.png"))
    np.testing.assert_array_equal(got[5:], rgb[5:])
    assert (got[:5] == 255).all()
    # palette
    Image.fromarray(rgb).quantize(colors=4).save(tmp_path / "palette.png")
    assert Image.open(tmp_path / "palette.png").mode == "P"
    np.testing.assert_array_equal(images.load_rgb(str(tmp_path / "palette.png")), rgb)
    # BMP and WebP (lossless) decode as RGB too, in the right channel order
    for name in ("x.bmp", "x.webp"):
        Image.fromarray(rgb).save(tmp_path / name, **({"lossless": True} if name.endswith("webp") else {}))
        np.testing.assert_array_equal(images.load_rgb(str(tmp_path / name)), rgb)
    # not an image
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all")
    assert images.load_rgb(str(tmp_path / "broken.jpg")) is None


def test_extract_and_read_back(tmp_path, media):
    paintings = tmp_path / "art"
    (paintings / "nested").mkdir(parents=True)
    rng = np.random.default_rng(5)
    pictures = {"a.png": synthetic.painting(rng, 200, 100), "nested/b.jpg": synthetic.painting(rng, 90, 120)}
    for name, picture in pictures.items():
        cv2.imwrite(str(paintings / name), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
    (paintings / "nested" / "c_broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "out" / "tiles.tfrecord.gz"
    result = run_script("extract_tiles.py", "--out", out, "--video", media["clip"], "--images", paintings,
                        "--size", "64x36", "--frame-step", 4, "--crops-per-image", 3)
    assert "c_broken.jpg" in result.stderr and "warning:" in result.stderr
    manifest = json.loads((tmp_path / "out" / "tiles.json").read_text())
    assert (manifest["width"], manifest["height"]) == (64, 36)
    counts = {s["name"]: s["count"] for s in manifest["sources"]}
    assert counts == {"clip": 10, "art": 6}
    size, back = read_all(out)
    assert size == (64, 36) and len(back) == 16
    # shuffled across sources: not all video tiles first
    order = [t["source"] for t in back]
    assert order != sorted(order, key=lambda s: s != "clip")

    # Video tiles: the generated frame with its 10-pixel bars cut, scaled, at the right index.
    frames = list(synthetic.scene_frames(np.random.default_rng(1), 160, 90, 40, letterbox=10))
    video_tiles = sorted((t for t in back if t["source"] == "clip"), key=lambda t: t["index"])
    assert [t["index"] for t in video_tiles] == list(range(0, 40, 4))
    for t in video_tiles:
        inner = frames[t["index"]][10:80]
        w, h = images.aspect_crop_box(160, 70, *TILE)
        x = (160 - w) // 2
        expected = cv2.resize(inner[:, x:x + w], TILE, interpolation=cv2.INTER_AREA)
        assert np.abs(t["tile"].astype(int) - expected).mean() < 8, t["index"]
        assert t["kind"] == "video"
    # Image tiles: the first tile of each file is the centred crop; indexes are file ordinals.
    art = [t for t in back if t["source"] == "art"]
    assert sorted(t["index"] for t in art) == [0, 0, 0, 1, 1, 1]
    for ordinal, name in enumerate(sorted(pictures)):
        picture = pictures[name]
        h0, w0 = picture.shape[:2]
        w, h = images.aspect_crop_box(w0, h0, *TILE)
        x, y = (w0 - w) // 2, (h0 - h) // 2
        centred = cv2.resize(picture[y:y + h, x:x + w], TILE, interpolation=cv2.INTER_AREA)
        diffs = [np.abs(t["tile"].astype(int) - centred).mean() for t in art if t["index"] == ordinal]
        assert min(diffs) < 6, (name, diffs)


def test_manual_crop_and_no_crop(tmp_path, media):
    for crop, expected_rows in (("none", (0, 90)), ("10,0,10,0", (10, 80))):
        out = tmp_path / f"{crop.replace(',', '_')}.tfrecord.gz"
        run_script("extract_tiles.py", "--out", out, "--video", media["clip"], "--size", "160x70",
                   "--frame-step", 20, "--crop", crop)
        _, back = read_all(out)
        frames = list(synthetic.scene_frames(np.random.default_rng(1), 160, 90, 40, letterbox=10))
        top, bottom = expected_rows
        region = frames[0][top:bottom]
        w, h = images.aspect_crop_box(160, bottom - top, 160, 70)
        y = (bottom - top - h) // 2
        expected = cv2.resize(region[y:y + h], (160, 70), interpolation=cv2.INTER_AREA)
        first = next(t for t in back if t["index"] == 0)
        assert np.abs(first["tile"].astype(int) - expected).mean() < 8, crop


def test_extract_errors(tmp_path, media):
    out = tmp_path / "x.tfrecord.gz"
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    sound = tmp_path / "sound.wav"
    synthetic.write_tone(str(sound), 1.0)
    no_images = tmp_path / "no_images"
    no_images.mkdir()
    (no_images / "readme.txt").write_text("nothing here")
    broken_images = tmp_path / "broken_images"
    broken_images.mkdir()
    (broken_images / "a.jpg").write_bytes(b"garbage")
    cases = [
        (["--video", tmp_path / "missing.mp4"], "missing.mp4"),
        (["--video", empty], "empty.mp4"),
        (["--video", text], "notes.mp4"),
        (["--video", sound], "sound.wav"),
        (["--images", no_images], "no_images"),
        (["--images", broken_images], "broken_images"),
        (["--images", tmp_path / "nowhere"], "nowhere"),
        (["--video", media["clip"], "--crop", "1,2,3"], "--crop"),
        (["--video", media["clip"], "--size", "big"], "--size"),
    ]
    for args, named in cases:
        result = run_script("extract_tiles.py", "--out", out, *args, check=False)
        assert_one_line_error(result, named)
        assert not os.path.exists(out) and not os.path.exists(tmp_path / "x.json")
        assert not [p for p in os.listdir(tmp_path) if p.startswith(".")], os.listdir(tmp_path)


def test_preview_contact_sheet(tmp_path, tiles):
    out = tmp_path / "sheet.png"
    result = run_script("preview_tiles.py", "--data", str(tiles.parent / "*.tfrecord.gz"), "--out", out,
                        "--per-row", 4)
    listing = json.loads(open(manifest.manifest_path(str(tiles))).read())
    for source in listing["sources"]:
        assert f"{source['name']}: {source['count']}" in result.stdout
    assert "64x36" in result.stdout
    sheet = cv2.imread(str(out))
    # two sources, each a label strip and a row of 4 tiles drawn at 2x (64 px tiles are small)
    assert sheet.shape[1] == 4 * 128 + 3 * 2
    assert sheet.shape[0] == 2 * (22 + 72 + 6)
    # the painting row is warm (red above blue), the video row cool
    rows = {}
    y = 0
    for source in sorted(s["name"] for s in listing["sources"]):
        rows[source] = cv2.cvtColor(sheet[y + 22:y + 22 + 72], cv2.COLOR_BGR2RGB).reshape(-1, 3).mean(0)
        y += 100
    assert rows["paintings"][0] > rows["paintings"][2]
    assert rows["clip"][2] > rows["clip"][0]


def test_preview_truncated_records(tmp_path, tiles):
    data = tiles.read_bytes()
    bad = tmp_path / "cut.tfrecord.gz"
    bad.write_bytes(data[: len(data) // 2])
    result = run_script("preview_tiles.py", "--data", bad, "--out", tmp_path / "s.png", check=False)
    assert_one_line_error(result, "cut.tfrecord.gz")
    assert not (tmp_path / "s.png").exists()
    result = run_script("preview_tiles.py", "--data", tmp_path / "none*.tfrecord.gz", "--out", tmp_path / "s.png",
                        check=False)
    assert_one_line_error(result, "none*")


SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data")


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="../shared/data is not here (outside the workplace)")
def test_real_footage_and_paintings(tmp_path):
    clip = os.path.join(SHARED, "videos", "bigbuckbunny.mp4")
    paintings = os.path.join(SHARED, "paintings")
    out = tmp_path / "real.tfrecord.gz"
    run_script("extract_tiles.py", "--out", out, "--video", clip, "--images", paintings, "--size", "96x54",
               "--frame-step", 10, "--crops-per-image", 2)
    manifest = json.loads((tmp_path / "real.json").read_text())
    counts = {s["name"]: s["count"] for s in manifest["sources"]}
    meta = probe.probe(clip)
    assert (meta.width, meta.height, meta.has_audio) == (1280, 720, True)
    assert counts["bigbuckbunny"] == len(range(0, 132, 10))  # 132 frames, every 10th
    assert counts["paintings"] == 2 * len(images.find_images(paintings))
    assert manifest["sources"][0]["crop"] == "0,0,0,0"  # full-frame footage: nothing cut
    size, back = read_all(out)
    assert size == (96, 54) and len(back) == sum(counts.values())
    # The first frame's tile against an independent decode of that frame.
    first = next(t for t in back if t["source"] == "bigbuckbunny" and t["index"] == 0)
    frame = next(read_frames(meta, (1280, 720))).image
    expected = cv2.resize(frame, (96, 54), interpolation=cv2.INTER_AREA)
    assert np.abs(first["tile"].astype(int) - expected).mean() < 6


def test_shuffle_spills_to_buckets_past_the_memory_budget(tmp_path, monkeypatch):
    from vae import extract
    monkeypatch.setattr(extract, "MEMORY_BUDGET", 20_000)  # a few tiles, then spill
    out = tmp_path / "t.tfrecord.gz"
    writer = extract.ShuffledWriter(str(out), seed=3)
    tiles = [np.full((36, 64, 3), i, np.uint8) for i in range(40)]
    try:
        for i, tile in enumerate(tiles):
            writer(tile, "s", "images", i)
        assert writer.folder is not None and os.listdir(writer.folder)
        writer.finish()
    finally:
        writer.cleanup()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]
    _, back = read_all(out)
    order = [t["index"] for t in back]
    assert sorted(order) == list(range(40)) and order != list(range(40))
    for t in back:
        assert (t["tile"] == t["index"]).all()


def tile_keys(path_or_tiles):
    return sorted((t["source"], t["index"], t["tile"].tobytes()) for t in path_or_tiles)


def test_shards_round_trip(tmp_path, media):
    """--shards 3: three files and one manifest; every tile once across them, as in one file."""
    args = ["--video", media["clip"], "--images", media["paintings"], "--size", "64x36", "--frame-step", 2,
            "--crops-per-image", 2]
    run_script("extract_tiles.py", "--out", tmp_path / "one" / "tiles.tfrecord.gz", *args)
    result = run_script("extract_tiles.py", "--out", tmp_path / "three" / "tiles.tfrecord.gz", *args, "--shards", 3)
    names = sorted(os.listdir(tmp_path / "three"))
    assert names == ["tiles-00000-of-00003.tfrecord.gz", "tiles-00001-of-00003.tfrecord.gz",
                     "tiles-00002-of-00003.tfrecord.gz", "tiles.json"], names
    assert "tiles-00000-of-00003.tfrecord.gz" in result.stdout
    listing = json.loads((tmp_path / "three" / "tiles.json").read_text())
    total = sum(s["count"] for s in listing["sources"])
    shards = {}
    for entry in listing["shards"]:
        _, shards[entry["path"]] = read_all(tmp_path / "three" / entry["path"])
        assert len(shards[entry["path"]]) == entry["count"]
    assert sorted(e["count"] for e in listing["shards"]) in ([total // 3] * 3, sorted([total // 3 + 1] * (total % 3)
                                                            + [total // 3] * (3 - total % 3)))
    _, single = read_all(tmp_path / "one" / "tiles.tfrecord.gz")
    _, through_glob = read_all(tmp_path / "three" / "*.tfrecord.gz")
    assert len(single) == total
    assert tile_keys(t for tiles in shards.values() for t in tiles) == tile_keys(single) == tile_keys(through_glob)
    # Training's input: one epoch over the shards holds every tile once; counts come from the manifest.
    import tensorflow as tf
    files = records.find_files([str(tmp_path / "three" / "*.tfrecord.gz")])
    assert records.manifest_counts(files) == [e["count"] for e in listing["shards"]]
    epoch = np.concatenate([b.numpy() for b in records.training_dataset(files, TILE, 1, seed=0, cache_gb=0)
                            .take(total)])
    assert epoch.dtype == np.uint8 and epoch.shape == (total, 36, 64, 3)
    assert sorted(t.tobytes() for t in epoch) == sorted(t["tile"].tobytes() for t in single)
    assert tf.is_tensor(next(iter(records.training_dataset(files, TILE, 4, cache_gb=0))))
    # preview_tiles.py takes the shards like any files
    preview = run_script("preview_tiles.py", "--data", tmp_path / "three" / "*.tfrecord.gz", "--out",
                         tmp_path / "sheet.png")
    assert f"{total} tiles in 3 file(s)" in preview.stdout


def test_cached_and_streamed_epochs_see_the_same_tiles(tiles, monkeypatch):
    opened = []  # each time a stream reaches the end of the file
    check_end = records._check_end
    monkeypatch.setattr(records, "_check_end", lambda *args: opened.append(args[0]) or check_end(*args))
    files = [str(tiles)]
    total = records.manifest_counts(files)[0]
    epochs = {}
    for cache_gb in (1, 0):
        opened.clear()
        batches = iter(records.training_dataset(files, TILE, 1, seed=0, cache_gb=cache_gb))
        epochs[cache_gb] = [[next(batches).numpy()[0].tobytes() for _ in range(total)] for _ in range(3)]
        del batches
        reads = len(opened)
        if cache_gb:
            assert reads == 1  # later epochs come from memory
        else:
            assert reads >= 3  # streamed: the file is read again every epoch
    _, all_tiles = read_all(tiles)
    expected = sorted(t["tile"].tobytes() for t in all_tiles)
    for cache_gb, runs in epochs.items():
        for epoch in runs:
            assert sorted(epoch) == expected, cache_gb  # every tile once per epoch, cached or not
        assert runs[1] != runs[2]  # shuffled again every epoch


def test_shards_past_the_budget_stream_and_the_rest_is_cached(tmp_path, media, monkeypatch):
    """A budget for one of three shards: that one is read once, the others every epoch, and
    every tile still comes round."""
    run_script("extract_tiles.py", "--out", tmp_path / "tiles.tfrecord.gz", "--video", media["clip"], "--images",
               media["paintings"], "--size", "64x36", "--frame-step", 2, "--crops-per-image", 2, "--shards", 3)
    files = records.find_files([str(tmp_path / "*.tfrecord.gz")])
    counts = records.manifest_counts(files)
    total = sum(counts)
    opened = []  # each time a stream reaches the end of a file
    check_end = records._check_end
    monkeypatch.setattr(records, "_check_end", lambda *args: opened.append(args[0].numpy().decode())
                        or check_end(*args))
    budget_gb = 1.5 * max(counts) * 64 * 36 * 3 / (1 << 30)  # one shard fits, two do not
    batches = iter(records.training_dataset(files, TILE, 1, seed=0, cache_gb=budget_gb))
    seen = [next(batches).numpy()[0].tobytes() for _ in range(4 * total)]
    del batches
    reads = {path: opened.count(path) for path in files}
    assert sorted(reads.values())[0] == 1, reads  # the cached shard: read once
    assert sorted(reads.values())[1] >= 2, reads  # the others: again every epoch
    _, all_tiles = read_all(tmp_path / "*.tfrecord.gz")
    assert set(seen) == {t["tile"].tobytes() for t in all_tiles}
