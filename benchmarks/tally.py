"""What ``delivery.py`` and ``soak.py`` share: sending requests through a
:class:`streamcompose.Client` at a steady rate, and reading a deployment's results as a
client does (``read_committed``), counted by request id.

A request is *lost* when no result with its id arrived, *duplicated* once for every
result with its id beyond the first. Both are counted and printed, never asserted.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from overhead import POLL_S, STALL_S, BenchError

from streamcompose import Client
from streamcompose.deploy import status

QUIET_S = 2.0  # no result for this long after the last awaited one: no duplicate is coming


class Tally:
    """Every result on ``topic`` from its beginning, read by ``client``: for each request
    id, how many results carry it and, for the first, its broker timestamp, its
    ``sc-entered`` time and when this process received it (ms since the epoch); and the
    ids of partial results (a joiner that timed out lists the ``missing`` branches), and
    the first result's lineage and partition."""

    def __init__(self, client: Client, topic: str) -> None:
        self.client, self.topic = client, topic
        self.counts: Counter[str] = Counter()
        self.stored: dict[str, int] = {}
        self.entered: dict[str, int] = {}
        self.arrived: dict[str, float] = {}
        self.partial: set[str] = set()
        self.lineage: dict[str, tuple[dict[str, Any], ...]] = {}
        self.partition: dict[str, int] = {}
        self.last = time.perf_counter()  # when the latest result (duplicates too) came
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for result in self.client.read([self.topic], from_beginning=True):
            self.counts[result.id] += 1
            self.last = time.perf_counter()
            if result.id not in self.arrived:
                self.arrived[result.id] = time.time() * 1000
                self.stored[result.id] = result.timestamp_ms
                self.entered[result.id] = result.entered_ms
                self.lineage[result.id] = result.lineage
                self.partition[result.id] = result.partition
                if "missing" in result.payload:
                    self.partial.add(result.id)

    def check(self) -> None:
        """Raise :class:`BenchError` if reading the results failed."""
        if self.task is not None and self.task.done() and not self.task.cancelled():
            raise BenchError(f"reading {self.topic} failed: {self.task.exception()!r}")

    async def wait_for(self, ids: list[str], stall_s: float = STALL_S) -> bool:
        """Wait until every id has a result; False once none more came for ``stall_s``
        (the missing ones then count as lost)."""
        last, moved = -1, time.perf_counter()
        while (have := sum(i in self.arrived for i in ids)) < len(ids):
            self.check()
            if have != last:
                last, moved = have, time.perf_counter()
            elif time.perf_counter() - moved > stall_s:
                return False
            await asyncio.sleep(POLL_S)
        return True

    async def quiet(self, seconds: float = QUIET_S) -> None:
        """Wait until no result has come for ``seconds`` (late duplicates included)."""
        while (idle := time.perf_counter() - self.last) < seconds:
            self.check()
            await asyncio.sleep(seconds - idle)

    def lost_duplicated(self, ids: Iterable[str]) -> tuple[int, int]:
        """How many of ``ids`` have no result, and how many surplus results they have."""
        counts = [self.counts[i] for i in ids]
        return sum(c == 0 for c in counts), sum(max(c - 1, 0) for c in counts)

    def longest_gap_ms(self, ids: Iterable[str]) -> float:
        """The longest time between two consecutive arrivals among ``ids``' results."""
        times = sorted(self.arrived[i] for i in ids if i in self.arrived)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


async def send_steady(client: Client, target: str, ids: Iterable[str],
                      payload: Callable[[int], dict[str, Any]], rate: float) -> list[str]:
    """Send request ``i`` with ``payload(i)`` and id ``ids[i]`` at ``start + i/rate``
    (its ``sc-entered`` is when it is sent), then wait until the broker stored them all;
    returns the ids sent (``ids`` may be a generator that ends when told to)."""
    started = time.perf_counter()
    stored = []
    for i, request_id in enumerate(ids):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        stored.append(await client.send(target, payload(i), request_id))
    return list(await asyncio.gather(*stored))


def worker_pids(name: str) -> dict[str, list[int]]:
    """Each agent's worker pids, as :func:`streamcompose.deploy.status` gives them."""
    (deployment,) = status(name, False)
    return {a["name"]: [w["pid"] for w in a["workers"]] for a in deployment["agents"]}
