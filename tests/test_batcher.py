"""MicroBatcher: batches close by size or by time since their first item (no broker)."""

from __future__ import annotations

import asyncio
import time

import pytest

from streamcompose.batching.batcher import BatchStats, MicroBatcher

# Generous upper bound for "returned promptly" on a loaded CI machine.
SLACK_S = 0.45


async def test_batch_closes_at_max_size_without_waiting() -> None:
    b: MicroBatcher[int] = MicroBatcher(max_size=3, max_wait_ms=10_000)
    for i in range(7):
        await b.put(i)
    start = time.monotonic()
    assert await b.next_batch() == [0, 1, 2]
    assert await b.next_batch() == [3, 4, 5]
    # a full batch never waits for the (10 s) timer
    assert time.monotonic() - start < SLACK_S
    assert b.pending() == 1


async def test_lone_item_closes_max_wait_after_it_arrived() -> None:
    b: MicroBatcher[str] = MicroBatcher(max_size=8, max_wait_ms=50)
    start = time.monotonic()  # before put(): the batch's clock starts at put()
    await b.put("a")
    batch = await b.next_batch()
    elapsed = time.monotonic() - start
    assert batch == ["a"]
    assert elapsed >= 0.045, f"closed early after {elapsed * 1000:.1f} ms"
    assert elapsed < 0.5


async def test_timer_counts_from_first_item_not_from_later_ones() -> None:
    """Items arriving during the wait join the batch but do not extend it."""
    b: MicroBatcher[int] = MicroBatcher(max_size=100, max_wait_ms=300)
    put_at: list[float] = []

    async def producer() -> None:
        for i in range(4):
            put_at.append(time.monotonic())
            await b.put(i)
            await asyncio.sleep(0.02)

    task = asyncio.create_task(producer())
    batch = await b.next_batch()
    closed_at = time.monotonic()
    await task
    assert batch == [0, 1, 2, 3]
    assert closed_at - put_at[0] >= 0.295  # a full max_wait after the first item
    assert closed_at - put_at[-1] < 0.295  # not restarted by the last one
    assert closed_at - put_at[0] < 0.3 + SLACK_S


async def test_next_batch_waits_for_the_first_item_then_times_from_it() -> None:
    b: MicroBatcher[int] = MicroBatcher(max_size=4, max_wait_ms=60)
    consumer = asyncio.create_task(b.next_batch())
    await asyncio.sleep(0.1)  # longer than max_wait: no first item yet, so nothing closes
    assert not consumer.done()
    put_at = time.monotonic()
    await b.put(1)
    batch = await consumer
    elapsed = time.monotonic() - put_at
    assert batch == [1]
    assert 0.055 <= elapsed < 0.06 + SLACK_S


async def test_timer_starts_at_put_so_items_queued_while_busy_close_at_once() -> None:
    b: MicroBatcher[int] = MicroBatcher(max_size=10, max_wait_ms=200)
    await b.put(1)
    await b.put(2)
    await asyncio.sleep(0.25)  # the consumer was busy longer than max_wait
    start = time.monotonic()
    batch = await b.next_batch()
    assert batch == [1, 2]
    assert time.monotonic() - start < 0.1  # not another max_wait from now


async def test_items_queued_while_busy_are_all_taken_even_past_the_deadline() -> None:
    """Once the first item is overdue the batch still takes what is already queued."""
    b: MicroBatcher[int] = MicroBatcher(max_size=3, max_wait_ms=20)
    for i in range(5):
        await b.put(i)
    await asyncio.sleep(0.05)
    assert await b.next_batch() == [0, 1, 2]
    assert await b.next_batch() == [3, 4]
    assert b.pending() == 0


async def test_max_wait_zero_returns_what_is_queued_immediately() -> None:
    b: MicroBatcher[int] = MicroBatcher(max_size=10, max_wait_ms=0)
    for i in range(3):
        await b.put(i)
    start = time.monotonic()
    assert await b.next_batch() == [0, 1, 2]
    await b.put(9)
    assert await b.next_batch() == [9]
    assert time.monotonic() - start < 0.2


async def test_set_limits_at_run_time_changes_the_next_batch() -> None:
    b: MicroBatcher[int] = MicroBatcher(max_size=2, max_wait_ms=10_000)
    for i in range(5):
        await b.put(i)
    assert await b.next_batch() == [0, 1]
    b.set_limits(max_size=3)
    assert (b.max_size, b.max_wait_s) == (3, 10.0)
    assert await b.next_batch() == [2, 3, 4]
    b.set_limits(max_wait_ms=30)
    assert (b.max_size, b.max_wait_s) == (3, pytest.approx(0.03))
    start = time.monotonic()
    await b.put(5)
    assert await b.next_batch() == [5]
    elapsed = time.monotonic() - start
    assert 0.025 <= elapsed < SLACK_S


