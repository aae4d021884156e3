"""Decoding: a video file's frames as a player shows them, and a live input's frames and sound.

Every frame keeps its own timestamp (`-fps_mode passthrough`, `-copyts` for files, `showinfo` on
ffmpeg's stderr), so variable frame rates and streams that do not start at zero stay in time with
their sound. ffmpeg drops the frames we skip (`select`), crops and scales with area interpolation
before frames reach Python; a second picture at the shown size (for --detail) comes out of the
same process on a pipe of its own.
"""
import os
import queue
import re
import select
import subprocess
import threading
import time
from typing import NamedTuple, Optional

import numpy as np

from vae import ffmpeg
from vae.cli import UserError
from vae.images import aspect_crop_box
from vae.probe import Crop, span_args

SOUND_RATE, SOUND_CHANNELS = 48000, 2
SOUND_BYTES = 2 * SOUND_CHANNELS  # one 16-bit sample of every channel


class Frame(NamedTuple):
    index: int  # the decoded frame's number (counting every frame, kept or not)
    image: np.ndarray  # uint8 HxWx3 RGB at the requested size
    time: float  # presentation time in seconds (the file's clock, or a live run's)
    duration: float  # how long it is shown, in seconds (0 when ffmpeg does not know)
    full: Optional[np.ndarray] = None  # the cropped frame at its shown size, when asked for
    arrived: Optional[float] = None  # live: time.monotonic() when the whole frame had been decoded


class Sound(NamedTuple):
    time: float  # seconds, on the clock of the frames it goes with
    data: bytes  # signed 16-bit little-endian PCM, SOUND_CHANNELS interleaved, at SOUND_RATE


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
    cmd = [ffmpeg.exe(), "-hide_banner", "-nostdin", "-loglevel", "info", "-nostats", "-copyts",
           *input_args, *span_args(start, duration), "-i", info.path, "-an", "-sn", "-dn"]
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
    log = ffmpeg.Log(proc.stderr)
    count = 0
    try:
        while True:
            image = ffmpeg.read_exactly(proc.stdout, (height, width, 3))
            if image is None:
                break
            big = None
            if full and count % full == 0:
                big = ffmpeg.read_exactly(full_stream, (ch, cw, 3))
                if big is None:
                    break
            stamp = log.stamps.get(timeout=60)
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
        raise UserError(f"{info.path}: ffmpeg could not decode it: {log.text().splitlines()[-1:] or '?'}")


def readable(fd, seconds, stopping):
    """Wait until fd has data (True), or `seconds` of waiting passed or `stopping` was set (False);
    in short slices so that a stop is never kept waiting. Only the time spent waiting on fd
    counts: while this thread waits for the interpreter (TensorFlow's import holds it for seconds)
    ffmpeg may be blocked on a full pipe of ours, which is no silence of the input's."""
    waited = 0.0
    while not stopping.is_set() and waited < seconds:
        piece = min(seconds - waited, 0.2)
        began = time.monotonic()
        if select.select([fd], [], [], piece)[0]:
            return True
        waited += min(time.monotonic() - began, piece)
    return False


