"""Threads that keep the models busy: a producer ahead of them and a consumer behind them."""
import queue
import threading

_END = object()


class Producer:
    """Runs an iterable in a thread and hands its items over a bounded queue.

    Errors in the thread are raised in the consumer; close() stops the thread and closes the
    iterable there (a generator that owns an ffmpeg process kills it on close).
    """

    def __init__(self, iterable, depth=3):
        self.queue = queue.Queue(depth)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(iterable,), daemon=True)
        self.thread.start()

    def _offer(self, item):
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def _run(self, iterable):
        try:
            for item in iterable:
                if not self._offer(item):
                    break
            self._offer(_END)
        except BaseException as e:  # handed to the consumer
            self._offer(e)
        finally:
            close = getattr(iterable, "close", None)
            if close:
                close()

    def __iter__(self):
        while True:
            item = self.queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self):
        self.stopped.set()
        self.thread.join(timeout=10)


class Consumer:
    """Calls fn(item) in a thread for every item put; its first error surfaces in put() or finish()."""

    def __init__(self, fn, depth=3):
        self.fn, self.error = fn, None
        self.queue = queue.Queue(depth)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            item = self.queue.get()
            if item is _END:
                return
            if self.error is None:
                try:
                    self.fn(item)
                except BaseException as e:
                    self.error = e

    def put(self, item):
        if self.error is not None:
            raise self.error
        self.queue.put(item)

    def finish(self):
        self.queue.put(_END)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def abandon(self):
        self.error = self.error or RuntimeError("abandoned")
        try:
            self.queue.put_nowait(_END)
        except queue.Full:
            pass
