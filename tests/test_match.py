"""mogrify_video.py --match: a spatial model's code neighbourhoods replaced by the style's own
(bank.npz, written by evaluate_embeddings.py), checked against an independent computation."""
import shutil

import cv2
import numpy as np
import pytest

from conftest import assert_error_before_tensorflow, assert_one_line_error, decode, loaded_models, run_script
from test_spatial import render, vae_only
from vae import match


def neighbourhoods_of(maps, k):
    n, h, w, c = maps.shape
    return np.stack([maps[i, y:y + k, x:x + k] for i in range(n) for y in range(h - k + 1)
                     for x in range(w - k + 1)])


def test_bank_holds_the_style_tiles_own_codes(spatial):
    """Every entry of a source's bank is a 3x3 neighbourhood of the encoder's code map of one of
    that source's tiles (the tiles of tiles.npz), within the bank's size."""
    banks = np.load(spatial["models"] / "bank.npz")
    tiles = np.load(spatial["models"] / "tiles.npz")
    assert set(banks.files) == {"clip", "paintings"} and "code neighbourhoods" in spatial["stdout"]
    encoder = loaded_models(str(spatial["models"]))["encoder"].signatures["serving_default"]
    for name in banks.files:
        bank = banks[name]
        assert bank.dtype == np.float32 and bank.shape[1:] == (3, 3, 16)
        assert 0 < len(bank) <= match.BANK_SIZE and len(np.unique(bank.reshape(len(bank), -1), axis=0)) == len(bank)
        maps = encoder(images=tiles[name].astype(np.float32) / 255)["mean"].numpy()
        candidates = neighbourhoods_of(maps, 3).reshape(-1, 9 * 16)
        for entry in bank[::max(1, len(bank) // 20)].reshape(-1, 9 * 16):
            assert np.abs(candidates - entry).max(1).min() < 1e-4


def expected_matched_still(models_dir, image, beta, strength):
    """The contract's formula for a still with --alpha 0 and --match `strength`, computed here with
    NumPy and the exported encoder and decoder called directly (vae/match.py's description)."""
    import tensorflow as tf
    loaded = {k: tf.saved_model.load(str(models_dir / k)) for k in ("encoder", "decoder")}  # no refiner here
    h, w = image.shape[:2]
    x = np.pad(image.astype(np.float32) / 255, [(0, -h % 8), (0, -w % 8), (0, 0)], mode="symmetric")[None]
    z = loaded["encoder"].signatures["serving_default"](images=x)["mean"].numpy()
    import json
    style = np.float32(json.loads((models_dir / "embeddings.json").read_text())["sources"]["paintings"]["mean"])
    z = z + beta * style
    bank = np.load(models_dir / "bank.npz")["paintings"]  # fewer than BANK_SIZE: the style's bank is all of it
    assert len(bank) < match.BANK_SIZE
    flat = bank.reshape(-1, 16)
    keys = (bank - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-6)
    keys = keys.reshape(len(bank), -1)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    query = (z[0] - z[0].mean((0, 1))) / np.sqrt(z[0].var((0, 1)) + 1e-6)
    query = np.pad(query, [(1, 1), (1, 1), (0, 0)], mode="symmetric")
    mh, mw = z.shape[1:3]
    patches = np.stack([query[y:y + 3, x:x + 3].reshape(-1) for y in range(mh) for x in range(mw)])
    patches /= np.linalg.norm(patches, axis=1, keepdims=True)
    similarity = patches @ keys.T
    weights = np.exp((similarity - similarity.max(1, keepdims=True)) / match.TEMPERATURE)
    weights /= weights.sum(1, keepdims=True)
    matched = (weights @ bank[:, 1, 1]).reshape(1, mh, mw, 16)
    code = (1 - strength) * z + strength * matched
    out = loaded["decoder"].signatures["serving_default"](z=code.astype(np.float32))["images"].numpy()[0, :h, :w]
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


@pytest.mark.slow
def test_match_a_still_as_the_formula_says(tmp_path, media, spatial):
    models = vae_only(spatial, tmp_path / "models")
    _, frames = decode(media["clip"])
    still = frames[20][10:79, :150]
    cv2.imwrite(str(tmp_path / "still.png"), cv2.cvtColor(still, cv2.COLOR_RGB2BGR))
    for strength in (1.0, 0.5):
        stats = render(models, tmp_path / "still.png", tmp_path / f"m{strength}.png", "--beta", 0.5,
                       "--match", strength)
        got = cv2.cvtColor(cv2.imread(str(tmp_path / f"m{strength}.png")), cv2.COLOR_BGR2RGB)
        want = expected_matched_still(models, still, 0.5, strength)
        difference = np.abs(got.astype(int) - want)
        assert got.shape == still.shape and stats["render_size"] == [150, 69]
        assert difference.mean() < 0.5 and np.percentile(difference, 99) <= 2, (strength, difference.max())
    plain = render(models, tmp_path / "still.png", tmp_path / "plain.png", "--beta", 0.5)
    plain_image = cv2.imread(str(tmp_path / "plain.png"))
    matched_image = cv2.imread(str(tmp_path / "m1.0.png"))
    assert np.abs(plain_image.astype(int) - matched_image).mean() > 2  # matching changed the picture
    assert plain["render_size"] == [150, 69]


@pytest.mark.slow
def test_match_zero_is_the_plain_render_and_keyframes_run(tmp_path, media, spatial):
    models = vae_only(spatial, tmp_path / "models")
    render(models, media["clip"], tmp_path / "plain.mp4", "--beta", 1)
    render(models, media["clip"], tmp_path / "zero.mp4", "--beta", 1, "--match", 0)
    _, plain = decode(tmp_path / "plain.mp4")
    _, zero = decode(tmp_path / "zero.mp4")
    assert np.array_equal(plain, zero)
    stats = render(models, media["clip"], tmp_path / "faded.mp4", "--beta", 1, "--match", "0=0,1=1")
    _, faded = decode(tmp_path / "faded.mp4")
    assert len(faded) == len(plain) == stats["frames"]
    # Keyframes count from the clip's start: its first frame is the plain render (up to the
    # encoder's choices, which look ahead at the frames after it), later ones are matched.
    first, last = np.abs(faded[0].astype(int) - plain[0]).mean(), np.abs(faded[-1].astype(int) - plain[-1]).mean()
    assert first < 2 and last > 10 * first, (first, last)


def test_a_position_keeps_its_match_unless_a_new_one_is_clearly_better():
    """match.apply on three frames of a 3x3 one-channel code map against a bank of two entries,
    patterns a and b (zero mean, unit spread, orthogonal, so standardising changes nothing): the
    centre's neighbourhood is the whole map, cos(t) a + sin(t) b, whose cosine similarities are
    cos(t) and sin(t). The second frame leans to b by less than STAY and keeps the first frame's a;
    the third leans far enough and changes."""
    import tensorflow as tf
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 9))
    a -= a.mean()
    b -= b.mean()
    b -= (a @ b) / (a @ a) * a
    a, b = (v / v.std() for v in (a, b))
    bank = tf.constant(np.stack([a, b]).reshape(2, 3, 3, 1), tf.float32)
    angles = np.radians([20, 46, 70])
    assert 0 < np.sin(angles[1]) - np.cos(angles[1]) < match.STAY
    frames = [(np.cos(t) * a + np.sin(t) * b).reshape(1, 3, 3, 1).astype(np.float32) for t in angles]
    choices, previous = [], tf.fill([3, 3], -1)
    for frame in frames:
        _, previous = match.apply(tf.constant(frame), tf.constant([1.0]), bank, previous)
        choices.append(int(previous.numpy()[1, 1]))
    _, alone = match.apply(tf.constant(frames[1]), tf.constant([1.0]), bank, tf.fill([3, 3], -1))
    assert int(alone.numpy()[1, 1]) == 1  # on its own the second frame takes b ...
    assert choices == [0, 0, 1], choices  # ... but after the first it keeps a, until b is clearly better
    # Several frames in one call are matched in order, each after the one before.
    _, last = match.apply(tf.constant(np.concatenate(frames[:2])), tf.constant([1.0, 1.0]), bank, tf.fill([3, 3], -1))
    assert int(last.numpy()[1, 1]) == 0


def test_match_refused_where_it_cannot_run(tmp_path, media, evaluated, spatial):
    assert_error_before_tensorflow("mogrify_video.py", media["clip"], tmp_path / "g.mp4", "--models",
                                   evaluated["models"], "--match", 1, fragments=["--match", "spatial"])
    assert_error_before_tensorflow("mogrify_video.py", media["clip"], tmp_path / "g.mp4", "--models",
                                   spatial["models"], "--match", 1.5, fragments=["--match 1.5", "from 0 to 1"])
    models = tmp_path / "old"
    shutil.copytree(spatial["models"], models)
    (models / "bank.npz").unlink()
    result = run_script("mogrify_video.py", media["clip"], tmp_path / "s.mp4", "--models", models, "--match", 1,
                        check=False)
    assert_one_line_error(result, "bank.npz", "evaluate_embeddings.py")
    (models / "bank.npz").write_bytes(b"not a zip")
    result = run_script("mogrify_video.py", media["clip"], tmp_path / "s.mp4", "--models", models, "--match", 1,
                        check=False)
    assert_one_line_error(result, "bank.npz")
    assert not (tmp_path / "g.mp4").exists() and not (tmp_path / "s.mp4").exists()
