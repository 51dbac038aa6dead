"""The base of the stateful agents (joiners, fallback routers): exactly-once processing
of co-partitioned topics with state in a changelog.

Co-partitioning: every topic such an agent reads is keyed by request id and has the
topology's partition count, so one request's records sit in the same partition number
of every topic. The group uses the range assignor, which gives a replica the same
partition numbers of every topic, so all records of a request reach the same replica
however many replicas run.

Exactly once: each poll is processed in one Kafka transaction holding the results, the
dead letters, the changelog updates and the input offsets. A worker killed mid-stream
leaves an open transaction that its successor aborts; the successor restores the
changelog (read committed) and resumes from the committed offsets, so no request is lost
or emitted twice. A rebalance waits for the open transaction to commit before giving
partitions away.
"""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from typing import Any

import mode
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from streamcompose.agent.base import WorkerBase, result_content_type
from streamcompose.agent.deadletter import dead_letter_value
from streamcompose.codec import MSGPACK, Trace
from streamcompose.codec.record import now_ms
from streamcompose.join.store import Entry, JoinStore, changelog_key
from streamcompose.kafka.clients import make_consumer

log = logging.getLogger("streamcompose.stateful")
POLL_MS = 50
MAX_RECORDS = 500


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: StatefulWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.worker.busy:  # let the open transaction commit first
            self.worker.store.forget({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        async with self.worker.busy:
            await self.worker.restore({tp.partition for tp in assigned})
            await self.worker.catch_up_to(assigned)
        self.worker.joined(assigned)


class StatefulWorker(WorkerBase):
    """Runs one replica of a stateful agent; subclasses say what a record and a passing
    moment do (:meth:`handle`, :meth:`due`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.changelog = self.topology.changelog_topic(self.agent)
        self.out_topic = self.topology.topic_of(self.agent)
        self.out_type = result_content_type(self.topology, self.agent)
        self.store = JoinStore()
        self.busy = asyncio.Lock()
        self.behind: dict[TopicPartition, int] = {}
        self.seen_ms: dict[TopicPartition, int] = {}

    async def prepare(self) -> None:
        """Load what the agent needs before consuming (a meta-model, say)."""

    async def on_start(self) -> None:
        self.serve_metrics()
        await self.prepare()
        await self.start_clients(_Rebalance(self),
                                 partition_assignment_strategy=(RangePartitionAssignor,))
        self.wstate.update(status="running")

    async def restore(self, partitions: set[int]) -> None:
        """Rebuild the state of the given partitions from the changelog."""
        restorer = make_consumer(self.bootstrap)
        await restorer.start()
        try:
            tps = [TopicPartition(self.changelog, p) for p in sorted(partitions)]
            restorer.assign(tps)
            await restorer.seek_to_beginning(*tps)
            ends = await restorer.end_offsets(tps)
            remaining = {tp for tp in tps if ends[tp] > 0}
            count = 0
            while remaining:
                for records in (await restorer.getmany(*remaining, timeout_ms=500)).values():
                    for record in records:
                        self.store.restore(record.key, record.value)
                        count += 1
                for tp in list(remaining):
                    if await restorer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await restorer.stop()
        log.info("agent %s restored %d changelog records for partitions %s: %s", self.agent,
                 count, sorted(partitions), self.store.stats())

    async def catch_up_to(self, assigned: list[TopicPartition]) -> None:
        """Until the input partitions are read up to where they ended at assignment, time
        runs on the records' own timestamps: a restarted worker does not take a restored
        request for timed out before it has read the branch results that complete it."""
        assert self.consumer is not None
        ends = await self.consumer.end_offsets(assigned)
        self.behind = {tp: end for tp, end in ends.items() if end > 0}
        self.seen_ms = {}

    async def _clock(self, polled: dict[TopicPartition, list[ConsumerRecord]]) -> int:
        """Now: the wall clock once every input partition has caught up; until then the
        oldest of the newest record timestamps seen on the partitions still behind (what
        has been read of every input is complete up to that moment)."""
        assert self.consumer is not None
        if not self.behind:
            return now_ms()
        for tp, batch in polled.items():
            self.seen_ms[tp] = batch[-1].timestamp
        owned = self.consumer.assignment()
        self.behind = {tp: end for tp, end in self.behind.items()
                       if tp in owned and await self.consumer.position(tp) < end}
        if not self.behind:
            log.info("agent %s caught up with its inputs; timeouts follow the wall clock",
                     self.agent)
            return now_ms()
        return min(self.seen_ms.get(tp, 0) for tp in self.behind)

    @mode.Service.task
    async def _run(self) -> None:
        assert self.consumer is not None
        while not self.should_stop:
            fetched = await self.consumer.getmany(timeout_ms=POLL_MS, max_records=MAX_RECORDS)
            async with self.busy:
                await self._process(fetched)
            self.metrics.in_flight.set(self.store.pending_count())

    async def _process(self, fetched: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """One transaction: the records, what is due, the changelog, the input offsets."""
        assert self.consumer is not None and self.producer is not None
        owned = self.consumer.assignment()  # a rebalance may have run since the fetch
        polled = {tp: batch for tp, batch in fetched.items() if tp in owned and batch}
        now = await self._clock(polled)
        expired = self.store.expired(now, self.remember_ms)
        if not (polled or expired or self.due(now)):
            return
        async with self.producer.transaction():
            for batch in polled.values():
                self.metrics.records_in.inc(len(batch))
            await self.handle([r for batch in polled.values() for r in batch], now)
            for rid, partition in expired:
                await self.write_changelog(rid, partition, None)
            if polled:
                await self.producer.send_offsets_to_transaction(
                    {tp: batch[-1].offset + 1 for tp, batch in polled.items()}, self.group)

    remember_ms: float = 600_000.0

    @abstractmethod
    def due(self, now: int) -> list[str]:
        """Pending requests whose time is up (checked on every poll, records or not)."""

    @abstractmethod
    async def handle(self, records: list[ConsumerRecord], now: int) -> None:
        """Process a poll's records, then the requests :meth:`due` then, inside the
        transaction."""

    async def send(self, topic: str, value: bytes, trace: Trace, partition: int,
                   content_type: str = MSGPACK) -> None:
        """Send a record of a request that came from ``partition``."""
        assert self.producer is not None
        await self.producer.send(topic, value, key=trace.key, headers=trace.headers(content_type),
                                 partition=self.partition_of(topic, partition))

    async def dead_letter(self, trace: Trace, partition: int, original: bytes,
                          topic: str, error: Exception, offset: int = -1) -> None:
        """Dead-letter a request of ``partition`` (``offset`` -1: it stems from several
        records, as a join does)."""
        log.warning("agent %s: request %s -> dead letter: %s", self.agent, trace.request_id,
                    error)
        self.metrics.error(type(error).__name__)
        await self.send(self.topology.dlq_topic, dead_letter_value(
            original, agent=self.agent, topic=topic, partition=partition, offset=offset,
            error=error), trace, partition)

    async def write_changelog(self, rid: str, partition: int, entry: Entry | None) -> None:
        """Bring the stored entry up to date (``None``: forget the request)."""
        assert self.producer is not None
        records = [(changelog_key(rid), None)] if entry is None else entry.changelog(rid)
        for key, value in records:
            await self.producer.send(self.changelog, value, key=key, partition=partition)

    async def on_stop(self) -> None:
        self.wstate.update(status="stopping")
        await self.close_clients()
