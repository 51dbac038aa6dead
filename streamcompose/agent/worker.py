"""The agent worker, the one core every agent kind runs on: consume, decode, batch,
run the step, encode, deliver.

One worker process runs one replica of one agent, whatever its kind: the step it runs
(:mod:`streamcompose.kinds`) is a model, a router, a joiner or a fallback router. Its
life cycle (start, signal handling, graceful stop) is a faust-streaming ``mode.Service``;
its hot path consumes with aiokafka's batch ``getmany``. Three tasks form a pipeline:

1. ``_consume``: fetch records, register each with the :class:`Checkpoint`, decode it
   and put it into the :class:`MicroBatcher` (waiting while it is full). A value that
   cannot be decoded travels on as an item bound for the dead-letter topic.
2. ``_infer``: take a batch, run the step in the model thread so that the event loop
   keeps fetching and heartbeating, encode one result (or dead letter) per record; the
   model thread is handed the next batch while the loop encodes the current one.
3. ``_deliver``: close the batches through the checkpoint (one transaction under
   exactly-once; acknowledged sends under at-least-once) while the next batch runs;
   batches that piled up during a transaction are closed together in the next one.

A stateful step (joiner, fallback) instead takes each poll's records with the time of
its :class:`CatchUpClock`, and what it sends, changelog included, goes in the same
transaction as the offsets; its state is restored from the changelog when partitions
are assigned (:mod:`streamcompose.agent.stateful`).

A result larger than its topic takes is dead-lettered (with the original cut to fit);
it never stops the worker. On SIGTERM the worker stops fetching, finishes every record
already fetched, commits and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import mode
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from streamcompose.agent.base import WorkerBase
from streamcompose.agent.control import ControlFollower
from streamcompose.agent.stateful import StatefulRunner
from streamcompose.batching.adaptive import WaitPolicy
from streamcompose.batching.batcher import MicroBatcher
from streamcompose.batching.cost import cost_function
from streamcompose.codec import MSGPACK, Trace, decode_payload, encode_payload
from streamcompose.codec.deadletter import dead_letter_value, error_reason
from streamcompose.codec.reasons import exception_text
from streamcompose.delivery import Checkpoint, Closing, Output
from streamcompose.errors import StreamComposeError
from streamcompose.kinds import build_step
from streamcompose.runtimes import RecordError
from streamcompose.steps.base import Emission, Step, merge_result
from streamcompose.steps.stateful import StatefulStep

log = logging.getLogger("streamcompose.agent")
EXIT_SEND_FAILED = 3
DEAD_LETTER_ROOM = 4096  # bytes a dead letter needs beside the original it carries
DELIVERY_QUEUE = 16  # processed batches waiting for the checkpoint; closed together
INFER_DEPTH = 2  # batches given to the model thread at once: one running, one waiting


@dataclass
class Item:
    """A consumed record: its payload, or why it cannot be processed."""

    record: ConsumerRecord
    trace: Trace
    payload: dict[str, Any] | None
    error: StreamComposeError | None = None
    emissions: list[Emission] | None = None
    epoch: int = 0  # of its partition's assignment when fetched (see AgentWorker.current)
    cost: float = 0.0  # for cost-aware batching

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.record.topic, self.record.partition)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: AgentWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        worker = self.worker
        if worker.stateful is not None:
            await worker.stateful.revoked(revoked)
        elif worker.checkpoint is not None:
            await worker.checkpoint.settle(revoked, worker.settings.drain_timeout_s)
        for tp in revoked:  # what is still queued of them is dropped, never delivered
            worker.epochs[tp] = worker.epochs.get(tp, 0) + 1

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self.worker.stateful is not None:
            await self.worker.stateful.assigned(assigned)
        self.worker.joined(assigned)


class AgentWorker(WorkerBase):
    """Runs one replica of one agent (a model or a stateless router) of a topology."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        b = self.spec.batch
        self.cost = cost_function(b.cost, self.topology.base_dir) if b.cost else None
        self.batcher: MicroBatcher[Item] = MicroBatcher(
            b.max_size, b.max_wait_ms, on_batch=self._on_batch,
            policy=WaitPolicy(b.max_size, b.max_wait_ms / 1000) if b.auto_wait else None,
            cost=(lambda item: item.cost) if self.cost else None, max_cost=b.max_cost)
        self.deliveries: asyncio.Queue[list[tuple[Closing, int]]] = asyncio.Queue(
            DELIVERY_QUEUE)
        self.epochs: dict[TopicPartition, int] = {}
        self._consumed = asyncio.Event()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"model-{self.agent}")
        self.step: Step | None = None
        self.stateful: StatefulRunner | None = None
        self.checkpoint: Checkpoint | None = None
        self._fetching = True

    def _on_batch(self, stats: Any) -> None:
        self.metrics.batch_size.observe(stats.size)
        self.metrics.queue_seconds.observe(stats.wait_s)

    async def on_start(self) -> None:
        self.serve_metrics()
        loop = asyncio.get_running_loop()
        step = await loop.run_in_executor(self.executor, build_step, self.topology, self.agent)
        await loop.run_in_executor(self.executor, step.warmup)
        if isinstance(step, StatefulStep):
            self.stateful = StatefulRunner(self, step)
            self.batcher = MicroBatcher(self.settings.fetch_records, 0)
        else:
            self.step = step
        await self.start_clients(_Rebalance(self), **(self.stateful.consumer_options()
                                                       if self.stateful else {}))
        assert self.producer is not None and self.consumer is not None
        self.checkpoint = Checkpoint(self.producer, self.consumer, self.group,
                                     exactly_once=self.exactly_once, on_fatal=self._crash)
        if self.topology.takes_control(self.agent):
            await self._follow_control()
        self.wstate.update(status="running")
        log.info("agent %s replica %d running (%s)", self.agent, self.replica,
                 "exactly-once" if self.exactly_once else "at-least-once")

    async def _follow_control(self) -> None:
        """Apply the latest run-time settings for this agent, then follow new ones."""
        assert self.step is not None
        follower = ControlFollower(self.bootstrap, self.topology.control_topic, self.agent,
                                   self.step.apply_control)
        await follower.catch_up()
        self.add_future(follower.follow())

    @mode.Service.task
    async def _consume(self) -> None:
        assert self.consumer is not None and self.checkpoint is not None
        while self._fetching and not self.should_stop:
            batches = await self.consumer.getmany(timeout_ms=self.settings.poll_ms,
                                                  max_records=self.settings.fetch_records)
            for tp, records in batches.items():  # bookkeeping once per partition's batch
                self.metrics.records_in.inc(len(records))
                self.checkpoint.track_many(tp, [r.offset for r in records])
                await self.batcher.put_many([self._decode(r) for r in records])
        self._consumed.set()

    def _decode(self, record: ConsumerRecord) -> Item:
        trace = Trace.from_record(record.key, record.headers)
        epoch = self.epochs.get(TopicPartition(record.topic, record.partition), 0)
        if self.stateful is not None:  # a stateful step reads the raw values it needs
            return Item(record, trace, None, epoch=epoch)
        try:
            item = Item(record, trace, decode_payload(record.value, trace.content_type),
                        epoch=epoch)
        except StreamComposeError as exc:
            return Item(record, trace, None, exc, epoch=epoch)
        if self.cost is not None:
            try:
                item.cost = self.cost(item.payload or {})
            except Exception as exc:  # the user's cost function: the record's fault
                return Item(record, trace, None, RecordError(
                    f"batch.cost {self.spec.batch.cost!r} failed: "
                    f"{exception_text(exc, typed=True)}", agent=self.agent), epoch=epoch)
        return item

    def current(self, tp: TopicPartition | None, epoch: int) -> bool:
        """Whether a record fetched in ``epoch`` of its partition's assignment may still
        be processed: not if the partition was revoked since (its records are consumed
        again by whoever owns it now, this worker included)."""
        return tp is None or self.epochs.get(tp, 0) == epoch

    @mode.Service.task
    async def _infer(self) -> None:
        """Hand the model thread the next batch while it runs the current one: while the
        event loop encodes a batch's results, the model already runs the next."""
        if self.stateful is not None:
            await self.stateful.run()
        running: deque[tuple[list[Item], list[Item], asyncio.Future]] = deque()
        gathering: asyncio.Future[list[Item]] | None = None
        try:
            while True:  # cancelled by mode after on_stop has drained the batcher
                if gathering is None and len(running) < INFER_DEPTH:
                    gathering = asyncio.ensure_future(self.batcher.next_batch())
                waits = {f for f in (gathering, running[0][2] if running else None) if f}
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if gathering is not None and gathering.done():
                    running.append(self._submit(gathering.result()))
                    gathering = None
                while running and running[0][2].done():
                    await self._finish(*running.popleft())
        finally:
            if gathering is not None:
                gathering.cancel()

    def _submit(self, taken: list[Item]) -> tuple[list[Item], list[Item], asyncio.Future]:
        """Queue a batch for the model thread."""
        batch = [i for i in taken if self.current(i.tp, i.epoch)]
        good = [i for i in batch if i.payload is not None]
        return batch, good, asyncio.get_running_loop().run_in_executor(
            self.executor, self._run_step, [(i.trace.request_id, i.payload) for i in good])

    def _run_step(self, requests: list[tuple[str, Any]]) -> tuple[Any, float]:
        """In the model thread: the step's outcomes (or the exception it raised) and the
        seconds it took."""
        assert self.step is not None
        started = time.perf_counter()
        try:
            outcomes = self.step(requests)
        except Exception as exc:  # a bug in a step must not stop the agent
            outcomes = exc
        return outcomes, time.perf_counter() - started

    async def _finish(self, batch: list[Item], good: list[Item], done: asyncio.Future) -> None:
        """Encode a batch's results (or dead letters) and queue them for delivery."""
        outcomes, seconds = done.result()
        if isinstance(outcomes, Exception):
            log.error("agent %s: step failed on a batch of %d", self.agent, len(good),
                      exc_info=outcomes)
            outcomes = [RecordError(exception_text(outcomes, typed=True),
                                    agent=self.agent)] * len(good)
        self.metrics.inference_seconds.observe(seconds)
        self.batcher.ran(len(good), seconds)
        for item, outcome in zip(good, outcomes, strict=True):
            if isinstance(outcome, RecordError):
                item.error = outcome
            else:
                item.emissions = outcome
        closings = [(self._closing(item), item.epoch) for item in batch]
        self.metrics.records_out.inc(sum(len(c.outputs) for (c, _), item
                                         in zip(closings, batch, strict=True)
                                         if item.error is None))
        await self.deliveries.put(closings)

    def _closing(self, item: Item) -> Closing:
        """The records a processed item gives: its results, or a dead letter."""
        if item.error is None:
            assert item.payload is not None and item.emissions is not None
            outputs = self._encode(item, item.emissions, item.payload)
            if isinstance(outputs, list):
                for e in item.emissions:
                    if e.target is not None:
                        self.metrics.routed(e.target)
                return Closing(item.tp, item.record.offset, outputs)
            item.error = outputs
        return Closing(item.tp, item.record.offset, [self._dead_letter(item, item.error)])

    def _encode(self, item: Item, emissions: list[Emission], payload: dict[str, Any]
                ) -> list[Output] | RecordError:
        trace = item.trace.passed(self.agent)
        outputs = []
        try:
            for e in emissions:
                merged = merge_result(payload, e.fields, self.spec.drop)
                outputs.append(Output(e.topic, encode_payload(merged, e.content_type),
                                      trace.key, [*trace.headers(e.content_type), *e.headers],
                                      self.partition_of(e.topic, item.record.partition)))
        except StreamComposeError as exc:
            return RecordError(f"the result cannot be encoded: {exc}", agent=self.agent)
        refused = next((reason for o in outputs if (reason := self.too_large(o))), None)
        return outputs if refused is None else RecordError(
            f"the result cannot be stored: {refused}", agent=self.agent)

    def _dead_letter(self, item: Item, error: BaseException) -> Output:
        record = item.record
        log.warning("agent %s: %s[%d]@%d -> dead letter: %s", self.agent, record.topic,
                    record.partition, record.offset, error)
        self.metrics.error(error_reason(error))
        dlq = self.topology.dlq_of(self.agent)
        room = self.limits.get(dlq, self.topology.max_message_bytes) - DEAD_LETTER_ROOM
        value = dead_letter_value(record.value, agent=self.agent, topic=record.topic,
                                  partition=record.partition, offset=record.offset,
                                  error=error, max_original=room)
        trace = item.trace.passed(self.agent)
        return Output(dlq, value, trace.key, trace.headers(MSGPACK),
                      self.partition_of(dlq, record.partition))

    @mode.Service.task
    async def _deliver(self) -> None:
        assert self.checkpoint is not None
        while True:  # cancelled by mode once on_stop has seen every record closed
            queued = await self.deliveries.get()
            while not self.deliveries.empty():  # one transaction for what piled up meanwhile
                queued += self.deliveries.get_nowait()
            await self.checkpoint.close([c for c, epoch in queued
                                         if self.current(c.tp, epoch)])
            self.metrics.in_flight.set(self.checkpoint.in_flight())

    def _crash(self, exc: BaseException) -> None:
        """Exit at once without committing: the supervisor restarts the worker, which
        consumes again from the last committed offset."""
        log.error("agent %s: an output could not be stored (%s); exiting so that the "
                  "records are consumed again", self.agent, exc)
        self.wstate.update(status="failed", error=str(exc))
        logging.shutdown()
        os._exit(EXIT_SEND_FAILED)

    @mode.Service.task
    async def _commit(self) -> None:
        while not self.should_stop:
            await asyncio.sleep(self.settings.commit_interval_s)
            if self.checkpoint is not None:
                await self.checkpoint.commit()

    async def on_stop(self) -> None:
        self.wstate.update(status="stopping")
        self._fetching = False
        if self.checkpoint is not None:
            with contextlib.suppress(TimeoutError):  # the fetch under way ends first
                await asyncio.wait_for(self._consumed.wait(), self.settings.drain_timeout_s)
            await self.checkpoint.settle(None, self.settings.drain_timeout_s)
        await self.close_clients()
        self.executor.shutdown(wait=False)
