"""Embeddings, the report and mogrify_video.py, end to end as a user runs them."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from conftest import (ROOT, TILE, assert_error_before_tensorflow, assert_one_line_error, decode,
                      expected_first_frame, run_script)
from vae import manifest, probe, records, synthetic
from vae.decode import read_frames


def test_embeddings_are_source_means(evaluated):
    import tensorflow as tf
    embeddings = json.loads((evaluated["models"] / "embeddings.json").read_text())["sources"]
    listing = json.loads(open(manifest.manifest_path(evaluated["data"].replace("*", "tiles"))).read())
    assert {s["name"]: s["count"] for s in listing["sources"]} == {n: e["count"] for n, e in embeddings.items()}
    assert embeddings["paintings"]["kind"] == "images" and embeddings["clip"]["kind"] == "video"
    # Recompute one source's mean straight from the records and the exported encoder.
    encoder = tf.saved_model.load(str(evaluated["models"] / "encoder"))
    files = records.find_files([evaluated["data"]])
    codes = []
    for batch in records.iterate(files, TILE):
        mask = batch["source"] == b"paintings"
        codes.append(encoder.signatures["serving_default"](images=tf.constant(batch["image"][mask]))["mean"].numpy())
    np.testing.assert_allclose(embeddings["paintings"]["mean"], np.concatenate(codes).mean(0), atol=1e-4)
    assert len(embeddings["clip"]["mean"]) == 32
    assert not np.allclose(embeddings["clip"]["mean"], embeddings["paintings"]["mean"])


def warmth(picture):
    """Mean red minus blue of a BGR picture's coloured pixels (labels and background are grey)."""
    pixels = picture.reshape(-1, 3).astype(int)
    coloured = pixels[pixels.max(1) - pixels.min(1) > 20]
    return (coloured[:, 2] - coloured[:, 0]).mean()


def test_report_pictures(evaluated):
    pictures = {}
    for name in ("reconstructions", "salted", "shift_sweep", "projection", "table"):
        picture = pictures[name] = cv2.imread(str(evaluated["report"] / f"{name}.png"))
        assert picture is not None and picture.shape[0] > 100 and picture.shape[1] > 100, name
        assert picture.std() > 5, name  # not blank
    # Rows per source in sorted order: the clip's (cool) above the paintings' (warm), inputs and outputs alike.
    for name in ("reconstructions", "salted"):
        half = pictures[name].shape[0] // 2
        assert warmth(pictures[name][:half]) < warmth(pictures[name][half:]) - 10, name
    # The sweep's columns shift the clip toward the paintings: warmer to the right.
    sweep = pictures["shift_sweep"]
    third = sweep.shape[1] // 3
    assert warmth(sweep[:, 2 * third:]) > warmth(sweep[:, :third]) + 10
    # The projection shows both sources' points: matplotlib's first two colours, blue and orange.
    points = pictures["projection"].reshape(-1, 3).astype(int)
    assert (points[:, 0] > points[:, 2] + 60).sum() > 50 and (points[:, 2] > points[:, 0] + 100).sum() > 50
    assert "clip: " in evaluated["stdout"] and "PSNR" in evaluated["stdout"]
    # The TensorBoard projector: one metadata row and one sprite cell per code, codes in a checkpoint.
    import tensorflow as tf
    projector = evaluated["report"] / "projector"
    labels = (projector / "metadata.tsv").read_text().splitlines()
    codes = tf.train.load_checkpoint(str(projector)).get_tensor("embedding/.ATTRIBUTES/VARIABLE_VALUE")
    assert len(labels) == codes.shape[0] > 0 and codes.shape[1] == 32 and set(labels) == {"clip", "paintings"}
    sprite = cv2.imread(str(projector / "sprite.png"))
    side = int(np.ceil(np.sqrt(len(labels))))
    assert sprite.shape[:2] == (side * 36, side * 64)
    assert "sprite.png" in (projector / "projector_config.pbtxt").read_text()


STYLED = ["--alpha", 0.5, "--beta", 1.0, "--batch-size", 7]


@pytest.fixture(scope="module")
def styled(evaluated, media, tmp_path_factory):
    """The test clip rendered once with STYLED's settings: (the output, the script's result)."""
    out = tmp_path_factory.mktemp("styled") / "styled.mp4"
    return out, run_script("mogrify_video.py", media["clip"], out, "--models", evaluated["models"], *STYLED)


def test_mogrify_end_to_end(evaluated, media, styled):
    out, result = styled
    meta_in, frames_in = decode(media["clip"])
    meta, frames = decode(out)
    assert len(frames) == len(frames_in) == 40
    assert meta.fps == meta_in.fps == 25
    assert (meta.width, meta.height) == (160, 70)  # the 10-pixel bars cropped away
    assert meta.has_audio
    # The first frame is the formula applied by the exported models, scaled to the output size.
    tile = next(read_frames(probe.probe(media["clip"]), TILE, probe.Crop(10, 0, 10, 0))).image
    expected = cv2.resize(expected_first_frame(evaluated["models"], tile, 0.5, 1.0), (160, 70),
                          interpolation=cv2.INTER_CUBIC)
    unshifted = cv2.resize(expected_first_frame(evaluated["models"], tile, 0.0, 0.0), (160, 70),
                           interpolation=cv2.INTER_CUBIC)
    error = np.abs(frames[0].astype(int) - expected).mean()
    assert error < 4, error
    assert error < 0.5 * np.abs(frames[0].astype(int) - unshifted).mean()
    # The measures: input and output distances to the style, structure and flicker.
    line = next(text for text in result.stdout.splitlines() if text.startswith("palette distance"))
    assert "input" in line and "output" in line
    assert any(text.startswith("structure ") for text in result.stdout.splitlines())
    assert any(text.startswith("flicker ") for text in result.stdout.splitlines())


