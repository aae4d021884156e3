"""probe.parse_probe on saved `ffmpeg -hide_banner -i FILE` outputs (tests/fixtures/probe).

Each text was saved from a small file made with the bundled ffmpeg; the expected values below
come from how that file was made, not from the parser:

    base.mp4             testsrc2 160x90, 25 fps, 1 s, x264 + AAC (mono 48 kHz)
    rotate90_mp4         -display_rotation 90 -i base.mp4 -c copy   (90 degrees counter-clockwise)
    rotate270_mp4        -display_rotation 270 ...                  (a phone filmed upright)
    rotate180_mp4        -display_rotation 180 ...
    hflip_mp4            -display_hflip ...
    rotate90_hflip_mp4   -display_rotation 90 -display_hflip ...
    pal_anamorphic_mp4   720x576, setsar=64/45 (shown 1024x576), no audio
    pal_rotate90_mp4     -display_rotation 90 on pal_anamorphic.mp4 (shown 576x1024)
    prores_anamorphic_mov  360x288 setsar=64/45 ProRes 4:2:2 10-bit (SAR printed after a comma)
    dv_pal_avi           PAL DV 720x576 SAR 64:45 with PCM sound
    interlaced_ts        x264 -flags +ildct+ilme -x264opts tff=1 in MPEG-TS (start 1.4 s: the TS mux delay)
    pcm_avi              MJPEG + pcm_s16le in AVI
    two_audio_mkv        x264 + AAC (440 Hz) + MP3 (880 Hz)
    offset_mp4/_ts       -output_ts_offset 1.5 -c copy of base.mp4
    vfr_mp4              concat of 1 s at 25 fps and 1 s at 10 fps, -fps_mode vfr (35 frames)
    prores_mov           ProRes yuv422p10le; vp9_webm VP9 + Opus; hevc_mkv x265; gif_gif 10 fps GIF
    audio_only_wav       a WAV with no picture; garbage_mp4 random bytes
"""
import os
from fractions import Fraction

import pytest

from vae import probe
from vae.cli import UserError

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "probe")


def parse(name):
    with open(os.path.join(FIXTURES, name + ".txt"), encoding="utf-8") as f:
        return probe.parse_probe(name, f.read())


AAC = ("aac",)
# name: (coded size, shown size, clockwise rotation or None when ffmpeg's text cannot tell,
#        pixel aspect, interlaced, audio codecs, start, duration, fps)
EXPECTED = {
    "rotate90_mp4": ((160, 90), (90, 160), 270, 1, False, AAC, 0.0, 1.0, 25),
    "rotate270_mp4": ((160, 90), (90, 160), 90, 1, False, AAC, 0.0, 1.0, 25),
    "rotate180_mp4": ((160, 90), (160, 90), 180, 1, False, AAC, 0.0, 1.0, 25),
    # ffmpeg prints a horizontal mirror as "rotation of -180.00 degrees" (a mirror is a half turn
    # and a vertical flip): the text cannot tell them apart, only the shown size is certain.
    "hflip_mp4": ((160, 90), (160, 90), None, 1, False, AAC, 0.0, 1.0, 25),
    "rotate90_hflip_mp4": ((160, 90), (90, 160), None, 1, False, AAC, 0.0, 1.0, 25),
    "pal_anamorphic_mp4": ((720, 576), (1024, 576), 0, Fraction(64, 45), False, (), 0.0, 0.2, 25),
    "pal_rotate90_mp4": ((720, 576), (576, 1024), 270, Fraction(64, 45), False, (), 0.0, 0.2, 25),
    "prores_anamorphic_mov": ((360, 288), (512, 288), 0, Fraction(64, 45), False, (), 0.0, 0.2, 25),
    "dv_pal_avi": ((720, 576), (1024, 576), 0, Fraction(64, 45), None, ("pcm_s16le",), 0.0, 0.2, 25),
    "interlaced_ts": ((720, 576), (720, 576), 0, 1, True, (), 1.4, 0.4, 25),
    "pcm_avi": ((160, 90), (160, 90), 0, 1, False, ("pcm_s16le",), 0.0, 1.0, 25),
    "two_audio_mkv": ((160, 90), (160, 90), 0, 1, False, ("aac", "mp3"), 0.0, 1.03, 25),
    "offset_mp4": ((160, 90), (160, 90), 0, 1, False, AAC, 1.5, 1.02, 25),
    "offset_ts": ((160, 90), (160, 90), 0, 1, False, AAC, 2.9, 1.02, 25),
    "vfr_mp4": ((160, 90), (160, 90), 0, 1, False, (), 0.0, 2.0, 17.5),
    "prores_mov": ((160, 90), (160, 90), 0, 1, False, (), 0.0, 1.0, 25),
    "vp9_webm": ((160, 90), (160, 90), 0, 1, False, ("opus",), 0.0, 1.01, 25),
    "hevc_mkv": ((160, 90), (160, 90), 0, 1, False, (), 0.0, 1.0, 25),
    "gif_gif": ((160, 90), (160, 90), 0, 1, False, (), 0.0, 1.0, 10),
}


