"""Live rendering: a camera or a network stream in, a styled stream or a growing file out.

A live input cannot wait for the models, so the parts differ from a file's render:
- LiveSource runs one ffmpeg process per connection with low-latency input flags and no probe
  or border search of its own: the tile-size picture, the full-size picture (for --detail) and
  the sound come out of that one process on three pipes, so the sound never needs a second
  connection to the camera or stream. Frames carry their arrival time; a connection that
  stops delivering is dropped and opened again for up to `reconnect` seconds.
- The frames go through a drop-oldest Producer: the models take whatever is waiting, up to a
  batch, and when they fall behind the oldest frames are thrown away, so the delay stays at
  about two batches instead of growing.
- Sink encodes with low-latency settings to a stream URL or to a file that is playable at every
  moment (fragmented MP4 or MPEG-TS, under its final name): the one exception to the
  contract's whole-or-nothing outputs. Picture and sound go to ffmpeg in one Matroska pipe,
  each block with its own time, so they stay in sync whatever frames were dropped.
- Meter counts frames in, out and dropped and the delay from arrival to the encoder.

`run(source, styler, sink, batch_size)` is the loop; the styler is mogrify.Styler, the same as
for files (anything with `style(frames) -> list of uint8 RGB frames` would do), with the source
mean a running mean of the input's own codes unless `--source` names a trained one.
"""
import collections
import os
import re
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import NamedTuple

import numpy as np

from vae import video
from vae.cli import UserError, info
from vae.pipeline import Consumer, Producer

STREAM_SCHEMES = ("udp", "srt", "rtmp", "rtmps", "rtsp", "rtsps", "http", "https", "tcp", "rtp")
OUTPUT_FORMATS = {"udp": "mpegts", "srt": "mpegts", "tcp": "mpegts", "rtmp": "flv", "rtmps": "flv"}
DEVICE_FORMATS = ("v4l2", "avfoundation", "dshow", "x11grab", "gdigrab")
# A recording written as it goes: each fragment (MP4) or packet (TS) is complete once written.
FILE_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".ts": "mpegts", ".m2ts": "mpegts"}
# An input that gives no picture this long cannot be opened. Within it, an input that was reached
# but gave no picture (a stream joined between keyframes, whose picture size ffmpeg could not
# find yet) is tried again; one that could not be reached at all (refused, no such device) is not.
OPEN_SECONDS = 8.0
STALL_SECONDS = 2.0  # a connection silent this long has dropped out
AUDIO_RATE, AUDIO_CHANNELS = 48000, 2
AUDIO_CHUNK = 1024  # samples per block read and muxed: about 21 ms
KEYFRAME_SECONDS = 1
# Frames per model call, and frames waiting at most: the delay is about two batches, so live
# batches are smaller than a file's (mogrify.default_batch_size).
BATCH_SIZE = 8


def _scheme(text):
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", text)
    return match.group(1).lower() if match else None


def _device(text):
    """(ffmpeg input format, device name) of a capture device, or None: /dev/videoN (v4l2), or
    FORMAT:NAME with FORMAT one of DEVICE_FORMATS (avfoundation:0, dshow:video=Cam)."""
    if re.match(r"^/dev/video\d+$", text):
        return "v4l2", text
    fmt, colon, name = text.partition(":")
    if colon and fmt in DEVICE_FORMATS and name:
        return fmt, name
    return None


def is_live_input(text):
    """A stream URL or a capture device: --live is implied."""
    return _scheme(text) in STREAM_SCHEMES or _device(text) is not None


def output_format(text):
    """ffmpeg's muxer for a live output, or a UserError saying what is possible."""
    scheme = _scheme(text)
    if scheme:
        if scheme not in OUTPUT_FORMATS:
            raise UserError(f"{text}: a live output is a udp, srt, tcp or rtmp URL, or an .mp4 or .ts file")
        return OUTPUT_FORMATS[scheme]
    extension = os.path.splitext(text)[1].lower()
    if extension not in FILE_FORMATS:
        raise UserError(f"{text}: a live recording is an .mp4, .mov or .ts file (written as it goes)")
    return FILE_FORMATS[extension]


