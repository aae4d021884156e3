"""Reading and writing video through the ffmpeg binary that imageio-ffmpeg ships.

ffmpeg does the heavy lifting before frames reach Python: it drops the frames we skip
(`select`), cuts black borders (`crop`, found by `cropdetect`) and scales with area
interpolation, so Python only ever sees small tiles. Every call passes an argument list,
never a shell string, so any file name is safe.
"""
import collections
import dataclasses
import os
import re
import subprocess
import threading
from fractions import Fraction

import numpy as np

from vae.cli import UserError
from vae.images import aspect_crop_box

_ffmpeg = None


def ffmpeg_exe():
    global _ffmpeg
    if _ffmpeg is None:
        import imageio_ffmpeg
        _ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    return _ffmpeg


@dataclasses.dataclass
class VideoInfo:
    path: str
    width: int
    height: int
    fps: Fraction
    duration: float
    has_audio: bool

    @property
    def frames_estimate(self):
        return max(1, round(self.duration * float(self.fps)))


@dataclasses.dataclass(frozen=True)
class Crop:
    """Pixels to cut from each side of a frame."""
    top: int = 0
    left: int = 0
    bottom: int = 0
    right: int = 0

    def size_of(self, width, height):
        return width - self.left - self.right, height - self.top - self.bottom

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


def probe(path):
    """Size, frame rate, duration and audio of a video, or a UserError naming the file."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise UserError(f"{path}: the file is empty")
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path],
                            capture_output=True, text=True, errors="replace")
    text = result.stderr
    video = re.search(r"Stream #\S+.*?: Video: .*?(\d{2,5})x(\d{2,5})", text)
    if not video:
        if "Invalid data" in text or "could not find codec" in text or "Stream #" not in text:
            raise UserError(f"{path}: not a video file ffmpeg can read")
        raise UserError(f"{path}: the file has no video stream")
    line = text[video.start():].splitlines()[0]
    fps_match = re.search(r"([\d.]+) fps", line) or re.search(r"([\d.]+) tbr", line)
    fps = _common_fps(float(fps_match.group(1))) if fps_match else Fraction(25)
    dur = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    duration = int(dur.group(1)) * 3600 + int(dur.group(2)) * 60 + float(dur.group(3)) if dur else 0.0
    has_audio = bool(re.search(r"Stream #\S+.*?: Audio:", text))
    return VideoInfo(path, int(video.group(1)), int(video.group(2)), fps, duration, has_audio)


class _StderrTail(threading.Thread):
    """Drains a process's stderr so it never blocks, keeping the last lines for errors."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.lines = stream, collections.deque(maxlen=20)
        self.start()

    def run(self):
        for raw in iter(self.stream.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip())

    def text(self):
        self.join(timeout=5)
        return "\n".join(self.lines)


def _cropdetect(path, extra_input_args, filters):
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", *extra_input_args, "-i", path, "-an", "-sn",
           "-vf", ",".join(filters + ["cropdetect=limit=24:round=2:reset=0:skip=0"]),
           "-f", "null", "-"]
    result = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    return re.findall(r"crop=(-?\d+):(-?\d+):(-?\d+):(-?\d+)", result.stderr)


def detect_crop(info, min_samples=8):
    """Black borders of a video, found by ffmpeg's cropdetect over the whole clip.

    Keyframes alone are decoded first (fast, spread over the clip); a clip with too few
    keyframes is scanned again on every 5th frame. A bar counts as black when its rows or
    columns stay under 24/255 in every sampled frame, so a dark scene is kept whole.
    """
    found = _cropdetect(info.path, ["-skip_frame", "nokey"], [])
    if len(found) < min_samples:
        found = _cropdetect(info.path, [], [r"select=not(mod(n\,5))"])
    if not found:
        return Crop()
    w, h, x, y = (int(v) for v in found[-1])
    if w < info.width * 0.1 or h < info.height * 0.1 or x < 0 or y < 0:
        return Crop()  # an all-black clip: nothing sensible to cut
    return Crop(top=y, left=x, bottom=info.height - y - h, right=info.width - x - w)


def resolve_crop(info, crop):
    """Turn a --crop value into a Crop that fits the frame."""
    if crop == "auto":
        crop = detect_crop(info)
    elif crop == "none":
        crop = Crop()
    w, h = crop.size_of(info.width, info.height)
    if w < 2 or h < 2:
        raise UserError(f"{info.path}: the crop {crop} leaves nothing of a {info.width}x{info.height} frame")
    return crop