def test_every_fixture_is_covered():
    saved = {name[:-4] for name in os.listdir(FIXTURES) if name.endswith(".txt")}
    assert saved == set(EXPECTED) | {"audio_only_wav", "garbage_mp4"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parse_probe(name):
    coded, shown, rotation, sar, interlaced, audio, start, duration, fps = EXPECTED[name]
    info = parse(name)
    assert info.path == name
    assert (info.coded_width, info.coded_height) == coded
    assert info.display_size == (info.width, info.height) == shown
    if rotation is not None:
        assert info.rotation == rotation
    assert info.rotation in (0, 90, 180, 270)
    assert info.sar == sar
    if interlaced is not None:
        assert info.interlaced is interlaced
    assert info.audio_codecs == audio
    assert info.has_audio == bool(audio)
    # The start counts from the earliest stream (AAC priming puts the sound 21 ms before the picture).
    assert info.start == pytest.approx(start, abs=0.03)
    assert info.duration == pytest.approx(duration, abs=0.005)
    assert float(info.fps) == pytest.approx(fps, abs=0.01)


def test_display_filters_make_pixels_square_and_deinterlace():
    anamorphic = parse("pal_anamorphic_mp4").display_filters()
    assert any(f.startswith("scale=1024:576") for f in anamorphic) and "setsar=1" in anamorphic
    assert any(f.startswith("scale=576:1024") for f in parse("pal_rotate90_mp4").display_filters())
    assert any(f.startswith("bwdif") for f in parse("interlaced_ts").display_filters())
    # ffmpeg's autorotation turns the picture; bwdif passes progressive frames through untouched.
    assert [f for f in parse("rotate90_mp4").display_filters() if not f.startswith("bwdif")] == []


def test_variable_rate_estimate_uses_the_average_rate():
    # 25 frames at 25 fps and 10 at 10 fps: ffmpeg says "17.50 fps, 50 tbr"; tbr would say 100 frames.
    assert parse("vfr_mp4").frames_estimate == 35


def test_pal_dv_is_deinterlaced():
    # ffmpeg -i prints PAL DV's field order only after decoding (showinfo says i:B), so the
    # deinterlacer is always in place and acts on the frames flagged interlaced.
    assert not parse("dv_pal_avi").interlaced
    assert any(f.startswith("bwdif") and "deint=interlaced" in f for f in parse("dv_pal_avi").display_filters())


@pytest.mark.parametrize("name, fragment", [("garbage_mp4", "not a video"), ("audio_only_wav", "no video stream")])
def test_unusable_files_are_user_errors(name, fragment):
    with pytest.raises(UserError) as caught:
        parse(name)
    assert name in str(caught.value) and fragment in str(caught.value)


@pytest.mark.parametrize("text", ["", "clip.mp4: No such file or directory\n", "garbage\x00\x01 Stream #0:0: Video:"])
def test_bad_text_is_a_user_error(text):
    with pytest.raises(UserError) as caught:
        probe.parse_probe("clip ünïcødé.mp4", text)
    assert "clip ünïcødé.mp4" in str(caught.value)