class Connection:
    """One ffmpeg process reading a live input: tile-size frames on stdout, full-size frames and
    the sound on pipes of their own, so the sound never needs a second connection to the camera.

    The sound is resampled to SOUND_RATE and timed by its own timestamps (`ashowinfo`), on the
    pictures' clock: an input whose first sound came before its first picture, or that lost some
    on the way, keeps it in place. Each block goes to `on_sound(connection, Sound)`.
    Its stderr gives the frame times (showinfo), the full-size picture's size, and the reason
    when the input cannot be read.
    """

    def __init__(self, input_args, tile, full, audio_track, on_sound, stopping):
        self.tile, self.stopping, self.on_sound = tile, stopping, on_sound
        self.offset = None  # the connection's clock onto the run's: set by the source at the first frame
        self.closed = False
        self.full_size = full if isinstance(full, tuple) else None
        self.sized = threading.Event()
        if self.full_size:  # a reconnection: the size is the first connection's, known already
            self.sized.set()
        self.header = []  # what ffmpeg says of the input, up to its stream mapping
        self.no_audio = False
        self._output = None
        self._last_stamp = None
        shown = "scale='trunc(iw*sar/2)*2':'trunc(ih/2)*2',setsar=1"  # square pixels, even size
        if self.full_size:  # a reconnection keeps the first connection's size, whatever comes now
            shown = f"scale={self.full_size[0]}:{self.full_size[1]},setsar=1"
        raw = ["-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24"]
        cmd = [ffmpeg.exe(), "-hide_banner", "-nostdin", "-loglevel", "info", "-nostats", *input_args]
        tile_chain = None if tile is None else f"scale={tile[0]}:{tile[1]}:flags=area,showinfo=checksum=0"
        if tile is None:  # a spatial model renders the shown picture itself: no tile, no second picture
            full = False
            graph = f"[0:v:0]{shown},showinfo=checksum=0[tile]"
        elif full:
            graph = f"[0:v:0]{shown},split[t][f];[t]{tile_chain}[tile]"
        else:
            graph = f"[0:v:0]{shown},{tile_chain}[tile]"
        cmd += ["-filter_complex", graph, "-map", "[tile]", *raw, "pipe:1"]
        fds = []
        if full:
            full_read, full_write = os.pipe()
            cmd += ["-map", "[f]", *raw, f"pipe:{full_write}"]
            fds.append(full_write)
        if audio_track is not None:
            # A graph (a thread) of its own: in the pictures' graph, no picture would come out
            # before the first sound did, and none at all from an input whose sound never starts.
            # Its stamp lines and the pictures' may then break each other: ffmpeg.Log mends that.
            audio_read, audio_write = os.pipe()
            chain = (f"aresample={SOUND_RATE},aformat=sample_fmts=s16:channel_layouts=stereo,"
                     f"asettb=1/{SOUND_RATE},ashowinfo")
            cmd += ["-map", f"0:a:{audio_track}?", "-af", chain, "-c:a", "pcm_s16le", "-f", "s16le",
                    "-flush_packets", "1", f"pipe:{audio_write}"]
            fds.append(audio_write)
        # A session of its own: Ctrl-C in the terminal reaches us alone, and we close ffmpeg in order.
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                                     pass_fds=fds, start_new_session=True)
        for fd in fds:
            os.close(fd)
        self.full_stream = open(full_read, "rb", buffering=0) if full else None
        self.audio_stream = open(audio_read, "rb", buffering=0) if audio_track is not None else None
        self.log = ffmpeg.Log(self.proc.stderr, on_line=self._read_line)
        if self.audio_stream:
            threading.Thread(target=self._read_sound, daemon=True).start()

    def _read_line(self, line):
        if line.startswith("Stream mapping:"):
            self._output = -1
        elif self._output is None:
            self.header.append(line)
        heading = re.match(r"Output #(\d+)", line)
        if heading:
            self._output = int(heading.group(1))
        picture = 0 if self.tile is None else 1  # the output whose size is the shown one
        size = re.search(rf"Stream #{picture}:0: Video: .*?, (\d+)x(\d+)[ ,\[]", line) \
            if self._output == picture else None
        if size and not self.full_size:
            self.full_size = (int(size.group(1)), int(size.group(2)))
            self.sized.set()
        if "does not contain any stream" in line or "matches no streams" in line:
            self.no_audio = True

    def _read_sound(self):
        end = None  # where the last block ended
        while True:
            stamp = self.log.sound_stamps.get()
            if stamp is None:  # ffmpeg ended; sound left in the pipe lost its line: it follows on
                rest = self.audio_stream.read()
                usable = len(rest or b"") // SOUND_BYTES * SOUND_BYTES
                if usable and end is not None:
                    self.on_sound(self, Sound(end, rest[:usable]))
                return
            seconds, samples = stamp
            data = ffmpeg.read_exactly(self.audio_stream, (samples * SOUND_BYTES,))
            if data is None:
                return
            self.on_sound(self, Sound(seconds, data.tobytes()))
            end = seconds + samples / SOUND_RATE

    def reason(self):
        return ffmpeg.complaint(list(self.log.lines))

    def frames(self, first_seconds, stall_seconds):
        """(tile, time, duration, full) until the input ends, stops sending for `stall_seconds`
        (the first for `first_seconds`), or `stopping`."""
        wait = first_seconds
        while readable(self.proc.stdout.fileno(), wait, self.stopping):
            if self.tile is None and (not self.sized.wait(10) or not self.full_size):
                return
            tw, th = self.tile or self.full_size
            image = ffmpeg.read_exactly(self.proc.stdout, (th, tw, 3))
            if image is None:
                return
            full = None
            if self.full_stream is not None:
                if not self.sized.wait(10) or not self.full_size:
                    return
                full = ffmpeg.read_exactly(self.full_stream, (self.full_size[1], self.full_size[0], 3))
                if full is None:
                    return
            stamp = self._stamp()
            if stamp is None:
                return
            pts, duration = stamp
            yield image, pts, duration, full
            wait = stall_seconds

    def _stamp(self):
        """The frame's time and duration. ffmpeg prints a frame's showinfo line before it writes the
        frame, so it comes once the log's thread has run, however long the interpreter kept it
        waiting (TensorFlow's import holds it for seconds). A frame still here when ffmpeg's stderr
        has ended lost its line (ffmpeg.Log): it follows the last one. None when we stop."""
        while not self.stopping.is_set():
            try:
                stamp = self.log.stamps.get(timeout=0.2)
            except queue.Empty:
                continue
            if stamp is None:
                self.log.stamps.put(None)  # for the next frame too
                if self._last_stamp is None:
                    return None
                seconds, duration = self._last_stamp
                stamp = (seconds + (duration or 0.04), duration)
            self._last_stamp = stamp
            return stamp
        return None

    def close(self):
        self.closed = True
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.log.join(2)  # all it said, before anyone asks why it ended
        for stream in (self.proc.stdout, self.full_stream):
            if stream:
                stream.close()
