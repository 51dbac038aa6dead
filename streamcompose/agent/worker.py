"""The agent worker: consume, decode, batch, infer, encode, produce, commit.

One worker process runs one replica of one agent. Its life cycle (start, signal handling,
graceful stop) is a faust-streaming ``mode.Service``; its hot path consumes with
aiokafka's batch ``getmany`` (see benchmarks/README.md for why not faust's per-event
agents). The stages:

1. ``_consume``: fetch records, decode each one (bad values go to the dead-letter topic),
   put them into the :class:`MicroBatcher` (waiting while it is full).
2. ``_infer``: take a batch, run the model in a thread so that the event loop keeps
   fetching and heartbeating, and send one result (or dead letter) per record.
3. ``_commit``: commit each partition's offsets up to the first record whose outputs the
   broker has not yet acknowledged (at-least-once).

On SIGTERM the worker stops fetching, finishes every record already fetched, flushes the
producer, commits and exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import mode
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError

from streamcompose.agent.base import WorkerBase
from streamcompose.agent.control import ControlFollower
from streamcompose.agent.deadletter import dead_letter_value, error_reason
from streamcompose.agent.offsets import OffsetTracker
from streamcompose.agent.steps import Emission, Step, build_step, merge_result
from streamcompose.batching.batcher import MicroBatcher
from streamcompose.codec import MSGPACK, Trace, decode_payload, encode_payload
from streamcompose.errors import StreamComposeError
from streamcompose.kafka.clients import make_consumer, make_producer
from streamcompose.runtimes import RecordError

log = logging.getLogger("streamcompose.agent")
COMMIT_INTERVAL_S = 0.05
DRAIN_TIMEOUT_S = 30.0
EXIT_SEND_FAILED = 3
FETCH_RECORDS = 500


@dataclass
class Item:
    """A decoded record waiting for its model call."""

    record: ConsumerRecord
    trace: Trace
    payload: dict[str, Any]


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: AgentWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.worker.settle(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.worker.joined(assigned)


class AgentWorker(WorkerBase):
    """Runs one replica of one agent (a model or a stateless router) of a topology."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        topology, agent = self.topology, self.agent
        self.dlq = topology.dlq_of(agent)
        self.offsets = OffsetTracker()
        self.batcher: MicroBatcher[Item] = MicroBatcher(
            self.spec.batch.max_size, self.spec.batch.max_wait_ms, on_batch=self._on_batch)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"model-{agent}")
        self.step: Step | None = None
        self._fetching = True

    def _on_batch(self, stats: Any) -> None:
        self.metrics.batch_size.observe(stats.size)
        self.metrics.queue_seconds.observe(stats.wait_s)

    async def on_start(self) -> None:
        self.serve_metrics()
        loop = asyncio.get_running_loop()
        self.step = await loop.run_in_executor(self.executor, build_step, self.topology,
                                               self.agent)
        await loop.run_in_executor(self.executor, self.step.warmup)
        self.producer = make_producer(self.bootstrap, self.client_id)
        await self.producer.start()
        self.consumer = make_consumer(self.bootstrap, self.group, self.client_id)
        self.consumer.subscribe(list(self.topology.input_topics(self.agent)),
                                listener=_Rebalance(self))
        await self.consumer.start()
        if self.spec.kind == "split":
            await self._follow_control()
        self.wstate.update(status="running")

    async def _follow_control(self) -> None:
        """Apply the latest run-time settings for this agent, then follow new ones."""
        assert self.step is not None
        follower = ControlFollower(self.bootstrap, self.topology.control_topic, self.agent,
                                   self.step.apply_control)
        await follower.catch_up()
        self.add_future(follower.follow())

    @mode.Service.task
    async def _consume(self) -> None:
        assert self.consumer is not None
        while self._fetching and not self.should_stop:
            batches = await self.consumer.getmany(timeout_ms=100, max_records=FETCH_RECORDS)
            for records in batches.values():
                self.metrics.records_in.inc(len(records))
                for record in records:
                    await self._accept(record)

    async def _accept(self, record: ConsumerRecord) -> None:
        self.offsets.track(TopicPartition(record.topic, record.partition), record.offset)
        trace = Trace.from_record(record.key, record.headers)
        try:
            payload = decode_payload(record.value, trace.content_type)
        except StreamComposeError as exc:
            await self._dead_letter(record, trace, exc)
            return
        await self.batcher.put(Item(record, trace, payload))

    @mode.Service.task
    async def _infer(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.step is not None
        while True:  # cancelled by mode after on_stop has drained the batcher
            batch = await self.batcher.next_batch()
            started = loop.time()
            try:
                outcomes = await loop.run_in_executor(
                    self.executor, self.step, [(i.trace.request_id, i.payload) for i in batch])
            except Exception as exc:  # a bug in a step must not stop the agent
                log.exception("agent %s: step failed on a batch of %d", self.agent, len(batch))
                error = RecordError(f"{type(exc).__name__}: {exc}", agent=self.agent)
                outcomes = [error] * len(batch)
            self.metrics.inference_seconds.observe(loop.time() - started)
            for item, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, RecordError):
                    await self._dead_letter(item.record, item.trace, outcome)
                else:
                    await self._emit(item, outcome)
            self.metrics.in_flight.set(self.offsets.in_flight())

    async def _emit(self, item: Item, emissions: list[Emission]) -> None:
        trace = item.trace.passed(self.agent)
        records = []
        try:
            for e in emissions:
                merged = merge_result(item.payload, e.fields, self.spec.drop)
                records.append((e.topic, encode_payload(merged, e.content_type),
                                [*trace.headers(e.content_type), *e.headers]))
        except StreamComposeError as exc:
            await self._dead_letter(item.record, item.trace, RecordError(
                f"the result cannot be encoded: {exc}", agent=self.agent))
            return
        await self._send(item.record, trace.key, records)
        self.metrics.records_out.inc(len(records))
        for e in emissions:
            if e.target is not None:
                self.metrics.routed(e.target)

    async def _dead_letter(self, record: ConsumerRecord, trace: Trace,
                           error: BaseException) -> None:
        log.warning("agent %s: %s[%d]@%d -> dead letter: %s", self.agent, record.topic,
                    record.partition, record.offset, error)
        self.metrics.error(error_reason(error))
        value = dead_letter_value(record.value, agent=self.agent, topic=record.topic,
                                  partition=record.partition, offset=record.offset, error=error)
        await self._send(record, trace.key,
                         [(self.dlq, value, trace.passed(self.agent).headers(MSGPACK))])

    async def _send(self, record: ConsumerRecord, key: bytes,
                    records: list[tuple[str, bytes, list[tuple[str, bytes]]]]) -> None:
        """Send a request's records; its offset is done once the broker has them all."""
        assert self.producer is not None
        tp = TopicPartition(record.topic, record.partition)
        remaining = len(records)

        def acknowledged(fut: asyncio.Future) -> None:
            nonlocal remaining
            if fut.cancelled() or fut.exception() is not None:
                log.error("agent %s: result of %s[%d]@%d not stored: %s; restarting so that "
                          "it is consumed again", self.agent, record.topic, record.partition,
                          record.offset, fut.exception() if not fut.cancelled() else "cancelled")
                self._crash(fut.exception() or RuntimeError("send cancelled"))
                return
            remaining -= 1
            if remaining == 0:
                self.offsets.done(tp, record.offset)

        for topic, value, headers in records:
            delivery = await self.producer.send(topic, value, key=key, headers=headers,
                                                partition=await self.partition_for(topic,
                                                                                   tp.partition))
            delivery.add_done_callback(acknowledged)

    def _crash(self, exc: BaseException) -> None:
        """Exit at once without committing: the supervisor restarts the worker, which
        consumes again from the last committed offset."""
        self.wstate.update(status="failed", error=str(exc))
        logging.shutdown()
        os._exit(EXIT_SEND_FAILED)

    @mode.Service.task
    async def _commit(self) -> None:
        while not self.should_stop:
            await asyncio.sleep(COMMIT_INTERVAL_S)
            await self.commit()

    async def commit(self) -> None:
        """Commit what every acknowledged record allows. A commit refused because a
        rebalance moved the partitions away is dropped: the new owner consumes those
        records again (at-least-once)."""
        positions = self.offsets.committable()
        if not positions or self.consumer is None:
            return
        owned = self.consumer.assignment()
        try:
            await self.consumer.commit({tp: o for tp, o in positions.items() if tp in owned})
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("agent %s: commit refused after a rebalance (%s); the new owner "
                        "consumes those records again", self.agent, exc)

    async def settle(self, partitions: list[TopicPartition] | None = None) -> None:
        """Wait until every fetched record (of the given partitions) is acknowledged,
        then commit."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        while self.offsets.in_flight(partitions) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if self.producer is not None:
            await self.producer.flush()
        await self.commit()
        if partitions is not None:
            self.offsets.forget(partitions)

    async def on_stop(self) -> None:
        self.wstate.update(status="stopping")
        self._fetching = False
        if self.consumer is not None:
            await self.settle()
        await self.close_clients()
        self.executor.shutdown(wait=False)