async def test_set_limits_while_gathering_applies_to_the_open_batch() -> None:
    """Lowering max_wait closes a batch that is waiting on the old, longer limit."""
    b: MicroBatcher[int] = MicroBatcher(max_size=10, max_wait_ms=5_000)
    first_at = time.monotonic()
    await b.put(1)
    consumer = asyncio.create_task(b.next_batch())
    await asyncio.sleep(0.02)
    assert not consumer.done()
    b.set_limits(max_wait_ms=60)
    batch = await asyncio.wait_for(consumer, 1)
    elapsed = time.monotonic() - first_at
    assert batch == [1]
    assert 0.055 <= elapsed < 0.06 + SLACK_S


async def test_lowering_max_size_while_gathering_closes_on_the_next_item() -> None:
    b: MicroBatcher[int] = MicroBatcher(max_size=10, max_wait_ms=5_000)
    await b.put(1)
    consumer = asyncio.create_task(b.next_batch())
    await asyncio.sleep(0.01)
    b.set_limits(max_size=2)
    await b.put(2)
    assert await asyncio.wait_for(consumer, 1) == [1, 2]


async def test_set_limits_with_no_arguments_keeps_limits() -> None:
    b: MicroBatcher[int] = MicroBatcher(max_size=4, max_wait_ms=25)
    b.set_limits()
    assert (b.max_size, b.max_wait_s) == (4, pytest.approx(0.025))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"max_size": 0}, "max_size must be >= 1, got 0"),
    ({"max_size": -3}, "max_size must be >= 1"),
    ({"max_wait_ms": -1}, "max_wait_ms must be >= 0, got -1"),
])
def test_invalid_limits_raise_value_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MicroBatcher(**{"max_size": 1, "max_wait_ms": 0, **kwargs})
    b: MicroBatcher[int] = MicroBatcher(max_size=5, max_wait_ms=7)
    with pytest.raises(ValueError, match=match):
        b.set_limits(**kwargs)
    # a rejected change leaves the limits as they were
    assert (b.max_size, b.max_wait_s) == (5, pytest.approx(0.007))


async def test_bounded_queue_put_blocks_until_next_batch_takes_items() -> None:
    b: MicroBatcher[int] = MicroBatcher(max_size=2, max_wait_ms=0, queue_size=3)
    for i in range(3):
        await b.put(i)
    assert b.pending() == 3
    blocked = asyncio.create_task(b.put(3))
    await asyncio.sleep(0.02)
    assert not blocked.done(), "put() should wait while the queue is full"
    assert await b.next_batch() == [0, 1]
    await asyncio.wait_for(blocked, 1)
    assert b.pending() == 2
    assert await b.next_batch() == [2, 3]


def test_default_queue_size_is_four_batches_at_least_64() -> None:
    assert MicroBatcher(max_size=2, max_wait_ms=0)._queue.maxsize == 64
    assert MicroBatcher(max_size=100, max_wait_ms=0)._queue.maxsize == 400
    assert MicroBatcher(max_size=2, max_wait_ms=0, queue_size=5)._queue.maxsize == 5


async def test_on_batch_receives_batch_stats() -> None:
    seen: list[BatchStats] = []
    b: MicroBatcher[int] = MicroBatcher(max_size=2, max_wait_ms=200, on_batch=seen.append)
    await b.put(1)
    await b.put(2)
    await b.put(3)
    assert await b.next_batch() == [1, 2]
    assert await b.next_batch() == [3]
    assert [(s.size, s.full) for s in seen] == [(2, True), (1, False)]
    assert 0 <= seen[0].wait_s < 0.15  # full at once
    assert 0.195 <= seen[1].wait_s < 0.2 + SLACK_S  # closed by time
    with pytest.raises(AttributeError):
        seen[0].size = 5  # type: ignore[misc]  # frozen


async def test_drain_nowait_takes_everything_queued() -> None:
    b: MicroBatcher[str] = MicroBatcher(max_size=2, max_wait_ms=1000)
    assert b.drain_nowait() == []
    for item in "abcde":
        await b.put(item)
    assert b.drain_nowait() == list("abcde")
    assert b.pending() == 0
    assert b.drain_nowait() == []


async def test_doc_example_order_is_preserved() -> None:
    b: MicroBatcher[int] = MicroBatcher(max_size=3, max_wait_ms=10)
    for i in range(5):
        await b.put(i)
    assert [await b.next_batch(), await b.next_batch()] == [[0, 1, 2], [3, 4]]
