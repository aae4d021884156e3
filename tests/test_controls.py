"""Artist controls of mogrify_video.py: segments, style mixing, strength over time, stills, folders."""
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

from conftest import ROOT, TILE, assert_one_line_error, decode, expected_first_frame, run_script
from vae import probe, synthetic
from vae.decode import read_frames

CLIP_CROP = probe.Crop(10, 0, 10, 0)  # the test clip's letterbox, found by --crop auto


def mean_difference(a, b):
    return np.abs(a.astype(int) - b.astype(int)).mean()


def first_tile(clip, index=0):
    frames = read_frames(probe.probe(str(clip)), TILE, CLIP_CROP)
    for frame in frames:
        if frame.index == index:
            frames.close()
            return frame.image
    raise AssertionError(f"no frame {index}")


def test_segment_matches_the_full_render(tmp_path, evaluated, media):
    full, part = tmp_path / "full.mp4", tmp_path / "part.mp4"
    options = ["--models", evaluated["models"], "--smooth", 0, "--alpha", 0.5, "--beta", "0=0,1.6=1.6"]
    run_script("mogrify_video.py", media["clip"], full, *options)
    run_script("mogrify_video.py", media["clip"], part, *options, "--start", 0.8, "--duration", 0.4)
    _, whole = decode(full)
    meta, segment = decode(part)
    assert len(segment) == 10  # 0.4 s at 25 fps
    # Keyframe times stay on the input's clock: the segment's first frame is frame 20 of the whole.
    assert mean_difference(segment[0], whole[20]) < 3
    assert mean_difference(segment[0], whole[0]) > 2 * mean_difference(segment[0], whole[20])
    assert meta.has_audio and abs(meta.duration - 0.4) < 0.1  # the sound cut to the same span


def test_segment_errors(tmp_path, evaluated, media):
    out = tmp_path / "o.mp4"
    for options, fragment in ([("--start", 99), "past its end"], [("--duration", 0), "--duration"],
                              [("--duration", -1), "--duration"], [("--start", -2), "--start"]):
        result = run_script("mogrify_video.py", media["clip"], out, "--models", evaluated["models"], *options,
                            check=False)
        assert_one_line_error(result, fragment)
    assert not out.exists()


def test_style_mix_is_the_weighted_mean(tmp_path, evaluated, media):
    models = tmp_path / "models"
    shutil.copytree(evaluated["models"], models)
    embeddings = json.loads((models / "embeddings.json").read_text())
    sources = embeddings["sources"]
    sources["warm:ish"] = {**sources["paintings"], "mean": [v * -3 for v in sources["paintings"]["mean"]]}
    (models / "embeddings.json").write_text(json.dumps(embeddings))
    out = tmp_path / "mixed.mp4"
    result = run_script("mogrify_video.py", media["clip"], out, "--models", models, "--smooth", 0, "--crf", 0,
                        "--alpha", 0.5, "--beta", 2.0, "--style", "paintings:3", "--style", "warm:ish:1")
    assert "paintings" in result.stdout and "warm:ish" in result.stdout
    mixed = 0.75 * np.float32(sources["paintings"]["mean"]) + 0.25 * np.float32(sources["warm:ish"]["mean"])
    _, frames = decode(out)
    size = frames.shape[2:0:-1]
    expected = cv2.resize(expected_first_frame(models, first_tile(media["clip"]), 0.5, 2.0, style_mean=mixed), size,
                          interpolation=cv2.INTER_CUBIC)
    only_paintings = cv2.resize(expected_first_frame(models, first_tile(media["clip"]), 0.5, 2.0), size,
                                interpolation=cv2.INTER_CUBIC)
    # The formula up to x264's loss, and far from the unmixed style.
    assert mean_difference(frames[0], expected) < 0.5 * mean_difference(frames[0], only_paintings)
    for style, fragment in (("monet", "monet"), ("paintings:-1", "at least 0"), ("paintings:0", "zero")):
        result = run_script("mogrify_video.py", media["clip"], tmp_path / "o.mp4", "--models", models,
                            "--style", style, check=False)
        assert_one_line_error(result, fragment)
    assert "clip" in result.stderr and "paintings" in result.stderr  # the known sources are listed


@pytest.mark.slow
def test_keyframed_strength(tmp_path, evaluated, media):
    faded, plain, shifted = tmp_path / "faded.mp4", tmp_path / "plain.mp4", tmp_path / "shifted.mp4"
    common = ["--models", evaluated["models"], "--smooth", 0, "--alpha", 0, "--no-audio", "--crf", 0]
    run_script("mogrify_video.py", media["clip"], faded, *common, "--beta", "0=0,1.2=1")
    run_script("mogrify_video.py", media["clip"], plain, *common, "--beta", 0)
    run_script("mogrify_video.py", media["clip"], shifted, *common, "--beta", 1)
    _, f = decode(faded)
    _, p = decode(plain)
    _, s = decode(shifted)
    # Each frame is one of the fixed renders up to the encoder's noise, and far from the other.
    assert mean_difference(f[0], p[0]) < 0.3 * mean_difference(f[0], s[0])
    assert mean_difference(f[30], s[30]) < 0.3 * mean_difference(f[30], p[30])  # 1.2 s at 25 fps
    assert mean_difference(f[39], s[39]) < 0.3 * mean_difference(f[39], p[39])  # held beyond the end
    for beta, fragment in (("2=1,1=0", "increase"), ("0=0,0=1", "increase"), ("0=zero", "number")):
        result = run_script("mogrify_video.py", media["clip"], tmp_path / "o.mp4", *common, "--beta", beta,
                            check=False)
        assert_one_line_error(result, "--beta", fragment)


