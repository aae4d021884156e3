"""Running the ffmpeg binary that imageio-ffmpeg ships: finding it, draining what it says, and
reading its raw pictures off a pipe. Every call passes an argument list, never a shell string,
so any file name is safe."""
import collections
import queue
import re
import threading
from fractions import Fraction

import numpy as np

_exe = None


def exe():
    global _exe
    if _exe is None:
        import imageio_ffmpeg  # only when ffmpeg is first needed: its import looks for the binary
        _exe = imageio_ffmpeg.get_ffmpeg_exe()
    return _exe


def complaint(lines):
    """The last thing ffmpeg complained about, in one line without its [component @ 0x...]
    prefixes; None if it said nothing."""
    for line in reversed(lines):
        text = re.sub(r"^(\[[^]]*\] *)+", "", line).strip()
        if text and not text.startswith(("Stream", "Input", "Output", "Metadata", "Duration", "Program",
                                         "Error opening input", "Error opening output file")):
            return text  # the cause is said before those summaries
    return None


class Log(threading.Thread):
    """Drains a process's stderr so that it never blocks, keeping the last lines for errors.

    The times that `showinfo` prints for each picture go to `stamps` as (seconds, seconds long),
    and those that `ashowinfo` prints for each block of sound to `sound_stamps` as (seconds,
    samples), in the order ffmpeg printed them, which is the order it writes the data (the sound's
    chain must set its time base to 1/rate: `asettb=1/RATE`); `on_line` sees every other line.

    ffmpeg prints such a line in several pieces, and a piece from another thread (another filter
    graph, a decoder's warning) can land inside it and take its line away: a stamp that the
    frame numbers (`n:`) say is missing is put back, next to its neighbours, so that no picture
    or sound is ever paired with another's time. (In one filter graph, one thread, none would be
    lost, but the pictures would wait for the first sound: see decode.Connection.)
    """
    PICTURE = re.compile(r"Parsed_showinfo.*?\bn:\s*(\d+)\s+pts:\s*(-?\d+)\s.*?duration:\s*(-?\d+)")
    SOUND = re.compile(r"Parsed_ashowinfo.*?\bn:\s*(\d+)\s+pts:\s*(-?\d+)\s.*?\brate:\s*(\d+).*?\bnb_samples:\s*(\d+)")
    TIME_BASE = re.compile(r"Parsed_showinfo.*?config in time_base: (\d+)/(\d+)")

    def __init__(self, stream, on_line=None, keep=20):
        super().__init__(daemon=True)
        self.stream, self.on_line = stream, on_line
        self.lines = collections.deque(maxlen=keep)
        self.stamps, self.sound_stamps = queue.Queue(), queue.Queue()
        self.time_base = Fraction(1, 1000000)
        self.last_picture = self.last_sound = None  # (n, seconds, seconds long or samples)
        self.start()

    def run(self):
        for raw in iter(self.stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            picture = self.PICTURE.search(line)
            if picture:
                n, pts, duration = (int(v) for v in picture.groups())
                self._picture(n, float(pts * self.time_base), max(0.0, float(duration * self.time_base)))
                continue
            sound = self.SOUND.search(line)
            if sound:
                n, pts, rate, samples = (int(v) for v in sound.groups())
                self._sound(n, pts / rate, samples, rate)
                continue
            base = self.TIME_BASE.search(line)
            if base and int(base.group(1)) and int(base.group(2)):
                self.time_base = Fraction(int(base.group(1)), int(base.group(2)))
                continue
            if re.match(r"\[Parsed_a?showinfo", line):  # its other lines (an error naming the filter is not one)
                continue
            if self.on_line:
                self.on_line(line)
            if line.strip():
                self.lines.append(line)
        self.stamps.put(None)
        self.sound_stamps.put(None)

    def _picture(self, n, seconds, duration):
        last = self.last_picture
        if last is None:  # lost before the first one known: a frame long each, back to back before it
            lost = [(seconds - k * duration, duration) for k in range(n, 0, -1)]
        else:  # evenly between the last one known and this one
            lost = [(last[1] + (seconds - last[1]) * k / (n - last[0]), last[2]) for k in range(1, n - last[0])]
        for stamp in lost:
            self.stamps.put(stamp)
        self.last_picture = (n, seconds, duration)
        self.stamps.put((seconds, duration))

    def _sound(self, n, seconds, samples, rate):
        lost = n - (self.last_sound[0] if self.last_sound is not None else -1) - 1
        for k in range(lost, 0, -1):  # as long as this one, back to back before it
            self.sound_stamps.put((seconds - k * samples / rate, samples))
        self.last_sound = (n, seconds, samples)
        self.sound_stamps.put((seconds, samples))

    def text(self):
        self.join(timeout=5)
        return "\n".join(self.lines)

    def reason(self):
        self.join(timeout=2)
        return complaint(list(self.lines))


def read_exactly(stream, shape, dtype=np.uint8):
    """An array of `shape` read whole from a pipe, or None at its end."""
    out = np.empty(shape, dtype)
    view, got = memoryview(out).cast("B"), 0
    while got < len(view):
        n = stream.readinto(view[got:])
        if not n:
            return None
        got += n
    return out
