"""Footage as players show it, end to end as a user runs the scripts (issue 9).

Every clip is made here with the bundled ffmpeg from a picture whose geometry can be checked by
its pixels: red grows to the right, green grows downwards, a white square sits in the coded
top-left corner and a blue blob moves from frame to frame. Outputs are checked by decoding them
with ffmpeg directly (showinfo, raw PCM), never through vae.video.
"""
import json
import re
import subprocess

import cv2
import numpy as np
import pytest

from conftest import TILE, assert_one_line_error, run_script
from vae import records
from vae.ffmpeg import exe as ffmpeg_exe

# Mean absolute difference (0..255) allowed between a tile and the view computed here: about 1.3
# is measured (ffmpeg's and OpenCV's scalers differ a little); the wrong geometries measure
# 8 (anamorphic frame cut as stored) to 38 (portrait frame cut as stored).
TOLERANCE = 3


# --------------------------------------------------------------------------- making footage

def ffmpeg(*args):
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *map(str, args)],
                            capture_output=True, text=True, errors="replace")
    if result.returncode != 0:
        raise AssertionError(f"ffmpeg {' '.join(map(str, args))} failed:\n{result.stderr[-2000:]}")
    return result


def picture(width, height, count, offset=0):
    """`count` RGB frames of the checkable picture; the blob's place depends on the frame number."""
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    frames = np.empty((count, height, width, 3), np.uint8)
    for k in range(count):
        n = k + offset
        cx, cy = 0.15 + 0.7 * ((n * 0.37) % 1), 0.2 + 0.6 * ((n * 0.61) % 1)
        blob = np.exp(-((x - cx) ** 2 + ((y - cy) * height / width) ** 2) / (2 * 0.07 ** 2))
        frames[k, :, :, 0] = 60 + 160 * x
        frames[k, :, :, 1] = 60 + 160 * y
        frames[k, :, :, 2] = 80 + 150 * blob
        frames[k, :height // 4, :height // 4] = 250
    return frames


def make_clip(path, width, height, parts=((25, 25),), audio=(), sar=None, video_args=(), audio_args=(), bars=0):
    """Encode the picture: `parts` are (frame count, fps) concatenated (two parts: a variable
    rate), `audio` one sine track per frequency, each as long as the picture."""
    inputs, labels, offset = [], [], 0
    for i, (count, fps) in enumerate(parts):
        raw = path.parent / f".{path.stem}.{i}.rgb"
        frames = picture(width, height, count, offset)
        if bars:  # black bars along the stored top and bottom
            frames[:, :bars] = frames[:, height - bars:] = 0
        raw.write_bytes(frames.tobytes())
        offset += count
        inputs += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", fps, "-i", raw]
        labels.append(f"[{i}:v]")
    seconds = sum(count / fps for count, fps in parts)
    for frequency in audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency={frequency}:sample_rate=48000:duration={seconds}"]
    graph = f"{''.join(labels)}concat=n={len(parts)}:v=1:a=0" + (f",setsar={sar}" if sar else "") + "[v]"
    maps = ["-map", "[v]"] + [a for k in range(len(audio)) for a in ("-map", f"{len(parts) + k}:a")]
    ffmpeg(*inputs, "-filter_complex", graph, *maps, "-fps_mode", "passthrough",
           *(video_args or ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", "-pix_fmt", "yuv420p"]),
           *(audio_args or (["-c:a", "aac"] if audio else [])), path)
    for i in range(len(parts)):
        (path.parent / f".{path.stem}.{i}.rgb").unlink()
    return path


def with_metadata(source, path, *input_options, output_options=()):
    """A copy of `source` with display options (-display_rotation...) or output options, streams copied."""
    ffmpeg(*input_options, "-i", source, "-map", "0", "-c", "copy", *output_options, path)
    return path


# --------------------------------------------------------------------------- reading footage back

def coded_frames(path, width, height):
    """Every decoded frame as stored, without the display matrix applied."""
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-noautorotate",
                          "-i", str(path), "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, height, width, 3)


def shown_frames(path):
    """[(time, duration, shown width, shown height, sar)] of every frame as a player gets it,
    times on the file's own clock."""
    text = ffmpeg("-copyts", "-i", path, "-map", "0:v:0", "-fps_mode", "passthrough", "-vf", "showinfo",
                  "-f", "null", "-").stderr
    frames = []
    for line in text.splitlines():
        m = re.search(r"\bn:\s*\d+ .*?pts_time:(\S+)\s+duration:\s*\S+\s+duration_time:(\S+)"
                      r".*?sar:(\d+)/(\d+) s:(\d+)x(\d+)", line)
        if m:
            num, den = int(m.group(3)), int(m.group(4))
            frames.append((float(m.group(1)), float(m.group(2)), int(m.group(5)), int(m.group(6)),
                           num / den if num and den else 1.0))
    assert frames, text[-2000:]
    return frames


def picture_span(frames):
    """(first time, how long the picture lasts): the last frame's end minus the first's start."""
    return frames[0][0], frames[-1][0] + frames[-1][1] - frames[0][0]


def describe(path):
    """What `ffmpeg -i` says about a file."""
    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                          capture_output=True, text=True, errors="replace").stderr


def audio_streams(path):
    return re.findall(r"Stream #\S+.*?: Audio: (\w+)", describe(path))


def sound(path, track=0, rate=8000):
    """(first sample time, samples) of an audio track, decoded to mono PCM."""
    text = ffmpeg("-copyts", "-i", path, "-map", f"0:a:{track}", "-af", "ashowinfo", "-f", "null", "-").stderr
    first = float(re.search(r"pts_time:(\S+)", text).group(1))
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
                          "-map", f"0:a:{track}", "-ac", "1", "-ar", str(rate), "-f", "s16le", "-"],
                         capture_output=True, check=True).stdout
    return first, np.frombuffer(out, np.int16).astype(np.float32)


