"""Where a render's frames go. A sink takes styled uint8 RGB frames with their times:

    sink.write(frame, time, duration)   # seconds on the source's clock
    sink.close()                        # finish the output; its error as one line
    sink.abort()                        # after a failure or Ctrl-C: leave nothing half-written

A file is whole or absent (written under a temporary name, renamed at the end), except a live
recording, which is playable at every moment under its final name. A new way out is one class here.
"""
import os
import re
import cv2

from vae import encode
from vae.cli import UserError, atomic_path
from vae.decode import SOUND_BYTES, SOUND_CHANNELS, SOUND_RATE
from vae.sources import scheme

OUTPUT_FORMATS = {"udp": "mpegts", "srt": "mpegts", "tcp": "mpegts", "rtmp": "flv", "rtmps": "flv"}
# A recording written as it goes: each fragment (MP4) or packet (TS) is complete once written.
FILE_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".ts": "mpegts", ".m2ts": "mpegts"}
SOUND_AHEAD = 0.1  # seconds of sound handed to the encoder ahead of the picture it goes with
SOUND_GAP_SECONDS = 20  # a longer gap in the sound is not filled: the sound starts again at its time


class _InPlace:
    """A file path written under a temporary name beside it: renamed into place by done(),
    removed by undo()."""

    def __init__(self, path, suffix):
        self._context = atomic_path(path, suffix=suffix)
        self.tmp = self._context.__enter__()
        self._open = True

    def done(self):
        if self._open:
            self._open = False
            self._context.__exit__(None, None, None)

    def undo(self):
        if self._open:
            self._open = False
            self._context.__exit__(RuntimeError, RuntimeError("aborted"), None)  # removes it


class Mp4Sink:
    """An H.264 MP4 with the source's sound (and inset), whole or absent (encode.mp4_encoder)."""

    def __init__(self, path, frame_size, fps, out_size, **encoder_options):
        self.fps = float(fps)
        self.place = _InPlace(path, ".mp4")
        try:
            self.encoder = encode.mp4_encoder(self.place.tmp, frame_size, out_size, **encoder_options)
        except BaseException:
            self.place.undo()
            raise
        self.encoder.name = path

    def write(self, frame, time, duration):
        self.encoder.picture(frame, time, duration or 1 / self.fps)

    def close(self):
        self.encoder.finish()
        self.place.done()

    def abort(self):
        self.encoder.kill()
        self.place.undo()


class ImageSink:
    """A still image (.png or .jpg) of the one frame written, at `size` (scaled bicubic, as
    ffmpeg scales a video's frames, when the frame is another size)."""

    def __init__(self, path, size):
        self.path, self.size, self.frame = path, tuple(size), None

    def write(self, frame, time, duration):
        if frame.shape[1::-1] != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_CUBIC)
        self.frame = frame

    def close(self):
        extension = os.path.splitext(self.path)[1].lower()
        ok, data = cv2.imencode(extension, cv2.cvtColor(self.frame, cv2.COLOR_RGB2BGR))
        if not ok:
            raise UserError(f"{self.path}: OpenCV could not encode it")
        with atomic_path(self.path, suffix=extension) as tmp, open(tmp, "wb") as f:
            f.write(data.tobytes())

    def abort(self):
        self.frame = None


def live_format(target):
    """ffmpeg's muxer for a live output, or a UserError saying what is possible."""
    if re.match(r"^/dev/video\d+$", target):
        return "v4l2"  # a virtual camera (v4l2loopback) that video calls and OBS open
    kind = scheme(target)
    if kind:
        if kind not in OUTPUT_FORMATS:
            raise UserError(f"{target}: a live output is a udp, srt, tcp or rtmp URL, a /dev/videoN device, "
                            "or an .mp4 or .ts file")
        return OUTPUT_FORMATS[kind]
    extension = os.path.splitext(target)[1].lower()
    if extension not in FILE_FORMATS:
        raise UserError(f"{target}: a live recording is an .mp4, .mov or .ts file (written as it goes)")
    return FILE_FORMATS[extension]


class LiveSink:
    """A stream URL, a video device or a growing recording, encoded with low latency; the sound (a
    sources.LiveSound, or None) goes in the same pipe, each block at its own time, so picture and
    sound stay together whatever frames were dropped. abort() finishes it too: what was written
    stays playable."""

    def __init__(self, target, frame_size, out_size, sound=None, codec_args=None, crf=18, preset="veryfast"):
        fmt = live_format(target)
        if fmt == "v4l2":
            sound = None  # a camera device carries no sound
        ow, oh = out_size
        ow, oh = ow - ow % 2, oh - oh % 2
        self.sound = sound
        self.sound_from = None  # the first frame's time: sound before it is not written
        self.sound_start, self.sound_samples = None, 0  # what was written: from when, how long
        self.last_end = None
        args = ["-map", "0:v", "-vf", f"scale={ow}:{oh}:flags=bicubic,setsar=1", "-fps_mode", "passthrough",
                "-enc_time_base:v", "1/90000",
                # a v4l2 device takes raw frames, which every camera reader knows
                *(["-c:v", "rawvideo"] if fmt == "v4l2" else encode.live_codec_args(codec_args, crf, preset)),
                "-pix_fmt", "yuv420p"]
        if sound is not None:
            args += ["-map", "0:a", "-c:a", "aac", "-b:a", "160k"]
        args += ["-flush_packets", "1"]
        if fmt in ("mp4", "mov"):
            args += ["-movflags", "+frag_keyframe+empty_moov+default_base_moof"]
        if fmt == "mpegts":
            args += ["-muxdelay", "0", "-muxpreload", "0"]
        url = target
        if scheme(target) == "udp" and "pkt_size" not in target:
            url += ("&" if "?" in target else "?") + "pkt_size=1316"  # whole TS packets per datagram
        args += ["-f", fmt, url]
        self.encoder = encode.Encoder(target, frame_size, args, sound_rate=SOUND_RATE if sound is not None else None,
                                      sound_channels=SOUND_CHANNELS)

    def _sound_until(self, until):
        for block in self.sound.take_until(until):
            if block.time >= self.sound_from - 0.05:
                self._sound(block.time, block.data)

    def _sound(self, at, data):
        """Back to back: sound lost on the way becomes silence and sound that overlaps what was
        written is cut, so that a player counting samples (most do) hears each at its own time."""
        if self.sound_start is not None:
            end = self.sound_start + self.sound_samples / SOUND_RATE
            shift = round((at - end) * SOUND_RATE)
            if shift < 0:
                data = data[-shift * SOUND_BYTES:]
            elif shift > SOUND_GAP_SECONDS * SOUND_RATE:
                self.sound_start, self.sound_samples = at, 0
            elif shift > 0:
                data = bytes(shift * SOUND_BYTES) + data
        else:
            self.sound_start = at
        if data:
            self.encoder.sound(self.sound_start + self.sound_samples / SOUND_RATE, data)
            self.sound_samples += len(data) // SOUND_BYTES

    def write(self, frame, time, duration):
        if self.sound_from is None:
            self.sound_from = time
        if self.sound is not None:
            self._sound_until(time + SOUND_AHEAD)
        duration = duration or 0.04
        self.encoder.picture(frame, time, duration)
        self.last_end = time + duration

    def close(self):
        try:
            if self.sound is not None and self.last_end is not None:
                self._sound_until(self.last_end)
        except UserError:
            pass  # ffmpeg's own reason comes from finish()
        self.encoder.finish(timeout=30)

    def abort(self):
        try:
            self.close()
        except UserError:
            pass
