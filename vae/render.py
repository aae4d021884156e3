"""The one render loop: frames from a source, through the styler, into one or more sinks, watched
by observers. Files, stills, folders and live streams are each a choice of these parts:

    source (vae/sources.py) -> styler (mogrify.Styler) -> sinks (vae/sinks.py)
                                                        -> observers (progress, measures, live meter)

The models run on the calling thread, a batch at a time; smoothing, composing, writing and the
observers' work run on another thread behind them (OpenCV and the pipes release the GIL), and the
source decodes on a third ahead of them, so the models never wait on video I/O.
"""
import signal

from vae.cli import StopRequest, signals_handled
from vae.pipeline import Consumer


class Observer:
    """Watches a run; each method may be left out."""

    def start(self, source):
        """Before the first frame is taken."""

    def tick(self, source):
        """On the loop's thread, after every take (at least five times a second while frames come)."""

    def add(self, frame, out):
        """On the writing thread, for every frame written, with what was written."""

    def close(self):
        """After the sinks were closed or aborted."""


def run(source, styler, sinks, observers=(), interrupt_ends=False):
    """Every frame of `source` through `styler` into every sink, until the source ends. Returns
    "input ended", or with `interrupt_ends` (live) "interrupted" when Ctrl-C or SIGTERM stopped
    it: the sinks are then closed as at the end. Otherwise an error or an interrupt aborts the
    sinks (a file leaves nothing behind) and is raised."""
    def deliver(item):
        frames, parts = item
        for frame, out in zip(frames, styler.finish(frames, parts)):
            for sink in sinks:
                sink.write(out, frame.time, frame.duration)
            for observer in observers:
                observer.add(frame, out)

    for observer in observers:
        observer.start(source)
    writer = Consumer(deliver, depth=2)
    stopped = "input ended"
    try:
        try:
            with StopRequest() as stop:  # taken between batches, never inside a model call
                while True:
                    if stop.signum is not None:
                        raise KeyboardInterrupt
                    frames = source.take(styler.batch_size, timeout=0.2)
                    for observer in observers:
                        observer.tick(source)
                    if not frames:
                        if source.ended:
                            break
                        continue
                    writer.put((frames, styler.run(frames)))
        except KeyboardInterrupt:
            if not interrupt_ends:
                raise
            stopped = "interrupted"
        with signals_handled(signal.SIG_IGN):  # a second Ctrl-C must not cut the output's ending short
            source.close()
            writer.finish()
            for sink in sinks:
                sink.close()
    except BaseException:
        with signals_handled(signal.SIG_IGN):
            source.close()
            writer.abandon()
            for sink in sinks:
                sink.abort()
        raise
    finally:
        for observer in observers:
            observer.tick(source)
            observer.close()
    return stopped


class Tally(Observer):
    """Frames written, and the span of time they cover."""

    def __init__(self):
        self.frames, self.first, self.last = 0, None, None

    def add(self, frame, out):
        self.first = frame.time if self.first is None else self.first
        self.last = frame.time + frame.duration
        self.frames += 1

    @property
    def seconds(self):
        return 0.0 if self.first is None else round(self.last - self.first, 6)


class Measured(Observer):
    """The look's measures (vae.measures.Measures) on what was written, against the shown frame."""

    def __init__(self, measures):
        self.measures = measures

    def add(self, frame, out):
        self.measures.add(frame.index, frame.full if frame.full is not None else frame.image, out)


class Progress(Observer):
    """A progress bar over an estimated frame count; `exact` (a future) may bring the true count."""

    def __init__(self, estimate, exact=None):
        from vae.cli import progress
        self.bar, self.exact = progress(total=estimate, desc="frames, about", unit="frame"), exact

    def add(self, frame, out):
        if self.exact is not None and self.exact.done() and self.exact.result() and self.bar.desc != "frames":
            self.bar.total, self.bar.desc = self.exact.result(), "frames"
        self.bar.update(1)

    def close(self):
        self.bar.close()
