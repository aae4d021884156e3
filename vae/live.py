"""Live rendering: a camera or a network stream in, a styled stream or a growing file out.

The same loop and styler as a file's render (vae/render.py, mogrify.Styler), with the parts a live
input needs: a drop-oldest LiveSource (vae/sources.py: one ffmpeg process per connection with
low-latency flags, the sound from the same connection, reconnection), a LiveSink (vae/sinks.py:
low-latency encoding to a stream URL or a file playable at every moment) and the Meter below as
its observer. The source mean is a running mean of the input's own codes unless `--source` names
a trained one.

Start-up is overlapped: the input is opened while TensorFlow loads and the models are read and
traced, so the first styled frame follows the models by a batch.
"""
import collections
import dataclasses
import os
import sys
import threading
import time

import numpy as np

from vae import probe, render as loop, sinks, sources
from vae.cli import UserError, info

# Frames per model call, and frames waiting at most: the delay is about two batches, so live
# batches are smaller than a file's (mogrify.default_batch_size).
BATCH_SIZE = 8
# An input refused at once is said before TensorFlow loads: a server's refusal can take a round
# trip; a port or device that cannot be opened here fails within ffmpeg's start (70 ms measured).
QUICK_FAILURE_SECONDS = {"called": 0.5, "local": 0.2}


@dataclasses.dataclass
class LiveOptions:
    """How a live run reads and writes (checked once, by check_request)."""
    input: str
    output: str
    source: str = None  # the trained source whose mean is removed; None: a running mean of the input's
    reconnect: float = 10.0
    audio_track: int = 0  # None: no sound
    batch_size: int = BATCH_SIZE
    codec_args: list = None
    crf: int = 18
    preset: str = "veryfast"
    unavailable: list = dataclasses.field(default_factory=list)  # the file-only options given (--start, ...)


def check_request(options, models_dir, look):
    """Everything about a live run that needs no TensorFlow (cf. mogrify.check_request): the
    input and output, the options a live run has not, the models folder, the --style and
    --source names. Returns (safety.read_models_folder's answer, the sources)."""
    from vae import mogrify
    for name in options.unavailable:
        raise UserError(f"{name} is not available live" + (" (the whole frame is rendered)" if name == "--crop" else ""))
    if options.reconnect is None or not options.reconnect >= 0:
        raise UserError("--reconnect must be at least 0 seconds")
    live_input = sources.is_live_input(options.input)
    if not live_input and not os.path.isfile(options.input):
        raise UserError(f"{options.input}: no such file, and not a stream URL or capture device")
    if sinks.live_format(options.output) == "v4l2" and not os.path.exists(options.output):
        raise UserError(f"{options.output}: no such video device (a virtual camera needs v4l2loopback loaded)")
    if not sources.scheme(options.output):
        folder = os.path.dirname(os.path.abspath(options.output))
        if not os.path.isdir(folder):
            raise UserError(f"{options.output}: its folder does not exist")
        if not live_input and os.path.abspath(options.input) == os.path.abspath(options.output):
            raise UserError(f"{options.output}: that is the input; give another output name")
    found, known = mogrify.check_models(models_dir, look)
    if options.source is not None and options.source not in known:
        raise UserError(f"unknown --source {options.source!r}; known sources: {', '.join(sorted(known))}")
    return found, known


class Meter(loop.Observer):
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

    def start(self, source):
        """Count from here: what came and was dropped while the models loaded is not the run's."""
        self.began = self.shown = time.monotonic()
        self.read_base, self.dropped_base = source.baseline()
        source.say = self.say

    def add(self, frame, out):
        """A frame handed to the encoder: its delay from arrival."""
        now = time.monotonic()
        arrived = frame.arrived
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

    def tick(self, source):
        self.read, self.dropped = source.read - self.read_base, source.dropped - self.dropped_base
        now = time.monotonic()
        if now - self.shown < self.every:
            return
        self.show()

    def show(self):
        self.shown = time.monotonic()
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
        self.show()
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()




def render(options, models_dir, look, encoder_note=None, unsafe_models=False):
    """A live run: the input opened while TensorFlow and the models load, then the loop until the
    input ends, Ctrl-C or SIGTERM. Returns the meter's figures."""
    from vae import cli, mogrify
    cli.raise_on_sigterm()
    found, known = check_request(options, models_dir, look)
    spatial = found[0].get("latent", "global") == "spatial"
    # A global model sees tiles (and --detail the shown picture beside them); a spatial one the
    # shown picture at the scale it learned (or fitted into --render-size), as a file's render does.
    tile = None if spatial else (found[0]["width"], found[0]["height"])
    render_size = (lambda shown: mogrify.spatial_render_size(shown, found[0].get("render_scale"), look)) \
        if spatial else None
    source = sources.LiveSource(options.input, tile, full=bool(look.detail), audio_track=options.audio_track,
                                reconnect=options.reconnect, depth=options.batch_size, render_size=render_size)
    try:
        if not source.rehearsal:  # a camera or stream opens while TensorFlow loads; a refusal is said first
            source.start().wait_ready(QUICK_FAILURE_SECONDS["called" if sources.calls_out(options.input) else "local"])
        cli.quiet_tensorflow()
        from vae import device, export
        device.report(batch_size=options.batch_size)
        if encoder_note:
            info(encoder_note)
        models = export.Models(models_dir, unsafe=unsafe_models, found=found)
        session = mogrify.Session(models, known, look, options.batch_size)
        # A trained source's mean, or (None) a running mean of the input's own codes; keyframes
        # count from the run's first frame.
        mean = None if options.source is None else known[options.source]["mean"]
        session.styler(mean, (tile or (64, 64)), start=None).warm_up()  # traced once, while the input opens
        if source.rehearsal:  # a file waits for everything else, so that none of it plays unseen
            meta = probe.probe(options.input)
            shown, has_audio = (meta.width - meta.width % 2, meta.height - meta.height % 2), meta.has_audio
        else:
            shown, has_audio = source.wait_ready(), source.has_audio
        styler = session.styler(mean, shown, start=None)
        sink = sinks.LiveSink(options.output, styler.frame_size, shown,
                              source.sound if has_audio and options.audio_track is not None else None,
                              codec_args=options.codec_args, crf=options.crf, preset=options.preset)
        if source.rehearsal:
            source.start().wait_ready()
        rendered = f", rendered at {styler.render_size[0]}x{styler.render_size[1]}{session.scale_note()}" \
            if spatial and styler.render_size != shown else ""
        info(f"live: {options.input} ({shown[0]}x{shown[1]}{', with sound' if source.has_audio else ''}{rendered}) -> "
             f"{options.output}, shift from {options.source or 'its own running mean'} toward {session.style!r} "
             f"({look.describe()}); Ctrl-C ends it")
        meter = Meter()
        stopped = loop.run(source, styler, [sink], [meter], interrupt_ends=True)
    finally:
        source.close()
    return {**meter.figures(), "stopped": stopped}