def check_request(input_text, output_text, models_dir, styles, source_name=None, reconnect=10.0, start=None,
                  duration=None, inset=False, crop="auto", render_size=None):
    """Everything about a live run that needs no TensorFlow (cf. mogrify.check_request): the
    input and output, the options a live run has not, the models folder, the --style and
    --source names. Returns (safety.read_models_folder's answer, the sources)."""
    from vae import latent, safety
    for given, name in ((start, "--start"), (duration, "--duration"), (inset or None, "--inset"),
                        (render_size, "--render-size")):
        if given is not None:
            raise UserError(f"{name} is not available live")
    if crop not in ("auto", "none"):
        raise UserError("--crop is not available live (the whole frame is rendered)")
    if reconnect is None or not reconnect >= 0:
        raise UserError("--reconnect must be at least 0 seconds")
    live_input = is_live_input(input_text)
    if not live_input and not os.path.isfile(input_text):
        raise UserError(f"{input_text}: no such file, and not a stream URL or capture device")
    output_format(output_text)
    if not _scheme(output_text):
        folder = os.path.dirname(os.path.abspath(output_text))
        if not os.path.isdir(folder):
            raise UserError(f"{output_text}: its folder does not exist")
        if not live_input and os.path.abspath(input_text) == os.path.abspath(output_text):
            raise UserError(f"{output_text}: that is the input; give another output name")
    found = safety.read_models_folder(models_dir)
    sources = latent.load_embeddings(models_dir, found[0]["codes"])
    latent.mix_styles(sources, styles)  # refuses unknown names before TensorFlow starts
    if source_name is not None and source_name not in sources:
        raise UserError(f"unknown --source {source_name!r}; known sources: {', '.join(sorted(sources))}")
    return found, sources


class Arrival(NamedTuple):
    frame: video.Frame
    arrived: float  # time.monotonic() when the whole frame had come out of the decoder


class _Chunk(NamedTuple):
    connection: object  # its `offset` puts the chunk on the run's clock
    time: float  # on the connection's clock
    data: bytes


def _complaint(lines):
    """The last thing ffmpeg complained about, in one line without its [component @ 0x...]
    prefixes; None if it said nothing."""
    for line in reversed(lines):
        text = re.sub(r"^(\[[^]]*\] *)+", "", line).strip()
        if text and not text.startswith(("Stream", "Input", "Output", "Metadata", "Duration", "Program",
                                         "Error opening input", "Error opening output file")):
            return text  # the cause is said before those summaries
    return None


def _readable(fd, seconds, stopping):
    """Wait until fd has data (True), or `seconds` passed or `stopping` was set (False); in short
    slices so that a stop is never kept waiting."""
    until = time.monotonic() + seconds
    while not stopping.is_set():
        left = until - time.monotonic()
        if left <= 0:
            return False
        if select.select([fd], [], [], min(left, 0.2))[0]:
            return True
    return False