def read_frames(info, size, crop=Crop(), step=1, keep_aspect=False, limit=None, input_args=()):
    """Yield (frame_number, uint8 HxWx3 RGB) for every `step`th frame, cropped and scaled.

    With keep_aspect the cropped frame is centre-cut to the tile's aspect before scaling;
    without it the frame is stretched (mogrify does that and stretches back at the end).
    `input_args` go before `-i` (the decoder: codecs.decoder_args).
    """
    width, height = size
    cw, ch = crop.size_of(info.width, info.height)
    filters = []
    if step > 1:
        filters.append(rf"select=not(mod(n\,{step}))")
    if crop != Crop():
        filters.append(f"crop={cw}:{ch}:{crop.left}:{crop.top}")
    if keep_aspect:
        aw, ah = aspect_crop_box(cw, ch, width, height)
        if (aw, ah) != (cw, ch):
            filters.append(f"crop={aw}:{ah}")
    filters.append(f"scale={width}:{height}:flags=area")
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", *input_args, "-i", info.path,
           "-an", "-sn", "-vf", ",".join(filters), "-fps_mode", "passthrough"]
    if limit is not None:
        cmd += ["-frames:v", str(limit)]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    errors = _StderrTail(proc.stderr)
    frame_bytes = width * height * 3
    count = 0
    try:
        while True:
            frame = np.empty((height, width, 3), np.uint8)
            view = memoryview(frame).cast("B")
            got = 0
            while got < frame_bytes:
                n = proc.stdout.readinto(view[got:])
                if not n:
                    break
                got += n
            if got < frame_bytes:
                break
            yield count * step, frame
            count += 1
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
    if proc.returncode != 0 and count == 0:
        raise UserError(f"{info.path}: ffmpeg could not decode it: {errors.text().splitlines()[-1:] or '?'}")


class VideoWriter:
    """Encode RGB frames to an H.264 MP4 (yuv420p, faststart), optionally with audio and an inset.

    Frames arrive at `frame_size`; ffmpeg scales them to `out_size` (made even), so Python never
    handles full-size frames. `source` names the original video: its first audio track is muxed
    in when `audio` is set, and with `inset` (a Crop of the source) the original frame appears
    small in the bottom-right corner, composed by ffmpeg at full quality. `codec_args` choose the
    encoder (codecs.pick_encoder); without them it is libx264 at `crf` and `preset`.
    """

    def __init__(self, path, frame_size, fps, out_size=None, source=None, audio=False, inset=None,
                 crf=18, preset="medium", codec_args=None):
        fw, fh = frame_size
        ow, oh = out_size or frame_size
        ow, oh = ow - ow % 2, oh - oh % 2
        self.frame_shape = (fh, fw, 3)
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{fw}x{fh}", "-r", str(fps), "-i", "-"]
        if source:
            cmd += ["-i", source]
        main = f"[0:v]setpts=PTS-STARTPTS,scale={ow}:{oh}:flags=bicubic"
        if inset is not None:
            iw, ih = max(2, ow // 4 // 2 * 2), max(2, oh // 4 // 2 * 2)
            margin = max(2, ow // 50 // 2 * 2)  # even: yuv420 overlays land on even pixels
            crop = f"crop=iw-{inset.left + inset.right}:ih-{inset.top + inset.bottom}:{inset.left}:{inset.top}"
            graph = (f"{main}[main];[1:v]setpts=PTS-STARTPTS,{crop},"
                     f"scale={iw}:{ih}:flags=area[small];"
                     f"[main][small]overlay=x=W-w-{margin}:y=H-h-{margin}:eof_action=repeat[v]")
        else:
            graph = f"{main}[v]"
        cmd += ["-filter_complex", graph, "-map", "[v]"]
        if source and audio:
            cmd += ["-map", "1:a:0?", "-c:a", "aac", "-b:a", "192k"]
        cmd += codec_args or ["-c:v", "libx264", "-preset", preset, "-crf", str(crf)]
        cmd += ["-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", path]
        self.path = path
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        self.errors = _StderrTail(self.proc.stderr)

    def write(self, frame):
        if frame.shape != self.frame_shape or frame.dtype != np.uint8:
            raise ValueError(f"expected a uint8 frame of shape {self.frame_shape}, got {frame.dtype} {frame.shape}")
        try:
            self.proc.stdin.write(np.ascontiguousarray(frame).data)
        except BrokenPipeError:
            self.proc.wait()
            raise UserError(f"{self.path}: ffmpeg stopped encoding: {self.errors.text()}")

    def close(self):
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        if self.proc.wait() != 0:
            raise UserError(f"{self.path}: ffmpeg failed to encode: {self.errors.text()}")

    def abort(self):
        self.proc.kill()
        self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path, frames, fps, **kwargs):
    """Encode a list of equally sized RGB frames in one go (previews, synthetic clips)."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with VideoWriter(path, (w, h), fps, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)
