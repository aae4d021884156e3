"""Reading and writing video through the ffmpeg binary that imageio-ffmpeg ships.

A video is taken as a player shows it: ffmpeg applies the display rotation (and mirroring)
itself, `scale`+`setsar` make its pixels square, `bwdif` deinterlaces, and every frame keeps
its own timestamp (`-fps_mode passthrough`, `-copyts`), so variable frame rates and streams
that do not start at zero stay in time with their sound. ffmpeg also drops the frames we skip
(`select`), cuts black borders (`crop`, found by `cropdetect` on the shown picture) and scales
with area interpolation before frames reach Python. Every call passes an argument list, never
a shell string, so any file name is safe.
"""
import collections
import dataclasses
import os
import queue
import re
import struct
import subprocess
import threading
from fractions import Fraction
from typing import NamedTuple, Optional

import numpy as np

from vae.cli import UserError
from vae.images import aspect_crop_box

_ffmpeg = None
# Audio codecs an MP4 holds as they are; anything else (PCM, for one) becomes AAC.
MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}


def ffmpeg_exe():
    global _ffmpeg
    if _ffmpeg is None:
        import imageio_ffmpeg  # only when ffmpeg is first needed: its import looks for the binary
        _ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    return _ffmpeg


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
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", path],
                            capture_output=True, text=True, errors="replace")
    return parse_probe(path, result.stderr)


def count_frames(info):
    """The exact frame count from the container's packets (no decoding), or None."""
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", info.path, "-map", "0:v:0",
                             "-c", "copy", "-f", "null", "-"], capture_output=True, text=True, errors="replace")
    counts = re.findall(r"frame=\s*(\d+)", result.stderr)
    return int(counts[-1]) if result.returncode == 0 and counts and int(counts[-1]) > 0 else None


