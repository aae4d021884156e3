"""Threads that keep the models busy: a producer ahead of them and a consumer behind them."""
import queue
import threading

_END = object()


class Producer:
    """Runs an iterable in a thread and hands its items over a bounded queue.

    An error in the thread is raised once in the consumer, which then sees the end; close()
    stops the thread and closes the iterable there (a generator that owns an ffmpeg process
    kills it on close).

    With drop_oldest (a live source, which cannot be paused) the thread never waits: when the
    queue is full the oldest waiting item is thrown away and counted in `dropped`, so what the
    consumer takes is at most `depth` items old.
    """

    def __init__(self, iterable, depth=3, drop_oldest=False):
        self.queue = queue.Queue(depth)
        self.stopped = threading.Event()
        self.ended = False
        self.drop_oldest, self.dropped = drop_oldest, 0
        self.thread = threading.Thread(target=self._run, args=(iterable,), daemon=True)
        self.thread.start()

    def _offer_dropping(self, item):
        while True:
            try:
                self.queue.put_nowait(item)
                return True
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.dropped += 1  # only this thread writes it
                except queue.Empty:  # the consumer took one meanwhile
                    pass

    def _offer(self, item):
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def _run(self, iterable):
        offer = self._offer
        try:
            offer = self._offer_dropping if self.drop_oldest else self._offer
            for item in iterable:
                if self.stopped.is_set() or not offer(item):
                    break
            offer(_END)
        except BaseException as e:  # handed to the consumer
            offer(e)
        finally:
            close = getattr(iterable, "close", None)
            if close:
                close()

    def __iter__(self):
        while not self.ended:
            item = self.queue.get()
            if self._finished(item):
                return
            yield item

    def _finished(self, item):
        if item is _END or isinstance(item, BaseException):
            self.ended = True  # a second pass ends at once instead of waiting for nothing
            if item is not _END:
                raise item
            return True
        return False

    def take(self, max_items, timeout=None):
        """Whatever items are waiting, at least one and up to max_items: the first waited for
        (up to `timeout` seconds: then []), the rest only if already there. [] at the end, after
        the thread's error (if any) was raised once."""
        if self.ended:
            return []
        try:
            first = self.queue.get(timeout=timeout)
        except queue.Empty:
            return []
        if self._finished(first):
            return []
        items = [first]
        while len(items) < max_items:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if item is _END or isinstance(item, BaseException):
                self.queue.put(item)  # the end (or error) comes at the next take, after these items
                break
            items.append(item)
        return items

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