class _Connection:
    """One ffmpeg process reading the input: tile-size frames on stdout, full-size frames and
    the sound (16-bit PCM, resampled onto the picture's clock from time 0) on pipes of their own.

    Its stderr gives the frame times (showinfo), the full-size picture's size, and the reason
    when the input cannot be read.
    """

    def __init__(self, input_args, tile, full, audio_track, chunks, stopping):
        self.tile, self.stopping, self.chunks = tile, stopping, chunks
        self.offset = None  # set by the source at the first frame
        self.closed = False
        self.full_size = full if isinstance(full, tuple) else None
        self.sized = threading.Event()
        if self.full_size:  # a reconnection: the size is the first connection's, known already
            self.sized.set()
        self.lines = collections.deque(maxlen=20)
        self.header = []  # what ffmpeg says of the input, up to its stream mapping
        self.stamps = collections.deque()
        self.no_audio = False
        self.time_base = 1e-6
        shown = "scale='trunc(iw*sar/2)*2':'trunc(ih/2)*2',setsar=1"  # square pixels, even size
        if self.full_size:  # a reconnection keeps the first connection's size, whatever comes now
            shown = f"scale={self.full_size[0]}:{self.full_size[1]},setsar=1"
        raw = ["-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24"]
        cmd = [video.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "info", "-nostats", *input_args]
        fds, self._write_ends = [], []
        tile_chain = None if tile is None else f"scale={tile[0]}:{tile[1]}:flags=area,showinfo=checksum=0"
        if tile is None:  # a spatial model renders the shown picture itself: no tile, no second picture
            full = False
            cmd += ["-filter_complex", f"[0:v:0]{shown},showinfo=checksum=0[tile]", "-map", "[tile]", *raw, "pipe:1"]
        elif full:
            cmd += ["-filter_complex", f"[0:v:0]{shown},split[t][f];[t]{tile_chain}[tile]",
                    "-map", "[tile]", *raw, "pipe:1"]
            full_read, full_write = os.pipe()
            cmd += ["-map", "[f]", *raw, f"pipe:{full_write}"]
            fds.append(full_write)
        else:
            cmd += ["-filter_complex", f"[0:v:0]{shown},{tile_chain}[tile]", "-map", "[tile]", *raw, "pipe:1"]
        if audio_track is not None:
            audio_read, audio_write = os.pipe()
            cmd += ["-map", f"0:a:{audio_track}?", "-af", "aresample=async=1000:first_pts=0",
                    "-ac", str(AUDIO_CHANNELS), "-ar", str(AUDIO_RATE), "-f", "s16le", f"pipe:{audio_write}"]
            fds.append(audio_write)
        # A session of its own: Ctrl-C in the terminal reaches us alone, and we close ffmpeg in order.
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                                     pass_fds=fds, start_new_session=True)
        for fd in fds:
            os.close(fd)
        self.full_stream = open(full_read, "rb", buffering=0) if full else None
        self.audio_stream = open(audio_read, "rb", buffering=0) if audio_track is not None else None
        self.stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self.stderr_reader.start()
        if self.audio_stream:
            threading.Thread(target=self._read_audio, daemon=True).start()

    def _read_stderr(self):
        output = None
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            stamp = video._StderrTail.SHOWINFO.search(line)
            if stamp:
                pts, duration = (int(v) for v in stamp.groups())
                self.stamps.append((pts * self.time_base, max(0.0, duration * self.time_base)))
                continue
            base = video._StderrTail.TIME_BASE.search(line)
            if base and int(base.group(1)) and int(base.group(2)):
                self.time_base = int(base.group(1)) / int(base.group(2))
                continue
            if line.startswith("Stream mapping:"):
                output = -1
            elif output is None:
                self.header.append(line)
            heading = re.match(r"Output #(\d+)", line)
            if heading:
                output = int(heading.group(1))
            picture = 0 if self.tile is None else 1  # the output whose size is the shown one
            size = re.search(rf"Stream #{picture}:0: Video: .*?, (\d+)x(\d+)[ ,\[]", line) if output == picture else None
            if size and not self.full_size:
                self.full_size = (int(size.group(1)), int(size.group(2)))
                self.sized.set()
            if "does not contain any stream" in line or "matches no streams" in line:
                self.no_audio = True
            if "Parsed_showinfo" not in line and line.strip():
                self.lines.append(line)
        self.sized.set()  # ended: nobody waits for a size that never comes

    def _read_audio(self):
        size, samples = AUDIO_CHUNK * AUDIO_CHANNELS * 2, 0
        while True:
            data = self.audio_stream.read(size)
            if not data:
                return
            self.chunks.append(_Chunk(self, samples / AUDIO_RATE, data))
            samples += len(data) // (AUDIO_CHANNELS * 2)

    def reason(self):
        return _complaint(self.lines)

    def frames(self, first_seconds, stall_seconds=STALL_SECONDS):
        """(tile, time, duration, full) until the input ends, stops sending, or `stopping`."""
        wait = first_seconds
        while _readable(self.proc.stdout.fileno(), wait, self.stopping):
            if self.tile is None and (not self.sized.wait(10) or not self.full_size):
                return
            tw, th = self.tile or self.full_size
            image = video._read_exactly(self.proc.stdout, (th, tw, 3))
            if image is None:
                return
            full = None
            if self.full_stream is not None:
                if not self.sized.wait(10) or not self.full_size:
                    return
                full = video._read_exactly(self.full_stream, (self.full_size[1], self.full_size[0], 3))
                if full is None:
                    return
            for _ in range(100):  # ffmpeg prints a frame's showinfo line before it writes the frame
                if self.stamps:
                    break
                time.sleep(0.01)
            if not self.stamps:
                return
            pts, duration = self.stamps.popleft()
            yield image, pts, duration, full
            wait = stall_seconds

    def close(self):
        self.closed = True
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.stderr_reader.join(2)  # all it said, before anyone asks why it ended
        for stream in (self.proc.stdout, self.full_stream):
            if stream:
                stream.close()