class _StderrTail(threading.Thread):
    """Drains a process's stderr so it never blocks, keeping the last lines for errors and
    handing the frame timestamps that `showinfo` prints to `stamps`."""
    SHOWINFO = re.compile(r"\bn:\s*\d+\s+pts:\s*(-?\d+)\s.*?duration:\s*(-?\d+)")
    TIME_BASE = re.compile(r"config in time_base: (\d+)/(\d+)")

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.lines = stream, collections.deque(maxlen=20)
        self.stamps, self.time_base = queue.Queue(), Fraction(1, 1000000)
        self.start()

    def run(self):
        for raw in iter(self.stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            stamp = self.SHOWINFO.search(line)
            if stamp:
                pts, duration = (int(v) for v in stamp.groups())
                self.stamps.put((float(pts * self.time_base), max(0.0, float(duration * self.time_base))))
                continue
            base = self.TIME_BASE.search(line)
            if base and int(base.group(1)) and int(base.group(2)):
                self.time_base = Fraction(int(base.group(1)), int(base.group(2)))
            elif "Parsed_showinfo" not in line:
                self.lines.append(line)
        self.stamps.put(None)

    def text(self):
        self.join(timeout=5)
        return "\n".join(self.lines)


def _cropdetect(info, extra_input_args, filters):
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", *extra_input_args, "-i", info.path, "-an", "-sn", "-dn",
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
    span = _seek_args(start, duration)
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


class Frame(NamedTuple):
    index: int  # the decoded frame's number (counting every frame, kept or not)
    image: np.ndarray  # uint8 HxWx3 RGB at the requested size
    time: float  # presentation time in seconds on the file's clock
    duration: float  # how long it is shown, in seconds (0 when ffmpeg does not know)
    full: Optional[np.ndarray] = None  # the cropped frame at its shown size, when asked for


def _seek_args(start, duration):
    """Input options for a span: `start` counts from the file's start (ffmpeg adds it), and as
    an input option ffmpeg seeks there and then decodes exactly from that time on."""
    args = []
    if start:
        args += ["-ss", f"{start:.6f}"]
    if duration:
        args += ["-t", f"{duration:.6f}"]
    return args


def _read_exactly(stream, shape):
    frame = np.empty(shape, np.uint8)
    view, got = memoryview(frame).cast("B"), 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            return None
        got += n
    return frame


def read_frames(info, size, crop=Crop(), step=1, keep_aspect=False, limit=None, start=None,
                duration=None, full=0, input_args=()):
    """Yield a Frame for every `step`th frame of the shown picture, cropped and scaled to `size`.

    With keep_aspect the cropped frame is centre-cut to the tile's aspect before scaling;
    without it the frame is stretched (mogrify does that and stretches back at the end).
    `start` and `duration` (seconds from the file's start) decode only that span. With `full`
    = k, every k-th Frame also carries the cropped frame at its shown size, from the same decode
    (a second output of the one ffmpeg process, on its own pipe). `input_args` go before `-i`
    (the decoder: codecs.decoder_args).
    """
    width, height = size
    cw, ch = crop.size_of(info.width, info.height)
    filters = info.display_filters()
    if step > 1:
        filters.append(rf"select=not(mod(n\,{step}))")
    if crop != Crop():
        filters.append(crop.filter(info.width, info.height))
    tile = []
    if keep_aspect:
        aw, ah = aspect_crop_box(cw, ch, width, height)
        if (aw, ah) != (cw, ch):
            tile.append(f"crop={aw}:{ah}")
    tile += [f"scale={width}:{height}:flags=area", "showinfo=checksum=0"]
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "info", "-nostats", "-copyts",
           *input_args, *_seek_args(start, duration), "-i", info.path, "-an", "-sn", "-dn"]
    out_args = ["-fps_mode", "passthrough", *(["-frames:v", str(limit)] if limit is not None else []),
                "-f", "rawvideo", "-pix_fmt", "rgb24"]
    pass_fds, full_read = (), None
    if full:
        full_read, full_write = os.pipe()
        sample = [rf"select=not(mod(n\,{full}))"] if full > 1 else []
        graph = (f"[0:v]{','.join(filters) or 'null'},split[t][f];[t]{','.join(tile)}[tile];"
                 f"[f]{','.join(sample) or 'null'}[full]")
        cmd += ["-filter_complex", graph, "-map", "[tile]", *out_args, "pipe:1",
                "-map", "[full]", *out_args, f"pipe:{full_write}"]
        pass_fds = (full_write,)
    else:
        cmd += ["-vf", ",".join(filters + tile), *out_args, "pipe:1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, pass_fds=pass_fds)
    full_stream = None
    if full:
        os.close(full_write)
        full_stream = open(full_read, "rb", buffering=0)
    errors = _StderrTail(proc.stderr)
    count = 0
    try:
        while True:
            image = _read_exactly(proc.stdout, (height, width, 3))
            if image is None:
                break
            big = None
            if full and count % full == 0:
                big = _read_exactly(full_stream, (ch, cw, 3))
                if big is None:
                    break
            stamp = errors.stamps.get(timeout=60)
            if stamp is None:
                break
            yield Frame(count * step, image, stamp[0], stamp[1], big)
            count += 1
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
        if full_stream:
            full_stream.close()
    if proc.returncode != 0 and count == 0:
        raise UserError(f"{info.path}: ffmpeg could not decode it: {errors.text().splitlines()[-1:] or '?'}")


class _Matroska:
    """Just enough Matroska to hand ffmpeg raw RGB frames with their own timestamps and
    durations over a pipe (rawvideo alone has no timestamps, so a variable rate would be lost)."""
    TIME_SCALE_NS = 1000  # timestamps in microseconds

    @staticmethod
    def _size(n):
        for length in range(1, 9):
            if n < (1 << (7 * length)) - 1:
                return (n | (1 << (7 * length))).to_bytes(length, "big")
        raise ValueError(n)

    @classmethod
    def element(cls, element_id, data):
        if isinstance(data, int):
            data = data.to_bytes(max(1, (data.bit_length() + 7) // 8), "big")
        elif isinstance(data, str):
            data = data.encode()
        return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big") + cls._size(len(data)) + data

    @classmethod
    def header(cls, width, height):
        e = cls.element
        ebml = e(0x1A45DFA3, e(0x4286, 1) + e(0x42F7, 1) + e(0x42F2, 4) + e(0x42F3, 8) + e(0x4282, "matroska")
                 + e(0x4287, 4) + e(0x4285, 2))
        info = e(0x1549A966, e(0x2AD7B1, cls.TIME_SCALE_NS) + e(0x4D80, "vae") + e(0x5741, "vae"))
        picture = e(0xE0, e(0xB0, width) + e(0xBA, height) + e(0x2EB524, b"RGB\x18"))
        track = e(0xAE, e(0xD7, 1) + e(0x73C5, 1) + e(0x83, 1) + e(0x9C, 0) + e(0x86, "V_UNCOMPRESSED") + picture)
        segment = bytes.fromhex("18538067") + b"\x01" + b"\xff" * 7  # of unknown size: streamed
        return ebml + segment + info + e(0x1654AE6B, track)

    @classmethod
    def frame_prefix(cls, ticks, duration_ticks, size):
        """Everything of one frame's cluster up to its pixels: ffmpeg reads the pixels next."""
        block_head = b"\x81" + struct.pack(">hB", 0, 0)
        block = 0xA1.to_bytes(1, "big") + cls._size(len(block_head) + size) + block_head
        group_rest = cls.element(0x9B, max(1, duration_ticks))
        group = 0xA0.to_bytes(1, "big") + cls._size(len(block) + size + len(group_rest))
        timestamp = cls.element(0xE7, ticks)
        cluster_size = len(timestamp) + len(group) + len(block) + size + len(group_rest)
        head = 0x1F43B675.to_bytes(4, "big") + cls._size(cluster_size) + timestamp + group + block
        return head, group_rest


class VideoWriter:
    """Encode RGB frames to an H.264 MP4 (yuv420p, even size, faststart), each at its own time.

    Frames arrive at `frame_size`; ffmpeg scales them to `out_size` (made even), so Python need
    not handle full-size frames. `source` is the VideoInfo of the original: its audio track
    `audio_track` is muxed in (copied when MP4 holds its codec, else AAC), and with `inset` (a
    Crop of the source) the original frame appears small in the bottom-right corner, composed by
    ffmpeg at full quality and matched to each frame by time. `span` = (start, duration) cuts the
    source's sound and inset to a segment. Times given to write() are on the source's clock;
    the output starts at zero.
    """
    OFFSET = 10.0  # seconds added to every timestamp in the pipe: Matroska's clock starts at zero

    def __init__(self, path, frame_size, fps=25, out_size=None, source=None, audio_track=None, inset=None,
                 crf=18, preset="medium", span=(None, None), codec_args=None):
        fw, fh = frame_size
        ow, oh = out_size or frame_size
        ow, oh = ow - ow % 2, oh - oh % 2
        self.frame_shape, self.fps, self.written = (fh, fw, 3), fps, 0
        start, duration = span
        origin = (source.start if source else 0.0) + (start or 0.0)
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-copyts",
               "-itsoffset", f"{-self.OFFSET}", "-f", "matroska", "-i", "-"]
        if source:
            cmd += [*_seek_args(start, duration), "-i", source.path]
        main = f"[0:v]scale={ow}:{oh}:flags=bicubic,setsar=1"
        if inset is not None:
            iw, ih = max(2, ow // 4 // 2 * 2), max(2, oh // 4 // 2 * 2)
            margin = max(2, ow // 50 // 2 * 2)  # even: yuv420 overlays land on even pixels
            shown = ",".join(source.display_filters() + [inset.filter(source.width, source.height)])
            graph = (f"{main}[main];[1:v]{shown},scale={iw}:{ih}:flags=area[small];"
                     f"[main][small]overlay=x=W-w-{margin}:y=H-h-{margin}:eof_action=repeat"
                     f":ts_sync_mode=nearest[v]")
        else:
            graph = f"{main}[v]"
        cmd += ["-filter_complex", graph, "-map", "[v]", "-fps_mode", "passthrough"]
        if source and audio_track is not None:
            if not 0 <= audio_track < len(source.audio_codecs):
                raise UserError(f"{source.path}: has no audio track {audio_track} "
                                f"(it has {len(source.audio_codecs)})")
            codec = source.audio_codecs[audio_track]
            cmd += ["-map", f"1:a:{audio_track}"]
            cmd += ["-c:a", "copy"] if codec in MP4_AUDIO else ["-c:a", "aac", "-b:a", "192k"]
        # A fine encoder clock: ffmpeg would otherwise round each frame's time to the guessed rate.
        cmd += ["-output_ts_offset", f"{-origin:.6f}", "-enc_time_base:v", "1/90000"]
        cmd += codec_args or ["-c:v", "libx264", "-preset", preset, "-crf", str(crf)]
        cmd += ["-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", path]
        self.path = path
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        self.errors = _StderrTail(self.proc.stderr)
        self._send(_Matroska.header(fw, fh))

    def _send(self, *chunks):
        try:
            for chunk in chunks:
                self.proc.stdin.write(chunk)
        except BrokenPipeError:
            self.proc.wait()
            raise UserError(f"{self.path}: ffmpeg stopped encoding: {self.errors.text()}")

    def write(self, frame, time=None, duration=None):
        """One frame shown from `time` (seconds on the source's clock; default: the next frame
        at `fps`) for `duration` seconds."""
        if frame.shape != self.frame_shape or frame.dtype != np.uint8:
            raise ValueError(f"expected a uint8 frame of shape {self.frame_shape}, got {frame.dtype} {frame.shape}")
        if time is None:
            time = self.written / float(self.fps)
        if not duration:
            duration = 1 / float(self.fps)
        ticks = round((time + self.OFFSET) * 1e9 / _Matroska.TIME_SCALE_NS)
        head, tail = _Matroska.frame_prefix(ticks, round(duration * 1e9 / _Matroska.TIME_SCALE_NS), frame.nbytes)
        self._send(head, np.ascontiguousarray(frame).data, tail)
        self.written += 1

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


def write_video(path, frames, fps, source=None, audio=False, **kwargs):
    """Encode a list of equally sized RGB frames at a constant rate (previews, synthetic clips);
    `source` here is a sound file to mux in."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with VideoWriter(path, (w, h), fps, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)
    if source and audio:
        _mux_sound(path, source)


def _mux_sound(path, sound):
    tmp = path + ".mux.mp4"
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", path,
                             "-i", sound, "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac",
                             "-b:a", "192k", "-shortest", "-movflags", "+faststart", tmp],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"{path}: ffmpeg could not add the sound: {result.stderr.strip()[-300:]}")
    os.replace(tmp, path)
