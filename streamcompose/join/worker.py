"""The joiner worker: fuses the results that several branch agents give for one request.

Co-partitioning: every branch writes its results keyed by request id to its own topic,
all with the topology's partition count, so one request's results sit in the same
partition number of every branch topic. The joiner's group uses the range assignor,
which gives a replica the same partition numbers of every topic, so all branch results
of a request reach the same replica however many replicas run.

Exactly once: each poll is processed in one Kafka transaction holding the results, the
dead letters, the changelog updates and the input offsets. A joiner killed mid-stream
aborts its open transaction; its successor restores the changelog (read committed) and
resumes from the committed offsets, so no request is lost or emitted twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import mode
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from streamcompose.agent.deadletter import dead_letter_value
from streamcompose.agent.state import WorkerState
from streamcompose.codec import JSON, MSGPACK, Trace, decode_payload, encode_payload
from streamcompose.codec.record import now_ms
from streamcompose.errors import StreamComposeError
from streamcompose.join.aggregate import Aggregator
from streamcompose.join.store import Entry, JoinStore
from streamcompose.join.strategies import StrategyError
from streamcompose.kafka.clients import make_consumer, make_producer
from streamcompose.metrics import AgentMetrics
from streamcompose.topology.model import Topology

log = logging.getLogger("streamcompose.join")
POLL_MS = 50


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: JoinWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.worker.busy:  # let the open transaction commit first
            self.worker.store.forget({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        async with self.worker.busy:
            await self.worker.restore({tp.partition for tp in assigned})
        self.worker.wstate.update(joined=True, partitions=sorted(
            f"{tp.topic}[{tp.partition}]" for tp in assigned))


class JoinWorker(mode.Service):
    """Runs one replica of a joiner agent."""

    def __init__(self, topology: Topology, agent: str, bootstrap: str, replica: int = 0,
                 state: WorkerState | None = None, metrics_port: int = 0) -> None:
        super().__init__()
        self.topology, self.agent = topology, agent
        self.bootstrap, self.replica = bootstrap, replica
        self.spec = topology.agent(agent)
        assert self.spec.join is not None
        self.join = self.spec.join
        self.branches = list(self.spec.inputs)
        self.branch_of = {topology.topic_of(b): b for b in self.branches}
        self.changelog = topology.changelog_topic(agent)
        self.group = topology.group_id(agent)
        self.out_topic = topology.topic_of(agent)
        self.out_type = JSON if (topology.is_sink(agent) and topology.output_format == "json") \
            else MSGPACK
        self.wstate = state or WorkerState.disabled()
        self.metrics = AgentMetrics(topology.name, agent, replica)
        self.metrics_port = metrics_port
        self.store = JoinStore()
        self.busy = asyncio.Lock()
        self.aggregate: Aggregator | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None

    async def on_start(self) -> None:
        self.wstate.update(status="loading", metrics_port=self.metrics.serve(self.metrics_port))
        loop = asyncio.get_running_loop()
        self.aggregate = await loop.run_in_executor(
            None, Aggregator, self.join, self.topology.base_dir, self.agent)
        await loop.run_in_executor(None, self.aggregate.warmup)
        client_id = f"{self.topology.name}.{self.agent}.{self.replica}"
        self.producer = make_producer(self.bootstrap, client_id,
                                      transactional_id=f"{self.group}.{self.replica}")
        await self.producer.start()
        self.consumer = make_consumer(self.bootstrap, self.group, client_id,
                                      partition_assignment_strategy=(RangePartitionAssignor,))
        self.consumer.subscribe(list(self.branch_of), listener=_Rebalance(self))
        await self.consumer.start()
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
                        self.store.restore(record.key.decode(), record.value)
                        count += 1
                for tp in list(remaining):
                    if await restorer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await restorer.stop()
        log.info("joiner %s restored %d changelog records for partitions %s: %s", self.agent,
                 count, sorted(partitions), self.store.stats())

    @mode.Service.task
    async def _run(self) -> None:
        assert self.consumer is not None and self.producer is not None
        while not self.should_stop:
            fetched = await self.consumer.getmany(timeout_ms=POLL_MS, max_records=500)
            async with self.busy:
                await self._process(fetched)
            self.metrics.in_flight.set(self.store.pending_count())

    async def _process(self, fetched: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """One transaction: branch results, due timeouts, changelog, input offsets."""
        assert self.consumer is not None and self.producer is not None
        owned = self.consumer.assignment()  # a rebalance may have run since the fetch
        polled = {tp: batch for tp, batch in fetched.items() if tp in owned and batch}
        records = [r for batch in polled.values() for r in batch]
        now = now_ms()
        due = self._due(now)
        expired = self.store.expired(now, self.join.remember_ms)
        if records or due or expired:
            async with self.producer.transaction():
                completed = [rid for r in records if (rid := await self._on_branch(r, now))]
                await self._emit(completed + due, now)
                for rid, partition in expired:
                    await self._changelog(rid, partition, None)
                if polled:
                    await self.producer.send_offsets_to_transaction(
                        {tp: batch[-1].offset + 1 for tp, batch in polled.items()}, self.group)

    async def _on_branch(self, record: ConsumerRecord, now: int) -> str | None:
        """Add one branch result; returns the request id when it completed the join."""
        self.metrics.records_in.inc()
        trace = Trace.from_record(record.key, record.headers)
        branch = self.branch_of[record.topic]
        entry = self.store.add_branch(record.partition, trace.request_id, branch,
                                      record.value or b"", first_ms=now,
                                      entered_ms=trace.entered_ms, path=list(trace.path),
                                      limit=self.join.needed(len(self.branches)))
        if entry is None:
            late = (self.store.is_done(trace.request_id)
                    or branch not in self.store.branches_of(trace.request_id))
            self.metrics.join_event("late" if late else "duplicate")
            return None
        await self._changelog(trace.request_id, record.partition, entry)
        done = len(entry.branches) >= self.join.needed(len(self.branches))
        return trace.request_id if done else None

    def _due(self, now: int) -> list[str]:
        """Requests whose timeout passed, and the oldest beyond ``max_pending``."""
        due = [rid for rid, e in self.store.pending() if now - e.first_ms >= self.join.timeout_ms]
        excess = self.store.pending_count() - len(due) - self.join.max_pending
        if excess > 0:
            due += [rid for rid, _ in self.store.pending() if rid not in due][:excess]
            self.metrics.join_event("evicted", excess)
        return due

    async def _emit(self, request_ids: list[str], now: int) -> None:
        taken = [(rid, dict(self.store.branches_of(rid))) for rid in dict.fromkeys(request_ids)]
        if not taken:
            return
        decoded: list[list[tuple[str, dict[str, Any]]] | StreamComposeError] = []
        for _, seen in taken:
            try:
                decoded.append([(b, decode_payload(seen[b])) for b in self.branches
                                if b in seen])
            except StreamComposeError as exc:
                decoded.append(exc)
        assert self.aggregate is not None
        fused = iter(await asyncio.get_running_loop().run_in_executor(
            None, self.aggregate, [d for d in decoded if not isinstance(d, Exception)]))
        for (rid, seen), branches in zip(taken, decoded, strict=True):
            entry = self.store.mark_done(rid, now)
            result = branches if isinstance(branches, Exception) else next(fused)
            await self._finish(rid, entry, seen, branches, result)
            await self._changelog(rid, entry.partition, entry)

    async def _finish(self, rid: str, entry: Entry, seen: dict[str, bytes], branches: Any,
                      result: Any) -> None:
        missing = [b for b in self.branches if b not in seen]
        complete = len(seen) >= self.join.needed(len(self.branches))
        trace = Trace(rid, entry.entered_ms, (*entry.path, self.agent))
        if not complete and self.join.on_timeout == "dlq":
            self.metrics.join_event("timeout")
            result = StrategyError(f"join timed out after {self.join.timeout_ms:g} ms; "
                                   f"missing: {', '.join(missing)}")
        if isinstance(result, Exception):
            await self._dead_letter(entry, seen, trace, result)
            return
        payload = {**branches[0][1], **result}
        if not complete:
            self.metrics.join_event("partial")
            payload["missing"] = missing
        for name in self.spec.drop:
            payload.pop(name, None)
        assert self.producer is not None
        await self.producer.send(self.out_topic, encode_payload(payload, self.out_type),
                                 key=trace.key, headers=trace.headers(self.out_type))
        self.metrics.records_out.inc()

    async def _dead_letter(self, entry: Entry, seen: dict[str, bytes], trace: Trace,
                           error: Exception) -> None:
        log.warning("joiner %s: request %s -> dead letter: %s", self.agent, trace.request_id,
                    error)
        self.metrics.error(type(error).__name__)
        original = encode_payload(dict(seen))
        assert self.producer is not None
        await self.producer.send(
            self.topology.dlq_topic, dead_letter_value(
                original, agent=self.agent, topic=",".join(self.branch_of),
                partition=entry.partition, offset=-1, error=error),
            key=trace.key, headers=trace.headers(MSGPACK))

    async def _changelog(self, rid: str, partition: int, entry: Entry | None) -> None:
        assert self.producer is not None
        await self.producer.send(self.changelog, None if entry is None else entry.encode(),
                                 key=rid.encode(), partition=partition)

    async def on_stop(self) -> None:
        self.wstate.update(status="stopping")
        for client in (self.consumer, self.producer):
            if client is not None:
                await client.stop()
        self.wstate.update(status="stopped", joined=False)