class LiveSource:
    """Frames (as Arrival) of a stream, a device or (rehearsal) a file read at its own rate.

    start() begins reading in a thread, behind a drop-oldest queue of `depth` frames;
    wait_ready() returns once the first frame is in, or raises a one-line UserError. The sound
    goes to `chunks` (a bounded deque the sink empties), on the same clock as the frames' times.
    """

    def __init__(self, text, tile, full=False, audio_track=0, reconnect=10.0, depth=BATCH_SIZE):
        self.text, self.tile, self.full, self.reconnect, self.depth = text, tile, full, reconnect, depth
        self.audio_track = audio_track
        self.device = _device(text)
        self.rehearsal = not is_live_input(text)  # a file, read at its own rate: its end is the end
        self.chunks = collections.deque(maxlen=int(20 * AUDIO_RATE / AUDIO_CHUNK))  # 20 s of sound at most
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.size = None  # (width, height) as shown, even, of the first connection
        self.has_audio = audio_track is not None
        self.read = 0  # frames that arrived
        self.producer = None
        self.say = info  # run() hands this to the meter, so that a message never lands inside the status line

    def input_args(self):
        low_latency = ["-fflags", "nobuffer", "-flags", "low_delay", "-probesize", "500000",
                       "-analyzeduration", "500000"]
        if self.device:
            fmt, name = self.device
            return [*low_latency, "-thread_queue_size", "64", "-f", fmt, "-i", name]
        if self.rehearsal:
            return ["-re", "-i", self.text]
        scheme = _scheme(self.text)
        extra = {"udp": ["-overrun_nonfatal", "1", "-fifo_size", "100000"],
                 "rtsp": ["-rtsp_flags", "prefer_tcp"]}.get(scheme, [])
        if ".m3u8" in self.text:  # HLS comes a segment at a time: paced, or each would be a burst and a gap
            extra = ["-re"]
        return [*low_latency, *extra, "-i", self.text]

    def start(self):
        self.producer = Producer(self._frames(), depth=self.depth, drop_oldest=True)
        return self

    def wait_ready(self):
        """Block until the first frame has arrived; the input's error (one line) otherwise."""
        while not self.ready.wait(0.1):
            if self.producer.ended or not self.producer.thread.is_alive() or self.producer.queue.qsize():
                self.producer.take(1, timeout=0.1)  # raises the thread's error, if that is what came
                if self.producer.ended:
                    raise UserError(f"{self.text}: the input ended before its first frame")
        return self.size

    def baseline(self):
        """(frames read, frames dropped) before the run proper: a camera's or stream's frames that
        came while the models loaded are not the run's (those still waiting are); a rehearsal's
        are all its own."""
        if self.rehearsal:
            return 0, 0
        return self.read - self.producer.queue.qsize(), self.producer.dropped

    def stop(self):
        self.stopping.set()

    def close(self):
        self.stopping.set()
        if self.producer:
            self.producer.close()

    def _connect(self, audio_track):
        # A reconnection keeps the first connection's shown size (the styler and the sink have it).
        full = self.size if ((self.full or self.tile is None) and self.size) else self.full
        return _Connection(self.input_args(), self.tile, full, audio_track, self.chunks, self.stopping)

    def _frames(self):
        index, last, anchor, lost_at = 0, None, None, None
        audio_track, began = self.audio_track, time.monotonic()
        while not self.stopping.is_set():
            connection = self._connect(audio_track)
            if lost_at is None:
                wait = max(0.5, began + OPEN_SECONDS - time.monotonic())
            else:
                wait = max(0.5, lost_at + self.reconnect - time.monotonic())
            got = 0
            try:
                for image, pts, duration, full in connection.frames(wait):
                    arrived = time.monotonic()
                    if got == 0:
                        connection.offset = self._offset(pts, arrived, anchor, last)
                        if anchor is None:
                            anchor = arrived - pts  # the wall clock of the run's time 0
                            self.size = connection.full_size or self._shown_size(connection)
                            self.has_audio = self.has_audio and not connection.no_audio
                            self.ready.set()
                        if lost_at is not None:
                            self.say(f"{self.text}: input back after {arrived - lost_at:.1f} s")
                            lost_at = None
                    got += 1
                    t = pts + connection.offset
                    if last is not None and t <= last:  # the sender's clock jumped back: follow on
                        connection.offset += last - t + (duration or 0.001)
                        t = pts + connection.offset
                    last = t
                    self.read += 1
                    yield Arrival(video.Frame(index, image, t, duration, full), arrived)
                    index += 1
            finally:
                connection.close()
            if self.stopping.is_set() or (self.rehearsal and index):
                return
            if connection.no_audio and audio_track is not None and got == 0:
                audio_track = None  # the input has no sound: open it again for the picture alone
                self.has_audio = False
                continue
            if index == 0:
                reached = any(line.startswith("Input #") for line in connection.header)
                if reached and time.monotonic() - began < OPEN_SECONDS:
                    self.stopping.wait(0.2)
                    continue
                why = connection.reason() if not reached or connection.proc.returncode not in (0, -9) else None
                why = why or f"no picture within {OPEN_SECONDS:g} s"
                raise UserError(f"{self.text}: cannot open it: {why}")
            now = time.monotonic()
            if lost_at is None:
                lost_at = now
                why = connection.reason() if connection.proc.returncode not in (0, -9) else None
                why = why or f"no frames for {STALL_SECONDS:g} s"
                self.say(f"warning: {self.text}: the input dropped out ({why}); reconnecting for up to "
                         f"{self.reconnect:g} s")
            if now - lost_at >= self.reconnect:
                self.say(f"warning: {self.text}: not back after {self.reconnect:g} s; ending the run")
                return
            self.stopping.wait(0.3)  # a refused connection is tried again a few times a second

    def _offset(self, pts, arrived, anchor, last):
        """The connection's clock onto the run's: the first connection's own times, a later one
        placed by its arrival on the wall clock (after the frames before it)."""
        if anchor is None:
            return 0.0
        offset = (arrived - anchor) - pts
        if last is not None and pts + offset <= last:
            offset = last + 0.001 - pts
        return offset

    def _shown_size(self, connection):
        """Without full-size frames, the shown size from the input's description ffmpeg printed."""
        text = "\n".join(connection.header)
        try:
            meta = video.parse_probe(self.text, text)
            w, h = meta.display_size
            return w - w % 2, h - h % 2
        except UserError:
            return self.tile


