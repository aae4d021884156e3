"""Where a render's frames come from. A source hands over frames (decode.Frame) with their times:

    source.take(max_items, timeout) -> [Frame, ...]   # [] on a timeout, or at the end
    source.ended                                        # True once everything was taken
    source.close()

A file waits for the models (nothing is lost); a live input cannot wait, so it keeps at most a
batch waiting and drops the oldest frame when the models fall behind. Decoding runs in a thread
of its own (ffmpeg's pipes release the GIL), ahead of the models. A new way in is one class here.
"""
import collections
import math
import re
import threading
import time

from vae import decode, probe
from vae.cli import UserError, info
from vae.pipeline import Producer

STREAM_SCHEMES = ("udp", "srt", "rtmp", "rtmps", "rtsp", "rtsps", "http", "https", "tcp", "rtp")
DEVICE_FORMATS = ("v4l2", "avfoundation", "dshow", "x11grab", "gdigrab")
# An input that gives no picture this long cannot be opened. Within it, an input that was reached
# but gave no picture (a stream joined between keyframes, whose picture size ffmpeg could not
# find yet) is tried again; one that could not be reached at all (refused, no such device) is not.
OPEN_SECONDS = 8.0
STALL_SECONDS = 2.0  # a connection silent this long has dropped out
CLOCK_JUMP_SECONDS = 1.0  # a frame further back in time than this: the sender's clock was reset
SOUND_SECONDS = 20  # sound kept waiting for its pictures at most


def scheme(text):
    found = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", text)
    return found.group(1).lower() if found else None


def capture_device(text):
    """(ffmpeg input format, device name) of a capture device, or None: /dev/videoN (v4l2), or
    FORMAT:NAME with FORMAT one of DEVICE_FORMATS (avfoundation:0, dshow:video=Cam)."""
    if re.match(r"^/dev/video\d+$", text):
        return "v4l2", text
    fmt, colon, name = text.partition(":")
    if colon and fmt in DEVICE_FORMATS and name:
        return fmt, name
    return None


def listens(text):
    """A URL on which ffmpeg waits for a caller (srt mode=listener, tcp listen=1): its open blocks
    until someone calls, and closing it hangs up on the caller. (An rtmp URL cannot ask to listen.)"""
    kind, query = scheme(text), text.partition("?")[2]
    if kind == "srt":
        return re.search(r"(^|&)mode=listener(&|$)", query) is not None
    return kind == "tcp" and re.search(r"(^|&)listen=[12](&|$)", query) is not None


def calls_out(text):
    """A URL on which ffmpeg calls a server or a sender, which may refuse it some way off (tcp,
    srt's caller, rtmp, rtsp, http); a udp or rtp port, a listener or a device only fails here,
    at once."""
    kind = scheme(text)
    return kind in STREAM_SCHEMES and kind not in ("udp", "rtp") and not listens(text)


def is_live_input(text):
    """A stream URL or a capture device: --live is implied."""
    return scheme(text) in STREAM_SCHEMES or capture_device(text) is not None


class VideoSource:
    """A video file's frames at `render_size`, in batches of `batch_size`, each batch decoded
    while the models work on the one before (see decode.read_frames for the rest)."""

    def __init__(self, meta, render_size, batch_size, crop=probe.Crop(), full=0, start=None, duration=None,
                 decoder_args=()):
        self.meta, self.size, self.has_audio = meta, crop.size_of(meta.width, meta.height), meta.has_audio
        frames = decode.read_frames(meta, render_size, crop, full=full, start=start, duration=duration,
                                    input_args=decoder_args)
        self._batches = Producer(batched(frames, batch_size))

    @property
    def ended(self):
        return self._batches.ended

    def take(self, max_items, timeout=None):
        taken = self._batches.take(1, timeout)
        return taken[0] if taken else []

    def close(self):
        self._batches.close()


def batched(frames, batch_size):
    batch = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


class StillSource:
    """One image as a single frame at time 0: `image` at the render size, `full` the image at its
    own size when that is another."""

    def __init__(self, image, full=None):
        self.frames = [decode.Frame(0, image, 0.0, 0.0, full)]
        self.size, self.has_audio = (full if full is not None else image).shape[1::-1], False

    @property
    def ended(self):
        return not self.frames

    def take(self, max_items, timeout=None):
        taken, self.frames = self.frames, []
        return taken

    def close(self):
        self.frames = []


