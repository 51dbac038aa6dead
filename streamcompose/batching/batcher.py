"""Micro-batching of items arriving one by one.

A batch opens with its first item and closes when it holds ``max_size`` items or
``max_wait_ms`` after that first item arrived, whichever comes first. The timer starts
when the first item is *put*, not when the consumer starts waiting, so items that queued
up while the previous batch was running close into a batch at once. Both limits can be
changed while running. The queue is bounded: :meth:`MicroBatcher.put` waits when it is
full, which is how a busy model slows down consumption.

>>> import asyncio
>>> async def demo():
...     b = MicroBatcher(max_size=3, max_wait_ms=10)
...     for i in range(5):
...         await b.put(i)
...     return await b.next_batch(), await b.next_batch()
>>> asyncio.run(demo())
([0, 1, 2], [3, 4])
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from streamcompose.batching.adaptive import WaitPolicy

T = TypeVar("T")


@dataclass(frozen=True)
class BatchStats:
    """What one closed batch looked like: its size, how long its first item waited,
    and whether it closed because it was full."""

    size: int
    wait_s: float
    full: bool


class MicroBatcher(Generic[T]):
    """Collects items into batches by size and time, and optionally by cost.

    ``policy`` (``max_wait_ms: auto``) chooses the wait of each gathering batch from the
    arrival rate and the model's times (:class:`~streamcompose.batching.adaptive.WaitPolicy`,
    told of each model call through :meth:`ran`); ``max_wait_ms`` is then its ceiling.
    With ``cost`` and ``max_cost``, a batch also closes before the item that would bring
    its total cost over ``max_cost`` (that item opens the next batch; an item costlier
    than ``max_cost`` forms a batch alone)."""

    def __init__(self, max_size: int, max_wait_ms: float, queue_size: int | None = None,
                 on_batch: Callable[[BatchStats], None] | None = None,
                 policy: WaitPolicy | None = None, cost: Callable[[T], float] | None = None,
                 max_cost: float | None = None) -> None:
        self._queue: asyncio.Queue[tuple[T, float]] = asyncio.Queue(
            queue_size if queue_size is not None else max(4 * max_size, 64))
        self._on_batch = on_batch
        self.policy, self.cost, self.max_cost = policy, cost, max_cost
        self._held: tuple[T, float] | None = None  # the item that opens the next batch
        # set by put() and set_limits() so that a gathering batch re-checks at once
        self._wake = asyncio.Event()
        self.max_size = 1
        self.max_wait_s = 0.0
        self.set_limits(max_size, max_wait_ms)

    def set_limits(self, max_size: int | None = None, max_wait_ms: float | None = None) -> None:
        """Change the limits; the batch being gathered picks up the new values."""
        if max_size is not None:
            if max_size < 1:
                raise ValueError(f"max_size must be >= 1, got {max_size}")
            self.max_size = max_size
        if max_wait_ms is not None:
            if max_wait_ms < 0:
                raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
            self.max_wait_s = max_wait_ms / 1000.0
        self._wake.set()

    async def put(self, item: T) -> None:
        """Add an item, waiting while the queue is full."""
        await self.put_many([item])

    async def put_many(self, items: list[T]) -> None:
        """Add items in order, waiting only while the queue is full."""
        now = time.monotonic()
        if self.policy is not None:
            self.policy.arrived(len(items), now)
        for item in items:
            if self._queue.full():
                self._wake.set()
                await self._queue.put((item, now))
            else:
                self._queue.put_nowait((item, now))
        self._wake.set()

    def ran(self, size: int, seconds: float) -> None:
        """A model call on a batch of ``size`` items took ``seconds`` (for the policy)."""
        if self.policy is not None:
            self.policy.ran(size, seconds)

    def pending(self) -> int:
        """Items queued and not yet taken into a batch."""
        return self._queue.qsize() + (self._held is not None)

    def _wait_s(self, gathered: int) -> float:
        if self.policy is None:
            return self.max_wait_s
        return min(self.max_wait_s, self.policy.wait_s(gathered))

    def _fits(self, item: T, total: float) -> tuple[bool, float]:
        """Whether ``item`` fits a batch of cost ``total`` so far, and the new total."""
        if self.cost is None or self.max_cost is None:
            return True, total
        cost = total + self.cost(item)
        return cost <= self.max_cost, cost

    async def next_batch(self, timeout: float | None = None) -> list[T]:
        """Wait for the first item, then gather until the batch is full or its time is
        up; an empty batch when no first item came within ``timeout`` seconds."""
        if self._held is not None:
            (first, first_at), self._held = self._held, None
        else:
            try:
                first, first_at = await asyncio.wait_for(self._queue.get(), timeout)
            except TimeoutError:
                return []
        batch = [first]
        _, total = self._fits(first, 0.0)
        while len(batch) < self.max_size:
            if not self._queue.empty():
                entry = self._queue.get_nowait()
                fits, total = self._fits(entry[0], total)
                if not fits:
                    self._held = entry
                    break
                batch.append(entry[0])
                continue
            remaining = first_at + self._wait_s(len(batch)) - time.monotonic()
            if remaining <= 0:
                break
            self._wake.clear()
            # woken by put() or set_limits(); on timeout the loop takes what arrived
            # meanwhile, then finds the time up
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)
        if self._on_batch is not None:
            self._on_batch(BatchStats(size=len(batch), wait_s=time.monotonic() - first_at,
                                      full=len(batch) >= self.max_size))
        return batch

    def drain_nowait(self) -> list[T]:
        """Take every queued item at once (used on shutdown)."""
        items = [] if self._held is None else [self._held[0]]
        self._held = None
        while not self._queue.empty():
            items.append(self._queue.get_nowait()[0])
        return items