def live_codec_args(codec_args, crf, preset):
    """The encoder for a live output: x264 tuned for zero latency, or NVENC's low-latency
    preset when vae.codecs picked the card; a keyframe every KEYFRAME_SECONDS either way, so a
    player that joins, or a recording cut anywhere, starts within a second or two."""
    keys = ["-force_key_frames", f"expr:gte(t,n_forced*{KEYFRAME_SECONDS})"]
    if codec_args and "h264_nvenc" in codec_args:
        return ["-c:v", "h264_nvenc", "-preset", "p2", "-tune", "ll", "-rc", "vbr", "-cq", str(crf), "-b:v", "0",
                "-bf", "0", *keys]
    return ["-c:v", "libx264", "-preset", preset, "-tune", "zerolatency", "-crf", str(crf), *keys]


class _Mux:
    """Matroska with a raw RGB video track (1) and, optionally, a PCM sound track (2), streamed:
    every block has its own time, which ffmpeg keeps (see video._Matroska)."""

    @staticmethod
    def header(width, height, audio):
        e = video._Matroska.element
        head = video._Matroska.header(width, height)
        if not audio:
            return head
        # The video-only header ends with its Tracks element: rebuild that with a second track.
        tracks_at = head.rindex(bytes.fromhex("1654AE6B"))
        body = head[tracks_at + 4:]  # the Tracks id, then its size, then the video track's entry
        size_len = 8 - (body[0].bit_length() - 1)  # an EBML size's length is its leading zeros + 1
        entry = body[size_len:]
        sound = e(0xE1, e(0xB5, struct.pack(">d", float(AUDIO_RATE))) + e(0x9F, AUDIO_CHANNELS) + e(0x6264, 16))
        track = e(0xAE, e(0xD7, 2) + e(0x73C5, 2) + e(0x83, 2) + e(0x9C, 0) + e(0x86, "A_PCM/INT/LIT") + sound)
        return head[:tracks_at] + e(0x1654AE6B, entry + track)

    @staticmethod
    def sound(ticks, data):
        e = video._Matroska.element
        block = e(0xA3, b"\x82" + struct.pack(">hB", 0, 0x80) + data)
        return e(0x1F43B675, e(0xE7, ticks) + block)