class LiveSound:
    """The sound of a live input, waiting for the pictures it goes with: blocks of every connection
    in arrival order, each placed on the run's clock once its connection's first picture placed
    that connection (`connection.offset`)."""

    def __init__(self):
        self.blocks = collections.deque(maxlen=int(SOUND_SECONDS * decode.SOUND_RATE / 1024))

    def add(self, connection, sound):
        self.blocks.append((connection, sound))

    def take_until(self, until):
        """The blocks (decode.Sound, on the run's clock) that start before `until` seconds."""
        out = []
        while self.blocks:
            connection, sound = self.blocks[0]
            if connection.offset is None:
                if not connection.closed:
                    break  # its connection has no picture yet: its place on the clock is unknown
                self.blocks.popleft()
                continue
            at = sound.time + connection.offset
            if at >= until:
                break
            self.blocks.popleft()
            out.append(decode.Sound(at, sound.data))
        return out


class LiveSource:
    """Frames of a stream, a capture device or (a rehearsal) a file read at its own rate.

    One ffmpeg process per connection (decode.Connection) with low-latency input flags gives the
    tile-size picture, the shown picture (`full`, for --detail) and the sound, or without a tile
    (a spatial model) the shown picture shrunk to `render_size(shown)`; frames carry their
    arrival time. A connection that stops delivering is dropped and opened again for up to
    `reconnect` seconds. start() begins reading behind a drop-oldest queue of `depth` frames;
    wait_ready() returns once the first frame is in, or raises a one-line UserError. The sound
    waits in `sound` (LiveSound) on the frames' clock.
    """

    def __init__(self, text, tile, full=False, audio_track=0, reconnect=10.0, depth=8, render_size=None):
        self.text, self.tile, self.full, self.reconnect, self.depth = text, tile, full, reconnect, depth
        self.render_size = render_size  # a spatial model's (no tile): the shown size -> the size it sees
        self.audio_track = audio_track
        self.device = capture_device(text)
        self.rehearsal = not is_live_input(text)  # a file, read at its own rate: its end is the end
        self.sound = LiveSound()
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.size = None  # (width, height) as shown, even, of the first connection
        self.has_audio = audio_track is not None
        self.read = 0  # frames that arrived
        self.producer = None
        self.say = info  # the live meter hands its own, so that a message never lands inside the status line

    def input_args(self):
        low_latency = ["-fflags", "nobuffer", "-flags", "low_delay", "-probesize", "500000",
                       "-analyzeduration", "500000"]
        if self.device:
            fmt, name = self.device
            return [*low_latency, "-thread_queue_size", "64", "-f", fmt, "-i", name]
        if self.rehearsal:
            return ["-re", "-i", self.text]
        extra = {"udp": ["-overrun_nonfatal", "1", "-fifo_size", "100000"],
                 "rtsp": ["-rtsp_flags", "prefer_tcp"]}.get(scheme(self.text), [])
        if ".m3u8" in self.text:  # HLS comes a segment at a time: paced, or each would be a burst and a gap
            extra = ["-re"]
        return [*low_latency, *extra, "-i", self.text]

    def start(self):
        self.producer = Producer(self._frames(), depth=self.depth, drop_oldest=True)
        return self

    def wait_ready(self, seconds=None):
        """The shown size once the first frame has arrived, or None when `seconds` passed first;
        the input's error (one line) when it cannot be opened."""
        until = None if seconds is None else time.monotonic() + seconds
        while not self.ready.wait(0.05):
            if not self.producer.thread.is_alive() or self.producer.queue.qsize():
                if self.ready.is_set():  # the first frame came meanwhile: it is the run's, not ours to take
                    break
                # No frame came before it, so what waits is the thread's error (raised here) or its end.
                self.producer.take(1, timeout=0.05)
                if self.producer.ended:
                    raise UserError(f"{self.text}: the input ended before its first frame")
            if until is not None and time.monotonic() > until:
                return None
        return self.size

    @property
    def ended(self):
        return self.producer.ended

    @property
    def dropped(self):
        return self.producer.dropped

    def take(self, max_items, timeout=None):
        return self.producer.take(max_items, timeout)

    def baseline(self):
        """(frames read, frames dropped) before the run proper: a camera's or stream's frames that
        came while the models loaded are not the run's (those still waiting are); a rehearsal's
        are all its own."""
        if self.rehearsal:
            return 0, 0
        return self.read - self.producer.queue.qsize(), self.producer.dropped

    def close(self):
        self.stopping.set()
        if self.producer:
            self.producer.close()

    def _scaled(self, shown):
        """(the picture at the render size, the shown one when --detail needs it) from the shown
        picture; shrunk by area, as ffmpeg shrinks a file's frames (cv2 leaves the GIL meanwhile)."""
        import cv2
        width, height = self.render_size((shown.shape[1], shown.shape[0]))
        if (width, height) == (shown.shape[1], shown.shape[0]):
            return shown, None
        return cv2.resize(shown, (width, height), interpolation=cv2.INTER_AREA), (shown if self.full else None)

    def _connect(self, audio_track):
        # A reconnection keeps the first connection's shown size (the styler and the sink have it).
        full = self.size if ((self.full or self.tile is None) and self.size) else self.full
        return decode.Connection(self.input_args(), self.tile, full, audio_track, self.sound.add, self.stopping)

    def _frames(self):
        index, last, anchor, lost_at = 0, None, None, None
        audio_track, began = self.audio_track, time.monotonic()
        while not self.stopping.is_set():
            connection = self._connect(audio_track)
            if lost_at is None and index == 0 and listens(self.text):
                # A listener waits for its caller as long as it takes (a performer starts the run,
                # then the sender); the time for a first picture counts from the call.
                self.say(f"{self.text}: listening, waiting for a caller")
                while (not self.stopping.is_set() and connection.proc.poll() is None
                       and not any(line.startswith("Input #") for line in connection.header)):
                    self.stopping.wait(0.2)
                began = time.monotonic()
            if lost_at is None:
                wait = max(0.5, began + OPEN_SECONDS - time.monotonic())
            else:
                wait = max(0.5, lost_at + self.reconnect - time.monotonic())
            got = 0
            try:
                # A file does not drop out: a pause in it is a busy machine, and it ends at its end.
                stall = math.inf if self.rehearsal else STALL_SECONDS
                for image, pts, duration, full in connection.frames(wait, stall):
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
                    if last is not None and t <= last:
                        if last - t < CLOCK_JUMP_SECONDS:
                            # A frame at a time already shown (a decoder's guess after a lost
                            # packet repeats the last one's): it has no place of its own, and
                            # moving the clock for it would put every later frame a frame late.
                            continue
                        # The sender's clock jumped back (it restarted): follow on from the last frame.
                        connection.offset += last - t + (duration or 0.001)
                        t = pts + connection.offset
                    last = t
                    self.read += 1
                    if self.render_size:  # a spatial model at its render scale
                        image, full = self._scaled(image)
                    yield decode.Frame(index, image, t, duration, full, arrived)
                    index += 1
            finally:
                connection.close()
            if self.stopping.is_set() or (self.rehearsal and index):
                return
            if connection.no_audio and audio_track is not None and got == 0:
                audio_track = None  # the input has no sound: open it again for the picture alone
                self.has_audio = False
                # ffmpeg cannot keep an output with no stream, so the connection was closed: a caller
                # was hung up on, and a server must take a second one (ffmpeg's -listen 1 does not).
                if listens(self.text):
                    self.say(f"warning: {self.text}: the caller sends no sound; listening again for the picture "
                             "alone: the sender must call again (or start with --no-audio)")
                elif not self.rehearsal and not self.device and scheme(self.text) not in ("udp", "rtp"):
                    self.say(f"warning: {self.text}: no sound; connecting again for the picture alone "
                             "(--no-audio connects once)")
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

    @staticmethod
    def _offset(pts, arrived, anchor, last):
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
        try:
            meta = probe.parse_probe(self.text, "\n".join(connection.header))
            w, h = meta.display_size
            return w - w % 2, h - h % 2
        except UserError:
            return self.tile
