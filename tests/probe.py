"""A traffic probe for reliability tests: publishes requests at a steady rate in a
background thread and records every result and dead letter with its arrival time, so a
test can count what was lost, duplicated or partial and measure the longest output gap
while it kills workers or stops the broker."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streamcompose.client import Client
from streamcompose.codec import decode_payload
from streamcompose.codec.record import Trace
from streamcompose.kafka.admin import topic_partitions


@dataclass
class Seen:
    """What came out: (request id, payload, arrival time) of results and dead letters."""

    results: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)
    dead: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)

    @property
    def counts(self) -> Counter:
        return Counter(rid for rid, _, _ in self.results)

    def lost(self, ids: list[str]) -> list[str]:
        answered = self.counts | Counter(rid for rid, _, _ in self.dead)
        return [i for i in ids if i not in answered]

    def duplicated(self) -> list[str]:
        return [rid for rid, n in self.counts.items() if n > 1]

    def longest_gap(self) -> float:
        """The longest time between two consecutive results."""
        times = sorted(t for _, _, t in self.results)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


class Probe:
    """Sends ``count`` requests ``payload(i)`` with ids ``<prefix><i>`` at ``rate`` per
    second to ``name``'s input, and reads its output and dead-letter topics until every
    request was answered and nothing more came for ``quiet_s``."""

    def __init__(self, bootstrap: str, manifest: dict[str, Any], count: int, rate: float,
                 payload: Callable[[int], dict[str, Any]], prefix: str = "r",
                 quiet_s: float = 4.0) -> None:
        self.bootstrap, self.manifest = bootstrap, manifest
        self.ids = [f"{prefix}{i}" for i in range(count)]
        self.rate, self.payload, self.quiet_s = rate, payload, quiet_s
        self.seen = Seen()
        self.sent = 0
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._error: BaseException | None = None

    def start(self) -> Probe:
        self._thread.start()
        return self

    def wait(self, timeout: float) -> Seen:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), (
            f"probe still running after {timeout}s: sent {self.sent}, "
            f"{len(self.seen.counts)} answered, {len(self.seen.dead)} dead letters")
        if self._error is not None:
            raise self._error
        return self.seen

    async def _run(self) -> None:
        try:
            await asyncio.gather(self._publish(), self._read())
        except BaseException as exc:  # handed to the test thread by wait()
            self._error = exc

    async def _publish(self) -> None:
        async with Client(self.bootstrap) as client:
            start = time.monotonic()
            for i, rid in enumerate(self.ids):
                delay = start + i / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await client.send(self.manifest["input"], self.payload(i), rid)
                self.sent += 1

    async def _read(self) -> None:
        topics = [self.manifest["output"], self.manifest["dlq"]]
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap,
                                    isolation_level="read_committed",
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        partitions = await topic_partitions(self.bootstrap, topics)
        await consumer.start()
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        wanted, last = set(self.ids), time.monotonic()
        try:
            while not (wanted <= self._answered() and time.monotonic() - last > self.quiet_s):
                batches = await consumer.getmany(timeout_ms=200)
                now = time.monotonic()
                for tp, records in batches.items():
                    for r in records:
                        self._keep(tp, r.key, r.headers, r.value, now)
                        last = now
        finally:
            await consumer.stop()

    def _answered(self) -> set[str]:
        return {rid for rid, _, _ in self.seen.results} | {rid for rid, _, _ in self.seen.dead}

    def _keep(self, tp: TopicPartition, key: bytes, headers: Any, value: bytes,
              now: float) -> None:
        rid = Trace.from_record(key, headers).request_id
        bucket = self.seen.dead if tp.topic == self.manifest["dlq"] else self.seen.results
        bucket.append((rid, decode_payload(value), now))


def worker(cli: Callable[..., subprocess.CompletedProcess], name: str, agent: str,
           replica: int = 0) -> dict[str, Any]:
    """A worker's entry in ``streamcompose status --json``."""
    status = json.loads(cli("status", name, "--json", "--no-lag", check=False).stdout)
    found = next(a for a in status["agents"] if a["name"] == agent)
    return found["workers"][replica]


def kill_worker(cli: Callable[..., subprocess.CompletedProcess], name: str, agent: str,
                replica: int = 0, timeout: float = 30.0, frozen_s: float = 0.0) -> None:
    """SIGKILL a worker (after freezing it ``frozen_s`` seconds with SIGSTOP: a hang),
    then wait until the supervisor's successor runs."""
    victim = worker(cli, name, agent, replica)["pid"]
    if frozen_s:
        os.kill(victim, signal.SIGSTOP)
        time.sleep(frozen_s)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = worker(cli, name, agent, replica)
        if now["pid"] not in (None, victim) and now["alive"] and now["status"] == "running":
            return
        time.sleep(0.1)
    raise AssertionError(f"{agent}-{replica} of {name} was not restarted within {timeout}s")
