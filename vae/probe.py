"""What a video file holds, as a player shows it: its size after rotation and with square pixels,
frame rate, span and sound tracks (from what `ffmpeg -i` prints), and the black borders to cut.

ffmpeg applies the display rotation (and mirroring) itself when decoding, `scale`+`setsar` make
its pixels square and `bwdif` deinterlaces: display_filters() are those filters.
"""
import dataclasses
import os
import re
import subprocess
from fractions import Fraction
from typing import Optional

from vae import ffmpeg
from vae.cli import UserError

@dataclasses.dataclass
class VideoInfo:
    """A video as a player shows it. `width` and `height` are the displayed size: rotation
    applied and pixels made square. Times are in seconds on the file's own clock."""
    path: str
    coded_width: int
    coded_height: int
    sar: Fraction = Fraction(1)
    rotation: int = 0  # clockwise degrees a player turns the stored picture (a mirroring matrix may
    # read as 180: only the shown size depends on it, ffmpeg's autorotation does the turning)
    fps: Fraction = Fraction(25)
    duration: float = 0.0
    start: float = 0.0
    audio_codecs: tuple = ()
    interlaced: bool = False
    frames: Optional[int] = None  # exact count when known (see count_frames)

    @property
    def width(self):
        return self.display_size[0]

    @property
    def height(self):
        return self.display_size[1]

    @property
    def display_size(self):
        w, h = max(1, round(self.coded_width * self.sar)), self.coded_height
        return (h, w) if self.rotation in (90, 270) else (w, h)

    @property
    def has_audio(self):
        return bool(self.audio_codecs)

    @property
    def frames_estimate(self):
        return self.frames or max(1, round(self.duration * float(self.fps)))

    def display_filters(self):
        """Filters that turn decoded frames (already rotated by ffmpeg) into the shown picture."""
        # bwdif touches only frames flagged interlaced: some files (DV, for one) never say so up front.
        filters = ["bwdif=mode=send_frame:parity=auto:deint=interlaced"]
        if self.sar != 1:
            w, h = self.display_size
            filters += [f"scale={w}:{h}:flags=bicubic", "setsar=1"]
        return filters


@dataclasses.dataclass(frozen=True)
class Crop:
    """Pixels to cut from each side of a frame."""
    top: int = 0
    left: int = 0
    bottom: int = 0
    right: int = 0

    def size_of(self, width, height):
        return width - self.left - self.right, height - self.top - self.bottom

    def filter(self, width, height):
        w, h = self.size_of(width, height)
        return f"crop={w}:{h}:{self.left}:{self.top}"

    def __str__(self):
        return f"{self.top},{self.left},{self.bottom},{self.right}"


def parse_crop(text):
    """`auto`, `none` or `TOP,LEFT,BOTTOM,RIGHT`: the contract's --crop values."""
    if text in ("auto", "none"):
        return text
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or min(values) < 0:
        raise UserError(f"--crop must be auto, none or TOP,LEFT,BOTTOM,RIGHT pixel counts, not {text!r}")
    return Crop(*values)


def _common_fps(value):
    """ffmpeg prints 29.97 for 30000/1001; recover the exact NTSC rates."""
    for base in (24, 30, 60, 120):
        exact = Fraction(base * 1000, 1001)
        if abs(value - float(exact)) < 0.006:
            return exact
    return Fraction(value).limit_denominator(1000)