def pitch(samples, rate=8000):
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)]


def read_tiles(path):
    """{(source, index): tile} from an extraction's records."""
    files = records.find_files([str(path)])
    out = {}
    for batch in records.iterate(files, records.tile_size(files), batch_size=64):
        for i in range(len(batch["image"])):
            key = (batch["source"][i].decode(), int(batch["index"][i]))
            assert key not in out, key
            out[key] = np.round(batch["image"][i] * 255).astype(np.uint8)
    return out


def expected_tile(coded, turn=0, mirror=False, sar=1.0):
    """The player's view of a stored frame (display matrix applied, pixels made square),
    centre-cut to the tile's aspect and area-scaled to the tile size, computed here alone."""
    view = np.fliplr(coded) if mirror else coded
    view = np.ascontiguousarray(np.rot90(view, turn // 90))  # counter-clockwise, as -display_rotation
    h, w = view.shape[:2]
    if sar != 1:
        view = cv2.resize(view, (round(w * sar), h), interpolation=cv2.INTER_CUBIC)
        h, w = view.shape[:2]
    if w * TILE[1] > h * TILE[0]:
        cw, ch = round(h * TILE[0] / TILE[1]), h
    else:
        cw, ch = w, round(w * TILE[1] / TILE[0])
    x, y = (w - cw) // 2, (h - ch) // 2
    return cv2.resize(view[y:y + ch, x:x + cw], TILE, interpolation=cv2.INTER_AREA)


def difference(a, b):
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def footage(tmp_path_factory):
    folder = tmp_path_factory.mktemp("footage")
    clips = {}
    # Stored landscape, shown portrait: phones write a display matrix instead of turning pixels.
    base = make_clip(folder / "base.mp4", 160, 90, parts=((10, 25),), audio=(440,))
    # -display_rotation counts counter-clockwise; phones filmed upright write 270 ("rotation of -90").
    clips["portrait"] = with_metadata(base, folder / "portrait.mp4", "-display_rotation", 90)
    clips["phone"] = with_metadata(base, folder / "phone.mp4", "-display_rotation", 270)
    clips["mirror"] = with_metadata(base, folder / "mirror.mp4", "-display_hflip")
    clips["unicode"] = with_metadata(base, folder / "clip ünïcødé 日本.mp4", "-display_rotation", 90)
    # PAL 16:9 anamorphic, at half size: 360x288 stored, shown 512x288.
    clips["pal"] = make_clip(folder / "pal.mp4", 360, 288, parts=((10, 25),), sar="64/45")
    # A phone's variable rate with sound: 1 s at 25 fps then 1 s at 10 fps.
    clips["vfr"] = make_clip(folder / "vfr.mp4", 160, 90, parts=((25, 25), (10, 10)), audio=(440,))
    return clips


@pytest.fixture(scope="module")
def models(evaluated):
    """The session's exported models with embeddings.json (mogrify needs it)."""
    return evaluated["models"]


def mogrify(source, out, models, *options, check=True):
    return run_script("mogrify_video.py", source, out, "--models", models, "--batch-size", 16, *options, check=check)


# --------------------------------------------------------------------------- extraction

def test_extraction_is_upright_and_undistorted(tmp_path, footage):
    out = tmp_path / "tiles.tfrecord.gz"
    names = ["portrait", "phone", "mirror", "pal", "unicode"]
    run_script("extract_tiles.py", "--out", out, *[a for n in names for a in ("--video", footage[n])],
               "--size", f"{TILE[0]}x{TILE[1]}", "--frame-step", 1, "--crop", "none")
    tiles = read_tiles(out)
    listing = json.loads((tmp_path / "tiles.json").read_text())
    assert {s["name"]: s["count"] for s in listing["sources"]} == {
        "portrait": 10, "phone": 10, "mirror": 10, "pal": 10, "clip ünïcødé 日本": 10}
    views = {"portrait": dict(turn=90), "phone": dict(turn=270), "mirror": dict(mirror=True),
             "pal": dict(sar=64 / 45), "clip ünïcødé 日本": dict(turn=90)}
    for name, view in views.items():
        path = footage["unicode" if name.startswith("clip") else name]
        coded = coded_frames(path, 360 if name == "pal" else 160, 288 if name == "pal" else 90)
        assert len(coded) == 10
        for index, frame in enumerate(coded):
            tile = tiles[(name, index)]
            expected = expected_tile(frame, **view)
            assert difference(tile, expected) < TOLERANCE, (name, index, difference(tile, expected))
            # The comparison has teeth: the stored frame, cut and scaled as if shown as stored, differs.
            if index == 0:
                assert difference(tile, expected_tile(frame)) > 2 * TOLERANCE, name
        if "turn" in view:  # and so does the picture turned the other way
            wrong = expected_tile(coded[0], turn=(view["turn"] + 180) % 360)
            assert difference(tiles[(name, 0)], wrong) > 2 * TOLERANCE, name


def test_frame_step_counts_decoded_frames_at_a_variable_rate(tmp_path, footage):
    out = tmp_path / "vfr.tfrecord.gz"
    run_script("extract_tiles.py", "--out", out, "--video", footage["vfr"], "--size", f"{TILE[0]}x{TILE[1]}",
               "--frame-step", 10, "--crop", "none")
    coded = coded_frames(footage["vfr"], 160, 90)
    assert len(coded) == 35
    tiles = read_tiles(out)
    assert sorted(tiles) == [("vfr", i) for i in range(0, 35, 10)]  # ceil(35 / 10) tiles, by frame number
    for (_, index), tile in tiles.items():
        assert difference(tile, expected_tile(coded[index])) < TOLERANCE, index


def test_borders_are_found_on_the_shown_picture(tmp_path, footage):
    # Bars along the stored top and bottom are at the left and right of the portrait picture.
    barred = make_clip(tmp_path / "barred.mp4", 160, 90, parts=((10, 25),), bars=10)
    portrait = with_metadata(barred, tmp_path / "barred_portrait.mp4", "-display_rotation", 90)
    out = tmp_path / "barred.tfrecord.gz"
    result = run_script("extract_tiles.py", "--out", out, "--video", portrait, "--size", f"{TILE[0]}x{TILE[1]}",
                        "--frame-step", 1)
    assert "cropping borders" in result.stderr, result.stderr
    tiles = read_tiles(out)
    assert len(tiles) == 10
    for index, frame in enumerate(coded_frames(portrait, 160, 90)):
        expected = expected_tile(frame[10:80], turn=90)
        assert difference(tiles[("barred_portrait", index)], expected) < TOLERANCE, index
        if index == 0:
            assert difference(tiles[("barred_portrait", index)], expected_tile(frame, turn=90)) > 2 * TOLERANCE


# --------------------------------------------------------------------------- rendering
# Each mogrify run loads TensorFlow and the models (about 7 s here), so each clip below carries
# several of the cases at once.

def assert_in_sync(source, out, slowest_fps):
    """One output frame per input frame, each at its input frame's time (counted from the first);
    the picture as long as the input's, within a frame; the sound as long as the input's and as
    far from the picture as it was."""
    shown_in, shown = shown_frames(source), shown_frames(out)
    assert len(shown) == len(shown_in)
    start_in, span_in = picture_span(shown_in)
    start, span = picture_span(shown)
    assert span == pytest.approx(span_in, abs=1 / slowest_fps)
    times_in = np.array([f[0] for f in shown_in]) - start_in
    times = np.array([f[0] for f in shown]) - start
    late = np.abs(times - times_in)
    assert late.max() < 0.01, f"frame {late.argmax()} at {times[late.argmax()]:.3f} s, " \
                              f"input's at {times_in[late.argmax()]:.3f} s (from the first frame)"
    (audio_start_in, samples_in), (audio_start, samples) = sound(source), sound(out)
    assert len(samples) / 8000 == pytest.approx(len(samples_in) / 8000, abs=0.1)
    assert start - audio_start == pytest.approx(start_in - audio_start_in, abs=0.03)


def test_portrait_clip_with_a_unicode_name_renders_portrait(tmp_path, footage, models):
    out = tmp_path / "sortie ünïcødé 日本.mp4"
    mogrify(footage["unicode"], out, models)
    shown_in, shown = shown_frames(footage["unicode"]), shown_frames(out)
    assert shown_in[0][2:4] == (90, 160)  # stored 160x90, shown portrait
    assert shown[0][2:4] == (90, 160) and shown[0][4] == 1.0
    assert len(shown) == len(shown_in) == 10
    assert audio_streams(out) == ["aac"]


def test_interlaced_anamorphic_broadcast_renders_square_pixels_in_sync(tmp_path, models):
    # PAL 16:9 at half size (360x288 stored, SAR 64:45, shown 512x288), interlaced, in MPEG-TS,
    # whose clock starts at 1.4 s.
    source = make_clip(tmp_path / "broadcast.ts", 360, 288, parts=((20, 25),), sar="64/45", audio=(440,),
                       video_args=["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                                   "-flags", "+ildct+ilme", "-x264opts", "tff=1"])
    described = describe(source)
    assert "top first" in described and "SAR 64:45" in described
    assert shown_frames(source)[0][0] > 1  # the TS mux delay
    out = tmp_path / "broadcast.mp4"
    mogrify(source, out, models)
    shown = shown_frames(out)
    assert shown[0][2:4] == (512, 288) and shown[0][4] == 1.0
    assert_in_sync(source, out, slowest_fps=25)


def test_variable_rate_with_sound_stays_in_sync(tmp_path, footage, models):
    out = tmp_path / "vfr.mp4"
    mogrify(footage["vfr"], out, models)
    assert audio_streams(out) == ["aac"]
    shown = shown_frames(out)
    assert len(shown) == 35 and picture_span(shown)[1] == pytest.approx(2.0, abs=0.1)
    assert_in_sync(footage["vfr"], out, slowest_fps=10)


def test_stream_starting_late_stays_in_sync(tmp_path, footage, models):
    late = with_metadata(footage["vfr"], tmp_path / "late.mp4", output_options=("-output_ts_offset", 1.5))
    assert shown_frames(late)[0][0] == pytest.approx(1.5, abs=0.01)
    out = tmp_path / "late_out.mp4"
    mogrify(late, out, models)
    assert_in_sync(late, out, slowest_fps=10)


def test_audio_track_picks_the_track_and_pcm_becomes_aac(tmp_path, models):
    source = make_clip(tmp_path / "two.mov", 160, 90, parts=((15, 25),), audio=(440, 880),
                       audio_args=["-c:a", "pcm_s16le"])
    assert audio_streams(source) == ["pcm_s16le", "pcm_s16le"]
    assert pitch(sound(source, 0)[1]) == pytest.approx(440, abs=15)
    assert pitch(sound(source, 1)[1]) == pytest.approx(880, abs=15)
    out = tmp_path / "second.mp4"
    mogrify(source, out, models, "--audio-track", 1)
    assert audio_streams(out) == ["aac"]  # MP4 does not hold PCM
    assert pitch(sound(out)[1]) == pytest.approx(880, abs=15)
    assert len(sound(out)[1]) / 8000 == pytest.approx(0.6, abs=0.1)
    assert len(shown_frames(out)) == 15


def test_missing_audio_track_is_one_error_line(tmp_path, models):
    source = make_clip(tmp_path / "two.mp4", 160, 90, parts=((5, 25),), audio=(440, 880))
    missing = tmp_path / "missing.mp4"
    result = mogrify(source, missing, models, "--audio-track", 5, check=False)
    assert_one_line_error(result, "two.mp4", "5")
    assert not missing.exists() and not list(tmp_path.glob("*missing*"))
