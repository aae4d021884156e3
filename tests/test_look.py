"""--detail and the measures (structure, palette, flicker), on rendered files decoded independently."""
import json
import subprocess

import cv2
import numpy as np
import pytest

from conftest import TILE, assert_one_line_error, decode, flickering_copy, run_script
from vae import ffmpeg, measures, synthetic


@pytest.fixture(scope="module")
def fine_clip(tmp_path_factory):
    """A clip with fine detail (the synthetic scene plus a sharp test pattern), named after the
    trained source so that its mean is the trained one."""
    folder = tmp_path_factory.mktemp("fine")
    path = folder / "clip.mp4"
    subprocess.run([ffmpeg.exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=s=192x108:r=25:d=1.2",
                    "-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def render(evaluated, source, out, *options):
    stats = out.with_suffix(".json")
    result = run_script("mogrify_video.py", source, out, "--models", evaluated["models"], "--crop", "none",
                        "--stats", stats, "--crf", 10, *options)
    return json.loads(stats.read_text()), result


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255 ** 2 / max(mse, 1e-12))


def test_detail_one_without_shift_gives_back_the_input(tmp_path, evaluated, fine_clip):
    stats, result = render(evaluated, fine_clip, tmp_path / "same.mp4", "--detail", 1, "--alpha", 0, "--beta", 0)
    _, original = decode(fine_clip)
    meta, frames = decode(tmp_path / "same.mp4")
    assert (meta.width, meta.height) == (192, 108) and len(frames) == len(original) == 30
    assert psnr(frames, original) >= 35
    assert 0.97 < stats["structure"] <= 1.0
    assert 0.7 < stats["flicker"] < 1.4  # as steady as the input, up to the encoder
    assert stats["frames"] == 30 and abs(stats["seconds"] - 1.2) < 0.05
    assert "structure" in result.stdout and "flicker" in result.stdout


@pytest.mark.slow
def test_detail_keeps_structure_and_moves_the_palette(tmp_path, evaluated, fine_clip):
    plain, _ = render(evaluated, fine_clip, tmp_path / "plain.mp4", "--alpha", 0.5, "--beta", 1.5)
    sharp, _ = render(evaluated, fine_clip, tmp_path / "sharp.mp4", "--alpha", 0.5, "--beta", 1.5, "--detail", 1)
    half, _ = render(evaluated, fine_clip, tmp_path / "half.mp4", "--alpha", 0.5, "--beta", 1.5, "--detail", 0.5)
    assert sharp["structure"] > half["structure"] > plain["structure"]
    assert sharp["palette_after"] < sharp["palette_before"]
    assert plain["palette_after"] < plain["palette_before"]
    # --detail 0 is the original look: the tile-sized render scaled up, nothing of the input added.
    _, frames = decode(tmp_path / "plain.mp4")
    _, tiles = decode(tmp_path / "plain.mp4", (64, 36))
    blurry = cv2.resize(tiles[0], (192, 108), interpolation=cv2.INTER_CUBIC)
    assert np.abs(frames[0].astype(int) - blurry).mean() < 6


@pytest.fixture(scope="module")
def identity_models(tmp_path_factory, tiles):
    """A models folder whose code is the tile itself (encoder and decoder reshape, no refiner):
    every frame's own picture comes back, so what the output does from frame to frame is the
    input's motion plus what mogrify adds. Its embeddings come from evaluate_embeddings.py."""
    import keras
    from vae import export
    folder = tmp_path_factory.mktemp("identity") / "models"
    w, h = TILE
    codes = w * h * 3

    def same(x):  # a 1x1 convolution that passes its input on: weights, as the real models have
        layer = keras.layers.Conv2D(3, 1, use_bias=False)
        out = layer(x)
        layer.set_weights([np.eye(3, dtype="float32").reshape(1, 1, 3, 3)])
        return out

    image = keras.Input((h, w, 3))
    flat = keras.layers.Reshape((codes,))(same(image))
    encoder = keras.Model(image, [flat, keras.layers.Rescaling(0.0)(flat)])
    z = keras.Input((codes,))
    decoder = keras.Model(z, same(keras.layers.Reshape((h, w, 3))(z)))
    export.save("encoder", encoder, (h, w, 3), str(folder))
    export.save("decoder", decoder, (codes,), str(folder))
    export.update_model_json(str(folder), width=w, height=h, codes=codes, vae_step=0)
    run_script("evaluate_embeddings.py", "--data", tiles, "--models", folder)
    return folder


def test_smoothing_lowers_flicker(tmp_path, identity_models, media):
    """Frames that flicker in brightness, through models that give every frame back: --smooth
    evens the flicker out, and the measure says so."""
    clip = flickering_copy(media["clip"], tmp_path / "flickering.mp4", 0.12)
    rates = {}
    for smooth in (0, 0.5):
        stats, _ = render({"models": identity_models}, clip, tmp_path / f"s{smooth}.mp4", "--smooth", smooth,
                          "--alpha", 0, "--beta", 0)
        rates[smooth] = stats["flicker"]
    assert rates[0.5] < 0.6 * rates[0]


def test_flicker_measure():
    """1 for an output equal to the input, far above 1 with frame-to-frame noise added."""
    rng = np.random.default_rng(0)
    frames = list(synthetic.scene_frames(rng, 160, 90, frames=12))
    same, noisy = measures.Measures(every=1), measures.Measures(every=1)
    for index, frame in enumerate(frames):
        same.add(index, frame, frame)
        noise = rng.normal(0, 25, frame.shape)
        noisy.add(index, frame, np.clip(frame + noise, 0, 255).astype(np.uint8))
    assert same.summary()["flicker"] == pytest.approx(1.0)
    assert noisy.summary()["flicker"] > 4


def test_structure_and_palette_measures():
    rng = np.random.default_rng(1)
    frame = next(synthetic.scene_frames(rng, 160, 90, frames=1))
    assert measures.ssim(measures.luminance(frame), measures.luminance(frame)) == pytest.approx(1.0)
    blurred = cv2.GaussianBlur(frame, (9, 9), 3)
    assert measures.ssim(measures.luminance(frame), measures.luminance(blurred)) < 0.9
    style = np.array([60.0, 40.0, 40.0])
    meter = measures.Measures(style, every=1)
    meter.add(0, frame, frame)
    summary = meter.summary()
    assert summary["palette_before"] == pytest.approx(summary["palette_after"])
    lab = cv2.cvtColor(frame.astype(np.float32) / 255, cv2.COLOR_RGB2LAB).reshape(-1, 3).mean(0)
    assert summary["palette_before"] == pytest.approx(np.linalg.norm(lab - style), abs=0.6)


def test_look_errors(tmp_path, evaluated, media):
    models = evaluated["models"]
    assert_one_line_error(run_script("mogrify_video.py", media["clip"], tmp_path / "o.mp4", "--models", models,
                                     "--detail", -1, check=False), "--detail")
    assert_one_line_error(run_script("mogrify_video.py", media["clip"], tmp_path / "o.mp4", "--models", models,
                                     "--stats", tmp_path / "missing" / "s.json", check=False), "--stats")
    assert not (tmp_path / "o.mp4").exists()