def parse_probe(path, text):
    """A VideoInfo from what `ffmpeg -i FILE` prints, or a UserError naming the file.

    Pure, so that it can be tested on saved ffmpeg outputs: the first video stream's coded size,
    pixel aspect (`[SAR a:b ...]`), field order (`top first`, `bottom coded first`...), frame
    rate, its display matrix (`rotation of -90.00 degrees`), the file's duration and start, and
    the codec of every audio stream in order.
    """
    lines = text.splitlines()
    video_at = next((i for i, line in enumerate(lines) if re.search(r"Stream #\S+.*?: Video: ", line)), None)
    if video_at is None:
        if "Invalid data" in text or "could not find codec" in text or "Stream #" not in text:
            raise UserError(f"{path}: not a video file ffmpeg can read")
        raise UserError(f"{path}: the file has no video stream")
    line = lines[video_at]
    size = re.search(r", (\d{1,5})x(\d{1,5})(?=[ ,\[]|$)", line)
    if not size:
        raise UserError(f"{path}: ffmpeg reports no picture size for its video stream")
    sar = re.search(r"SAR (\d+):(\d+)", line)
    sar = Fraction(int(sar.group(1)), int(sar.group(2))) if sar and int(sar.group(1)) and int(sar.group(2)) else Fraction(1)
    fps = re.search(r"([\d.]+) fps", line) or re.search(r"([\d.]+) tbr", line)
    pix = re.search(r"Video: [^,]+, \w+\(([^)]*)\)", line)
    interlaced = bool(pix and re.search(r"\b(top|bottom)( coded)? first", pix.group(1)))
    rotation = 0
    for follow in lines[video_at + 1:]:
        if re.match(r"\s*Stream #", follow):
            break
        turn = re.search(r"rotation of (-?[\d.]+) degrees", follow)
        if turn:  # ffmpeg reports the matrix's counter-clockwise angle
            rotation = round(-float(turn.group(1))) % 360
    dur = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else 0.0
    start = re.search(r"Duration: .*?start: (-?[\d.]+)", text)
    audio = tuple(m.group(1) for m in re.finditer(r"Stream #\S+.*?: Audio: (\w+)", text))
    return VideoInfo(path, int(size.group(1)), int(size.group(2)), sar, rotation,
                     _common_fps(float(fps.group(1))) if fps else Fraction(25), duration,
                     float(start.group(1)) if start else 0.0, audio, interlaced)


def probe(path):
    """The video as it is shown (see VideoInfo), or a UserError naming the file."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise UserError(f"{path}: the file is empty")
    result = subprocess.run([ffmpeg.exe(), "-hide_banner", "-nostdin", "-i", path],
                            capture_output=True, text=True, errors="replace")
    return parse_probe(path, result.stderr)


def count_frames(info):
    """The exact frame count from the container's packets (no decoding), or None."""
    result = subprocess.run([ffmpeg.exe(), "-hide_banner", "-nostdin", "-i", info.path, "-map", "0:v:0",
                             "-c", "copy", "-f", "null", "-"], capture_output=True, text=True, errors="replace")
    counts = re.findall(r"frame=\s*(\d+)", result.stderr)
    return int(counts[-1]) if result.returncode == 0 and counts and int(counts[-1]) > 0 else None


def _cropdetect(info, extra_input_args, filters):
    cmd = [ffmpeg.exe(), "-hide_banner", "-nostdin", *extra_input_args, "-i", info.path, "-an", "-sn", "-dn",
           "-vf", ",".join(info.display_filters() + filters + ["cropdetect=limit=24:round=2:reset=0:skip=0"]),
           "-f", "null", "-"]
    result = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    return re.findall(r"crop=(-?\d+):(-?\d+):(-?\d+):(-?\d+)", result.stderr)


def detect_crop(info, min_samples=8, start=None, duration=None):
    """Black borders of the shown picture, found by ffmpeg's cropdetect over the whole clip.

    Keyframes alone are decoded first (fast, spread over the clip); a clip with too few
    keyframes is scanned again on every 5th frame. A bar counts as black when its rows or
    columns stay under 24/255 in every sampled frame, so a dark scene is kept whole. With
    `start` and `duration` only that span is looked at (a segment of a long film starts fast).
    """
    span = span_args(start, duration)
    short = duration is not None and duration * float(info.fps) < 50 * min_samples  # too few keyframes
    found = [] if short else _cropdetect(info, ["-skip_frame", "nokey", *span], [])
    if len(found) < min_samples:
        found = _cropdetect(info, span, [r"select=not(mod(n\,5))"])
    if not found:
        return Crop()
    w, h, x, y = (int(v) for v in found[-1])
    if w < info.width * 0.1 or h < info.height * 0.1 or x < 0 or y < 0:
        return Crop()  # an all-black clip: nothing sensible to cut
    return Crop(top=y, left=x, bottom=info.height - y - h, right=info.width - x - w)


def resolve_crop(info, crop, start=None, duration=None):
    """Turn a --crop value into a Crop that fits the shown frame (auto: found in the span)."""
    if crop == "auto":
        crop = detect_crop(info, start=start, duration=duration)
    elif crop == "none":
        crop = Crop()
    w, h = crop.size_of(info.width, info.height)
    if w < 2 or h < 2:
        raise UserError(f"{info.path}: the crop {crop} leaves nothing of a {info.width}x{info.height} frame")
    return crop


def span_args(start, duration):
    """Input options for a span: `start` counts from the file's start (ffmpeg adds it), and as
    an input option ffmpeg seeks there and then decodes exactly from that time on."""
    args = []
    if start:
        args += ["-ss", f"{start:.6f}"]
    if duration:
        args += ["-t", f"{duration:.6f}"]
    return args