@pytest.mark.slow
def test_still_matches_the_video_frame(tmp_path, evaluated, media):
    _, frames = decode(media["clip"])
    still = tmp_path / "clip.png"  # named after the trained source, so the same source mean applies
    cv2.imwrite(str(still), cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))
    styled_video, styled_still = tmp_path / "v.mp4", tmp_path / "styled.png"
    common = ["--models", evaluated["models"], "--smooth", 0, "--alpha", 0.5, "--beta", 1.0]
    run_script("mogrify_video.py", media["clip"], styled_video, *common, "--crop", "none")
    run_script("mogrify_video.py", still, styled_still, *common)
    _, rendered = decode(styled_video)
    picture = cv2.cvtColor(cv2.imread(str(styled_still)), cv2.COLOR_BGR2RGB)
    assert picture.shape == frames[0].shape
    assert mean_difference(picture, rendered[0]) < 5
    # --detail 1 without a shift gives the photo back; a .jpg output is a JPEG.
    same = tmp_path / "same.jpg"
    run_script("mogrify_video.py", still, same, "--models", evaluated["models"], "--detail", 1, "--alpha", 0,
               "--beta", 0)
    assert same.read_bytes()[:2] == b"\xff\xd8"
    assert mean_difference(cv2.cvtColor(cv2.imread(str(same)), cv2.COLOR_BGR2RGB), frames[0]) < 3


def test_still_exif_orientation(tmp_path, evaluated):
    from PIL import Image
    picture = np.zeros((36, 64, 3), np.uint8)
    picture[:12, :12] = 255  # a white corner, top-left as stored
    photo = Image.fromarray(picture)
    exif = photo.getexif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise, as phones write portrait photos
    path = tmp_path / "phone.jpg"
    photo.save(path, exif=exif, quality=95)
    out = tmp_path / "phone.png"
    run_script("mogrify_video.py", path, out, "--models", evaluated["models"], "--detail", 1, "--alpha", 0,
               "--beta", 0)
    shown = cv2.imread(str(out))
    assert shown.shape[:2] == (64, 36)  # portrait, as shown
    assert shown[:10, -10:].mean() > 200 and shown[:10, :10].mean() < 60  # the corner moved top-right


@pytest.fixture
def folder_of_media(tmp_path, media):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(media["clip"], folder / "a.mp4")
    synthetic.write_video(str(folder / "b.mp4"), seed=3, width=160, height=90, frames=300)
    shutil.copy(next(media["paintings"].iterdir()), folder / "c.jpg")
    (folder / "d.mp4").write_text("not a video")
    (folder / "notes.txt").write_text("ignored")
    return folder


@pytest.mark.slow
def test_folder_resumes_after_interrupt(tmp_path, evaluated, folder_of_media):
    out = tmp_path / "out"
    cmd = [sys.executable, os.path.join(ROOT, "mogrify_video.py"), str(folder_of_media), str(out),
           "--models", str(evaluated["models"]), "--batch-size", "4"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "a.mp4").exists():
        time.sleep(0.1)
    time.sleep(0.5)  # into b.mp4
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in stderr
    done = sorted(os.listdir(out))
    assert done == ["a.mp4"]  # b.mp4 was under way: no partial file is left
    result = run_script("mogrify_video.py", folder_of_media, out, "--models", evaluated["models"], check=False)
    assert result.returncode == 1  # d.mp4 is broken
    assert sorted(os.listdir(out)) == ["a.mp4", "b.mp4", "c.png"]
    assert "a.mp4: skipped" in result.stderr and "d.mp4" in result.stdout
    assert "2 rendered, 1 skipped (output exists), 1 failed" in result.stdout
    meta, frames = decode(out / "b.mp4")
    assert len(frames) == 300
    assert cv2.imread(str(out / "c.png")).shape == cv2.imread(str(folder_of_media / "c.jpg")).shape


def test_report_shows_style_mixes(tmp_path, evaluated, media):
    """With two image sources, evaluate_embeddings.py --report draws frames under their mixes."""
    warm, warmer = tmp_path / "warm", tmp_path / "warmer"
    warm.mkdir()
    warmer.mkdir()
    for i, painting in enumerate(sorted(media["paintings"].iterdir())):
        shutil.copy(painting, (warm if i % 2 else warmer) / painting.name)
    data = tmp_path / "data" / "tiles.tfrecord.gz"
    run_script("extract_tiles.py", "--out", data, "--video", media["clip"], "--images", warm, "--images", warmer,
               "--size", f"{TILE[0]}x{TILE[1]}", "--frame-step", 4)
    models = tmp_path / "models"
    shutil.copytree(evaluated["models"], models)
    report = tmp_path / "report"
    run_script("evaluate_embeddings.py", "--data", data, "--models", models, "--report", report)
    picture = cv2.imread(str(report / "style_mixes.png"))
    assert picture is not None and picture.shape[0] > 100 and picture.shape[1] > 300
    assert picture.std() > 20  # frames, not a blank canvas