class Sink:
    """Encodes styled frames (and the source's sound) to a stream URL or a growing file."""

    def __init__(self, target, frame_size, out_size, source, codec_args=None, crf=18, preset="veryfast"):
        fmt = output_format(target)
        fw, fh = frame_size
        ow, oh = out_size
        ow, oh = ow - ow % 2, oh - oh % 2
        self.target, self.source, self.frame_shape = target, source, (fh, fw, 3)
        self.audio = source.has_audio
        self.sound_from = None  # the first frame's time: sound before it is not written
        self.last_end = None
        cmd = [video.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-f", "matroska",
               "-i", "-", "-map", "0:v", "-vf", f"scale={ow}:{oh}:flags=bicubic,setsar=1",
               "-fps_mode", "passthrough", "-enc_time_base:v", "1/90000",
               *live_codec_args(codec_args, crf, preset), "-pix_fmt", "yuv420p"]
        if self.audio:
            cmd += ["-map", "0:a", "-c:a", "aac", "-b:a", "160k"]
        cmd += ["-flush_packets", "1"]
        if fmt in ("mp4", "mov"):
            cmd += ["-movflags", "+frag_keyframe+empty_moov+default_base_moof"]
        if fmt == "mpegts":
            cmd += ["-muxdelay", "0", "-muxpreload", "0"]
        url = target
        if _scheme(target) == "udp" and "pkt_size" not in target:
            url += ("&" if "?" in target else "?") + "pkt_size=1316"  # whole TS packets per datagram
        cmd += ["-f", fmt, url]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.errors = video._StderrTail(self.proc.stderr)
        self._send(_Mux.header(fw, fh, self.audio))

    def _send(self, *chunks):
        try:
            for chunk in chunks:
                self.proc.stdin.write(chunk)
        except (BrokenPipeError, ValueError):
            self.proc.wait()
            self.errors.join(2)
            why = _complaint(self.errors.lines) or "no reason given"
            raise UserError(f"{self.target}: ffmpeg stopped encoding: {why}")

    @staticmethod
    def _ticks(seconds):
        return max(0, round(seconds * 1e9 / video._Matroska.TIME_SCALE_NS))

    def _sound_until(self, until):
        """Write the sound blocks that start before `until` (seconds on the run's clock)."""
        chunks = self.source.chunks
        while chunks:
            chunk = chunks[0]
            if chunk.connection.offset is None:
                if not chunk.connection.closed:
                    return  # its connection has no picture yet: its place on the clock is unknown
                chunks.popleft()
                continue
            at = chunk.time + chunk.connection.offset
            if at >= until:
                return
            chunks.popleft()
            if at >= self.sound_from - 0.05:
                self._send(_Mux.sound(self._ticks(at), chunk.data))

    def write(self, frame, time, duration):
        if frame.shape != self.frame_shape or frame.dtype != np.uint8:
            raise ValueError(f"expected a uint8 frame of shape {self.frame_shape}, got {frame.dtype} {frame.shape}")
        if self.sound_from is None:
            self.sound_from = time
        if self.audio:
            self._sound_until(time + 0.1)
        duration = duration or 0.04
        head, tail = video._Matroska.frame_prefix(self._ticks(time), max(1, self._ticks(duration)), frame.nbytes)
        self._send(head, np.ascontiguousarray(frame).data, tail)
        self.last_end = time + duration

    def close(self):
        """Finish the output: what is written stays playable; ffmpeg's own error is raised."""
        try:
            if self.audio and self.last_end is not None:
                self._sound_until(self.last_end)
            self.proc.stdin.close()
        except (BrokenPipeError, UserError):
            pass
        try:
            status = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            status = self.proc.wait()
        if status != 0:
            self.errors.join(2)
            raise UserError(f"{self.target}: ffmpeg failed to encode: {_complaint(self.errors.lines) or status}")


