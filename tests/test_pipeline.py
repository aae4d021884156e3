"""The threads of vae/pipeline.py: items in order, an error surfaces once, a stop never hangs."""
import threading
import time

import pytest

from vae.pipeline import Consumer, Producer


def test_producer_hands_over_every_item_in_order():
    producer = Producer(iter(range(100)), depth=2)
    assert list(producer) == list(range(100))
    assert list(producer) == []  # ended: a second pass does not wait for items that never come
    producer.close()
    assert not producer.thread.is_alive()


def test_producer_error_surfaces_once_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise ValueError("bad frame 3")

    producer = Producer(items())
    got = []
    with pytest.raises(ValueError, match="bad frame 3"):
        for item in producer:
            got.append(item)
    assert got == [1, 2]
    assert list(producer) == []  # raised once, then the end
    producer.close()


def test_producer_close_stops_an_endless_source_and_closes_it():
    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()  # a generator owning an ffmpeg process kills it here

    producer = Producer(endless(), depth=3)
    first = []
    for item in producer:
        first.append(item)
        if len(first) == 5:
            break
    started = time.monotonic()
    producer.close()
    assert time.monotonic() - started < 2
    assert first == [0, 1, 2, 3, 4]
    assert closed.wait(2) and not producer.thread.is_alive()


def test_consumer_calls_fn_for_every_item_in_order():
    seen = []
    consumer = Consumer(seen.append, depth=2)
    for i in range(50):
        consumer.put(i)
    consumer.finish()
    assert seen == list(range(50))
    assert not consumer.thread.is_alive()


def test_consumer_error_surfaces_once_and_later_items_are_dropped():
    seen = []

    def fn(item):
        if item == 3:
            raise OSError("disk full")
        seen.append(item)

    consumer = Consumer(fn, depth=1)
    raised = []
    for i in range(20):
        try:
            consumer.put(i)
        except OSError as e:
            raised.append((i, str(e)))
    consumer.finish()  # already surfaced in put(): not raised a second time
    assert len(raised) == 1 and raised[0][1] == "disk full" and raised[0][0] > 3
    assert seen == [0, 1, 2]


def test_consumer_error_at_the_end_surfaces_in_finish():
    def fn(item):
        raise RuntimeError(f"cannot encode {item}")

    consumer = Consumer(fn)
    consumer.put("last")
    with pytest.raises(RuntimeError, match="cannot encode last"):
        consumer.finish()


def test_abandon_never_hangs_even_with_a_full_queue():
    release = threading.Event()
    consumer = Consumer(lambda item: release.wait(5), depth=1)
    consumer.put(1)  # taken by the thread, which now blocks in fn
    consumer.put(2)  # fills the queue
    started = time.monotonic()
    consumer.abandon()
    assert time.monotonic() - started < 1
    release.set()
    consumer.thread.join(5)
    assert not consumer.thread.is_alive()


def test_drop_oldest_never_blocks_the_source_and_counts_what_it_drops():
    producer = Producer(iter(range(100)), depth=4, drop_oldest=True)
    producer.thread.join(5)  # nobody takes: the thread still runs to the end of its items
    assert not producer.thread.is_alive()
    got = producer.take(10)
    assert got == list(range(97, 100))  # the newest wait, with the end behind them
    assert producer.dropped == 97  # the end, too, pushed out the oldest item
    assert producer.take(10) == [] and producer.ended
    producer.close()


def test_take_returns_what_is_waiting_up_to_the_batch():
    release = threading.Event()

    def items():
        yield from range(5)
        release.wait(5)
        yield 5

    producer = Producer(items(), depth=10)
    time.sleep(0.3)
    assert producer.take(3) == [0, 1, 2]
    assert producer.take(10) == [3, 4]  # whatever is there, without waiting for a full batch
    assert producer.take(10, timeout=0.1) == [] and not producer.ended  # nothing yet, not the end
    release.set()
    assert producer.take(10, timeout=5) == [5]
    assert producer.take(10, timeout=5) == [] and producer.ended
    producer.close()


def test_take_raises_the_error_after_the_items_before_it():
    def items():
        yield 1
        raise ValueError("input lost")

    producer = Producer(items(), drop_oldest=True)
    time.sleep(0.2)
    assert producer.take(10) == [1]
    with pytest.raises(ValueError, match="input lost"):
        producer.take(10)
    assert producer.take(10) == []
    producer.close()
