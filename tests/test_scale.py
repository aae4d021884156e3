"""Learning at the scale it renders: extract_tiles.py --video-scale and --image-side, the scales in
the manifest and model.json, and mogrify_video.py rendering a spatial model at its learned scale."""
import json
import os
import subprocess

import cv2
import numpy as np
import pytest

from conftest import SPATIAL_TRAINING, TILE, assert_one_line_error, run_script
from test_data import read_all
from vae import ffmpeg, manifest, probe, safety, synthetic
from vae.cli import UserError

WIDE = (256, 144)  # at --video-scale 0.5: 128x72, two tiles of 64x36 each way


@pytest.fixture(scope="module")
def wide_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wide")
    return synthetic.write_video(str(folder / "wide.mp4"), seed=2, width=WIDE[0], height=WIDE[1], frames=10)


def ffmpeg_frames(path, size):
    """Every frame of a clip scaled to `size` by ffmpeg (area), decoded here, apart from vae.video."""
    width, height = size
    raw = subprocess.run([ffmpeg.exe(), "-v", "error", "-i", path, "-vf", f"scale={width}:{height}:flags=area",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def best_offset(frame, tile):
    """(mean absolute difference, x, y) of the tile-size window of `frame` closest to `tile`."""
    h, w = tile.shape[:2]
    windows = np.lib.stride_tricks.sliding_window_view(frame.astype(np.int16), (h, w, 3))[:, :, 0]
    diffs = np.abs(windows - tile.astype(np.int16)).mean(axis=(2, 3, 4))
    y, x = np.unravel_index(np.argmin(diffs), diffs.shape)
    return diffs[y, x], int(x), int(y)


def test_video_scale_crops_are_the_frame_at_that_scale(tmp_path, wide_clip):
    out = tmp_path / "t.tfrecord.gz"
    args = ["--video", wide_clip, "--size", f"{TILE[0]}x{TILE[1]}", "--frame-step", 5, "--crop", "none",
            "--video-scale", 0.5, "--crops-per-frame", 3, "--seed", 4]
    run_script("extract_tiles.py", "--out", out, *args)
    listing = json.loads((tmp_path / "t.json").read_text())
    (entry,) = listing["sources"]
    assert (entry["name"], entry["count"], entry["scale"], entry["crops_per_frame"]) == ("wide", 6, 0.5, 3)
    _, tiles = read_all(out)
    assert sorted(t["index"] for t in tiles) == [0, 0, 0, 5, 5, 5]
    half = ffmpeg_frames(wide_clip, (WIDE[0] // 2, WIDE[1] // 2))
    offsets = set()
    for t in tiles:
        diff, x, y = best_offset(half[t["index"]], t["tile"])
        assert diff < 2, (t["index"], diff)  # the half-size frame itself, cut at (x, y)
        offsets.add((x, y))
    assert len(offsets) > 1  # random places, not one
    # Seeded: the same command gives the same tiles.
    run_script("extract_tiles.py", "--out", tmp_path / "again.tfrecord.gz", *args)
    _, again = read_all(tmp_path / "again.tfrecord.gz")
    assert sorted(t["tile"].tobytes() for t in again) == sorted(t["tile"].tobytes() for t in tiles)


def checkerboard(width, height, square):
    yy, xx = np.mgrid[:height, :width]
    board = ((xx // square + yy // square) % 2 * 255).astype(np.uint8)
    return np.dstack([board] * 3)


def period(tile):
    """The checkerboard's period in pixels along a tile's rows: the strongest frequency."""
    gray = tile.mean(2) - tile.mean()
    spectrum = np.abs(np.fft.rfft(gray, axis=1)).mean(0)
    return tile.shape[1] / (1 + np.argmax(spectrum[1:]))


@pytest.mark.parametrize("side, expected", [(300, 16), (150, 8)])
def test_image_side_sets_the_scale_of_the_marks(tmp_path, side, expected):
    """A 400x300 checkerboard of 8-pixel squares (period 16), cut with its shorter side at N: the
    tiles' period is 16 * N / 300; a 100x75 one is upscaled to the same scale, with a warning."""
    art = tmp_path / "art"
    art.mkdir()
    cv2.imwrite(str(art / "big.png"), checkerboard(400, 300, 8))
    cv2.imwrite(str(art / "small.png"), checkerboard(100, 75, 2))  # the same board at a quarter of the size
    out = tmp_path / "t.tfrecord.gz"
    result = run_script("extract_tiles.py", "--out", out, "--images", art, "--size", f"{TILE[0]}x{TILE[1]}",
                        "--image-side", side, "--crops-per-image", 3)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "small.png" in warnings[0] and "upscaled" in warnings[0], result.stderr
    (entry,) = json.loads((tmp_path / "t.json").read_text())["sources"]
    assert entry["side"] == side and entry["count"] == 6
    _, tiles = read_all(out)
    for t in tiles:
        assert period(t["tile"]) == pytest.approx(expected, rel=0.05), (t["index"], period(t["tile"]))
    # fit, today's default: the whole picture shrunk to the tile, far finer than either
    run_script("extract_tiles.py", "--out", tmp_path / "fit.tfrecord.gz", "--images", art, "--size",
               f"{TILE[0]}x{TILE[1]}")
    assert json.loads((tmp_path / "fit.json").read_text())["sources"][0]["side"] == "fit"
    _, fitted = read_all(tmp_path / "fit.tfrecord.gz")
    assert all(period(t["tile"]) < expected / 2 for t in fitted)


def test_scale_options_refused(tmp_path, wide_clip):
    out = tmp_path / "x.tfrecord.gz"
    art = tmp_path / "art"
    art.mkdir()
    cv2.imwrite(str(art / "a.png"), checkerboard(100, 80, 4))
    size = ["--size", f"{TILE[0]}x{TILE[1]}"]
    cases = [
        (["--video", wide_clip, "--video-scale", 0], "--video-scale"),
        (["--video", wide_clip, "--video-scale", 1.5], "--video-scale"),
        (["--video", wide_clip, "--video-scale", "half"], "--video-scale"),
        (["--video", wide_clip, "--video-scale", 0.2], "--video-scale 0.2"),  # 51x29: smaller than the tile
        (["--video", wide_clip, "--crops-per-frame", 2], "--crops-per-frame"),  # without --video-scale
        (["--video", wide_clip, "--video-scale", 0.5, "--crops-per-frame", 0], "--crops-per-frame"),
        (["--images", art, "--image-side", 40], "--image-side"),  # below the tile's 64
        (["--images", art, "--image-side", "big"], "--image-side"),
    ]
    for args, named in cases:
        result = run_script("extract_tiles.py", "--out", out, *size, *args, check=False)
        assert_one_line_error(result, named)
        assert not os.path.exists(out) and not os.path.exists(tmp_path / "x.json")
    assert "wide.mp4" in run_script("extract_tiles.py", "--out", out, *size, *cases[3][0], check=False).stderr


def write_listing(path, sources):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"width": 64, "height": 36, "sources": sources}))
    return str(path).replace(".json", ".tfrecord.gz")


def video_at(name, **scale):
    return {"name": name, "kind": "video", "count": 1, **scale}


def images_at(name, **side):
    return {"name": name, "kind": "images", "count": 1, **side}


def test_manifest_scales(tmp_path):
    old = write_listing(tmp_path / "old.json", [video_at("a"), images_at("art")])  # before the fields: fit
    assert manifest.scales([old]) == ({"a": {"scale": "fit"}, "art": {"side": "fit"}}, None, [])
    half = write_listing(tmp_path / "half.json", [video_at("b", scale=0.5), images_at("art", side=360)])
    shards = write_listing(tmp_path / "s.json", [video_at("c", scale=0.5)]).replace(".tfrecord.gz",
                                                                                  "-00001-of-00002.tfrecord.gz")
    assert manifest.scales([half, shards]) == ({"b": {"scale": 0.5}, "art": {"side": 360}, "c": {"scale": 0.5}},
                                               0.5, [])
    # a fit video beside them: no one scale; a source cut two ways: mixed; a file without a manifest: listed
    missing = str(tmp_path / "gone.tfrecord.gz")
    scales, render_scale, unlisted = manifest.scales([half, old, missing])
    assert (scales["art"], render_scale, unlisted) == ({"side": "mixed"}, None, [missing])


def test_model_json_scales_checked(tmp_path):
    path = tmp_path / "model.json"
    base = {"width": 64, "height": 36, "codes": 16, "latent": "spatial", "downsample": 8}
    good = {**base, "scales": {"clip": {"scale": 0.5}, "art": {"side": 360}, "old": {"scale": "fit"}},
            "render_scale": 0.5}
    path.write_text(json.dumps(good))
    assert safety.read_model_json(str(path))["render_scale"] == 0.5
    for bad, fragment in (({"render_scale": 0}, "render_scale"), ({"render_scale": 1.5}, "render_scale"),
                          ({"render_scale": "0.5"}, "render_scale"), ({"render_scale": True}, "render_scale"),
                          ({"latent": "global", "render_scale": 0.5}, "spatial"),
                          ({"scales": {"clip": {"scale": 2}}}, "clip"), ({"scales": {"clip": 0.5}}, "clip"),
                          ({"scales": {"art": {"side": -3}}}, "art"),
                          ({"scales": {"clip": {"scale": 0.5, "side": 9}}}, "clip"), ({"scales": []}, "scales")):
        path.write_text(json.dumps({**good, **bad}))
        with pytest.raises(UserError) as e:
            safety.read_model_json(str(path))
        assert fragment in str(e.value) and str(path) in str(e.value)


@pytest.mark.slow
def test_spatial_model_renders_at_the_scale_it_learned(tmp_path, wide_clip, media):
    """Records cut at --video-scale 0.5: the exported spatial model's model.json has render_scale
    0.5, and mogrify_video.py renders videos and stills at half their size by default, at
    --render-size when given, and at the frame's size once model.json has no render_scale."""
    data = tmp_path / "data" / "tiles.tfrecord.gz"
    run_script("extract_tiles.py", "--out", data, "--video", wide_clip, "--images", media["paintings"], "--size",
               f"{TILE[0]}x{TILE[1]}", "--frame-step", 2, "--crop", "none", "--video-scale", 0.5, "--image-side", 120,
               "--crops-per-image", 2)
    run_script("train_vae.py", "--data", str(tmp_path / "data" / "*.tfrecord.gz"), "--logdir", tmp_path / "vae",
               "--steps", 20, "--latent", "spatial", *SPATIAL_TRAINING)
    models = tmp_path / "models"
    run_script("export_graphs.py", "--vae", tmp_path / "vae", "--out", models)
    meta = json.loads((models / "model.json").read_text())
    assert meta["render_scale"] == 0.5
    assert meta["scales"] == {"wide": {"scale": 0.5}, "paintings": {"side": 120}}
    run_script("evaluate_embeddings.py", "--data", str(tmp_path / "data" / "*.tfrecord.gz"), "--models", models)

    def render(source, out, *args):
        result = run_script("mogrify_video.py", source, out, "--models", models, "--stats", str(out) + ".json", *args)
        return json.loads(open(str(out) + ".json").read()), result.stderr

    stats, log = render(wide_clip, tmp_path / "half.mp4")
    assert stats["render_size"] == [128, 72] and stats["size"] == list(WIDE)
    assert "rendered at 128x72 (render scale 0.5" in log
    assert probe.probe(str(tmp_path / "half.mp4")).display_size == WIDE  # the output keeps the input's size
    still = tmp_path / "still.png"
    cv2.imwrite(str(still), np.zeros((101, 151, 3), np.uint8) + 90)
    stats, _ = render(still, tmp_path / "still_out.png")
    assert stats["render_size"] == [76, 50] and cv2.imread(str(tmp_path / "still_out.png")).shape == (101, 151, 3)
    stats, _ = render(wide_clip, tmp_path / "box.mp4", "--render-size", 200)
    assert stats["render_size"] == [200, 112]  # --render-size overrides the learned scale
    # A model without a render scale (cut with fit) renders at the frame's own size, as before.
    (models / "model.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "render_scale"}))
    stats, log = render(wide_clip, tmp_path / "full.mp4")
    assert stats["render_size"] == list(WIDE) and "render scale 1)" in log