class Meter:
    """Frames in, out and dropped, the rate out, and the delay from a frame's arrival to its
    hand-over to the encoder; a status line on stderr (updated in place on a terminal, a line
    every `log_every` seconds in a log)."""
    BIN = 0.005  # seconds per bin of the delay histogram: exact enough for a 95th percentile

    def __init__(self, stream=None, log_every=5.0):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = 0.5 if self.tty else log_every
        self.began = time.monotonic()
        self.shown = self.began
        self.read_base = self.dropped_base = 0
        self.read = self.dropped = self.out = 0
        self.delays = np.zeros(int(60 / self.BIN) + 1, np.int64)  # the last bin: a minute or more
        self.delay_sum = 0.0
        self.recent = collections.deque(maxlen=500)  # (hand-over time, delay) for the status line
        self.first_out = None
        self.lock = threading.Lock()

    def start(self, read, dropped):
        """Count from here: what came and was dropped while the models loaded is not the run's."""
        self.began = self.shown = time.monotonic()
        self.read_base, self.dropped_base = read, dropped

    def update(self, read, dropped):
        self.read, self.dropped = read - self.read_base, dropped - self.dropped_base

    def handed_over(self, arrived):
        now = time.monotonic()
        delay = max(0.0, now - arrived)
        self.delays[min(int(delay / self.BIN), len(self.delays) - 1)] += 1
        self.delay_sum += delay
        self.recent.append((now, delay))
        self.out += 1
        if self.first_out is None:
            self.first_out = now

    def figures(self, recent=False):
        now = time.monotonic()
        if recent:  # the status line: the last few seconds
            window = [d for t, d in self.recent if t > now - 5]
            delays = np.array(window) if window else np.zeros(0)
            fps = len(window) / min(5.0, max(1e-9, now - self.began))
            mean = float(delays.mean()) if len(delays) else 0.0
            p95 = float(np.percentile(delays, 95)) if len(delays) else 0.0
        else:
            seconds = now - (self.first_out or now)
            fps = (self.out - 1) / seconds if self.out > 1 and seconds > 0 else 0.0
            mean = self.delay_sum / self.out if self.out else 0.0
            cumulative = np.cumsum(self.delays)
            p95 = float((np.searchsorted(cumulative, 0.95 * self.out) + 1) * self.BIN) if self.out else 0.0
        taken = self.read
        return {"frames_in": taken, "frames_out": self.out, "dropped": self.dropped,
                "dropped_share": round(self.dropped / taken, 4) if taken else 0.0, "fps": round(fps, 2),
                "delay_mean": round(mean, 3), "delay_p95": round(p95, 3),
                "seconds": round(now - self.began, 2)}

    @staticmethod
    def line(f):
        return (f"in {f['frames_in']}, out {f['frames_out']}, dropped {f['dropped']} "
                f"({100 * f['dropped_share']:.1f}%), {f['fps']:.1f} fps, delay {f['delay_mean']:.2f} s mean, "
                f"{f['delay_p95']:.2f} s p95")

    def tick(self, force=False):
        now = time.monotonic()
        if not force and now - self.shown < self.every:
            return
        self.shown = now
        text = "live: " + self.line(self.figures(recent=True))
        with self.lock:
            self.stream.write("\r" + text + "\x1b[K" if self.tty else text + "\n")
            self.stream.flush()

    def say(self, message):
        """A message of its own line, from any thread; on a terminal the status line is wiped
        first and shown again at the next tick."""
        with self.lock:
            self.stream.write(("\r\x1b[K" if self.tty else "") + message + "\n")
            self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def render(args, look, codec_args, encoder_note):
    """A live run of mogrify_video.py's command line: the input opened (or its one error line)
    before TensorFlow's start-up, the models loaded, then `run` until the input ends, Ctrl-C or
    SIGTERM. Returns the meter's figures."""
    from vae import cli, mogrify
    cli.raise_on_sigterm()
    found, sources = check_request(args.input, args.output, args.models, look.styles, args.source, args.reconnect,
                                   start=args.start, duration=args.duration, inset=args.inset, crop=args.crop,
                                   render_size=args.render_size)
    mogrify.check_look(args.models, found[0], look)
    audio_track = None if args.no_audio else args.audio_track
    batch_size = args.batch_size or BATCH_SIZE
    # A global model sees tiles (and --detail the shown picture beside them); a spatial one the shown picture.
    tile = None if found[0].get("latent", "global") == "spatial" else (found[0]["width"], found[0]["height"])
    source = LiveSource(args.input, tile, full=bool(look.detail),
                        audio_track=audio_track, reconnect=args.reconnect, depth=batch_size)
    if not source.rehearsal:  # a camera or stream is opened first: its error comes before TensorFlow
        source.start().wait_ready()
    try:
        cli.quiet_tensorflow()
        from vae import device, export
        device.report(batch_size=batch_size)
        if encoder_note:
            info(encoder_note)
        models = export.Models(args.models, unsafe=args.unsafe_models, found=found)
        if models.render_scale:  # the source hands over the shown picture, which the render then takes as it is
            info(f"live: rendered at the frame's own size; the model's render scale {models.render_scale:g} "
                 "applies to files")
            models.render_scale = None
        session = mogrify.Session(models, sources, look, batch_size)
        shown = source.size if not source.rehearsal else video.probe(args.input).display_size
        # A trained source's mean, or (None) a running mean of the input's own codes; keyframes
        # count from the run's first frame.
        mean = None if args.source is None else sources[args.source]["mean"]
        styler = session.styler(mean, shown, start=None)
        styler.warm_up()  # traced now, so that the first live frames do not wait for it (and are not dropped)
        if os.environ.get("VAE_LIVE_SLOW_SECONDS"):  # tests and the benchmark: a model that cannot keep up
            styler = slow_styler(styler, float(os.environ["VAE_LIVE_SLOW_SECONDS"]))
        if source.rehearsal:  # a file waits for the models, so that none of it plays unseen
            source.start().wait_ready()
        width, height = source.size
        sink = Sink(args.output, styler.frame_size, (width, height), source, codec_args=codec_args, crf=args.crf,
                    preset=args.preset)
        info(f"live: {args.input} ({width}x{height}{', with sound' if source.has_audio else ''}) -> "
             f"{args.output}, shift from {args.source or 'its own running mean'} toward {session.style!r} "
             f"({look.describe()}); Ctrl-C ends it")
        return run(source, styler, sink, batch_size)
    finally:
        source.close()