def test_mogrify_smoothing_and_unknown_source(tmp_path, evaluated, media):
    holiday = tmp_path / "holiday.mp4"
    shutil.copy(media["clip"], holiday)
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    result = run_script("mogrify_video.py", holiday, a, "--models", evaluated["models"], "--smooth", 0, "--no-audio")
    assert "not a trained source" in result.stderr
    run_script("mogrify_video.py", holiday, b, "--models", evaluated["models"], "--smooth", 0.9, "--no-audio")
    meta, fa = decode(a)
    _, fb = decode(b)
    assert not meta.has_audio
    # Heavier smoothing means smaller changes from frame to frame.
    assert np.abs(np.diff(fb.astype(int), axis=0)).mean() < np.abs(np.diff(fa.astype(int), axis=0)).mean()


def test_mogrify_inset(tmp_path, evaluated, media, styled):
    plain, inset = styled[0], tmp_path / "inset.mp4"
    run_script("mogrify_video.py", media["clip"], inset, "--models", evaluated["models"], *STYLED, "--inset")
    _, fp = decode(plain)
    _, fi = decode(inset)
    _, original = decode(media["clip"])
    # Bottom-right corner, 2 pixels in, holds the original frame scaled to a quarter: 40x16 of 160x70.
    corner = fi[10, 70 - 16 - 2:70 - 2, 160 - 40 - 2:160 - 2].astype(int)
    small = cv2.resize(original[10, 10:80], (40, 16), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(corner - small).mean() < 10
    assert np.abs(fp[10, :40, :80].astype(int) - fi[10, :40, :80]).mean() < 3  # the rest is unchanged


def test_interrupted_mogrify_leaves_nothing(tmp_path, evaluated):
    long_clip = synthetic.write_video(str(tmp_path / "long.mp4"), width=320, height=180, frames=1500)
    out = tmp_path / "out" / "styled.mp4"
    out.parent.mkdir()
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "mogrify_video.py"), long_clip, str(out),
                             "--models", str(evaluated["models"])], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not os.listdir(out.parent):
        time.sleep(0.2)
    time.sleep(1.0)
    assert proc.poll() is None, proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in stderr
    assert os.listdir(out.parent) == []


def test_mogrify_errors(tmp_path, evaluated, media):
    models = evaluated["models"]
    result = run_script("mogrify_video.py", tmp_path / "missing.mp4", tmp_path / "o.mp4", "--models", models,
                        check=False)
    assert_one_line_error(result, "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    assert_one_line_error(run_script("mogrify_video.py", junk, tmp_path / "o.mp4", "--models", models, check=False),
                          "junk.mp4")
    bare = tmp_path / "bare"
    shutil.copytree(models, bare)
    os.unlink(bare / "embeddings.json")
    assert_one_line_error(run_script("mogrify_video.py", media["clip"], tmp_path / "o.mp4", "--models", bare,
                                     check=False), "evaluate_embeddings.py")
    result = run_script("mogrify_video.py", media["clip"], tmp_path / "o.mp4", "--models", models, "--style", "monet",
                        check=False)
    assert_one_line_error(result, "monet", "clip", "paintings")
    embeddings = json.loads((models / "embeddings.json").read_text())
    for entry in embeddings["sources"].values():
        entry["mean"] = entry["mean"][:16]
    (bare / "embeddings.json").write_text(json.dumps(embeddings))
    assert_one_line_error(run_script("mogrify_video.py", media["clip"], tmp_path / "o.mp4", "--models", bare,
                                     check=False), "16 codes", "32")
    copy = tmp_path / "mine.mp4"
    shutil.copy(media["clip"], copy)
    before = copy.read_bytes()
    assert_one_line_error(run_script("mogrify_video.py", copy, copy, "--models", models, check=False), "input")
    assert copy.read_bytes() == before
    assert not (tmp_path / "o.mp4").exists()
    result = run_script("evaluate_embeddings.py", "--data", evaluated["data"], "--models", tmp_path / "nothing",
                        check=False)
    assert_one_line_error(result, "nothing")


def test_mogrify_refuses_bad_input_before_tensorflow(tmp_path, evaluated, media):
    """What needs no TensorFlow is checked before its seconds of start-up."""
    models, clip, out = evaluated["models"], media["clip"], tmp_path / "o.mp4"
    for args, fragments in (([tmp_path / "missing.mp4", out, "--models", models], ["missing.mp4"]),
                            ([clip, out, "--models", models, "--style", "monet"], ["monet", "paintings"]),
                            ([clip, out, "--models", models, "--beta", "2=1,1=0"], ["--beta", "increase"]),
                            ([clip, out, "--models", models, "--start", 99], ["past its end"]),
                            ([clip, out, "--models", models, "--audio-track", 5], ["--audio-track 5"]),
                            ([clip, out, "--models", tmp_path / "nowhere"], ["nowhere", "model.json"])):
        assert_error_before_tensorflow("mogrify_video.py", *args, fragments=fragments)
    assert not out.exists()
