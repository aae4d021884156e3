"""Threads that keep the models busy: a producer ahead of them and a consumer behind them."""
import queue
import threading

_END = object()


class Producer:
    """Runs an iterable in a thread and hands its items over a bounded queue.

    An error in the thread is raised once in the consumer, which then sees the end; close()
    stops the thread and closes the iterable there (a generator that owns an ffmpeg process
    kills it on close).
    """

    def __init__(self, iterable, depth=3):
        self.queue = queue.Queue(depth)
        self.stopped = threading.Event()
        self.ended = False
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
        while not self.ended:
            item = self.queue.get()
            if item is _END or isinstance(item, BaseException):
                self.ended = True  # a second pass ends at once instead of waiting for nothing
                if item is not _END:
                    raise item
                return
            yield item

    def close(self):
        self.stopped.set()
        self.thread.join(timeout=10)


class Consumer:
    """Calls fn(item) in a thread for every item put; its first error surfaces once, in put()
    or finish(), and later items are dropped."""

    def __init__(self, fn, depth=3):
        self.fn, self.error, self.raised = fn, None, False
        self.abandoned = threading.Event()
        self.queue = queue.Queue(depth)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                item = self.queue.get(timeout=0.1)
            except queue.Empty:
                if self.abandoned.is_set():  # abandon() may have found the queue full
                    return
                continue
            if item is _END or self.abandoned.is_set():
                return
            if self.error is None:
                try:
                    self.fn(item)
                except BaseException as e:
                    self.error = e

    def _surface(self):
        if self.error is not None and not self.raised:
            self.raised = True
            raise self.error

    def put(self, item):
        self._surface()
        self.queue.put(item)

    def finish(self):
        self.queue.put(_END)
        self.thread.join()
        self._surface()

    def abandon(self):
        self.error = self.error or RuntimeError("abandoned")
        self.abandoned.set()
        try:
            self.queue.put_nowait(_END)
        except queue.Full:
            pass