def slow_styler(styler, seconds):
    """The styler with `seconds` of extra work per batch: a test's (and a benchmark's) model
    that cannot keep up (VAE_LIVE_SLOW_SECONDS)."""
    inner = styler.style

    def style(frames):
        time.sleep(seconds)
        return inner(frames)

    styler.style = style
    return styler


def run(source, styler, sink, batch_size, meter=None):
    """The live loop until the input ends (or stays away longer than its reconnect limit),
    Ctrl-C or SIGTERM: whatever frames are waiting, up to a batch, styled and handed to the
    encoder by a second thread. Returns the meter's figures; the output is finished either way."""
    meter = meter or Meter()
    source.say = meter.say
    producer = source.producer
    meter.start(*source.baseline())
    interrupted = False

    def hand_over(batch):
        for arrival, out in batch:
            sink.write(out, arrival.frame.time, arrival.frame.duration)
            meter.handed_over(arrival.arrived)

    writer = Consumer(hand_over, depth=2)
    try:
        while True:
            items = producer.take(batch_size, timeout=0.2)
            meter.update(source.read, producer.dropped)
            meter.tick()
            if not items:
                if producer.ended:
                    break
                continue
            outs = styler.style([a.frame for a in items])
            writer.put(list(zip(items, outs)))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # A second Ctrl-C must not cut the recording's ending short.
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            source.close()
            try:
                writer.finish()
            finally:
                sink.close()
                meter.update(source.read, producer.dropped)
                meter.tick(force=True)
                meter.close()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    figures = meter.figures()
    figures["stopped"] = "interrupted" if interrupted else "input ended"
    return figures
