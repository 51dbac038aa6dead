"""The agent worker, the one core every agent kind runs on: consume, decode, batch,
run the step, encode, deliver.

One worker process runs one replica of one agent, whatever its kind: the step it runs
(:mod:`streamcompose.kinds`) is a model, a router, a joiner or a fallback router. Its
life cycle (start, signal handling, graceful stop) is a faust-streaming ``mode.Service``;
its hot path consumes with aiokafka's batch ``getmany``. Three tasks form a pipeline:

1. ``_consume``: fetch records, register each with the :class:`Checkpoint`, decode it
   and put it into the :class:`MicroBatcher` (waiting while it is full). A value that
   cannot be decoded travels on as an item bound for the dead-letter topic.
2. ``_infer``: take a batch, let the serving gate dead-letter expired requests and
   answer cached ones (:mod:`streamcompose.serving`), run the step on the rest in the
   model thread so that the event loop keeps fetching and heartbeating, encode one
   result (or dead letter) per record; the model thread is handed the next batch while
   the loop encodes the current one (:mod:`streamcompose.agent.pipeline`).
3. ``_deliver``: close the batches through the checkpoint (one transaction under
   exactly-once; acknowledged sends under at-least-once) while the next batch runs;
   batches that piled up during a transaction are closed together in the next one.

A stateful step (joiner, fallback) instead takes each poll's records with the time of
its :class:`CatchUpClock`, and what it sends, changelog included, goes in the same
transaction as the offsets; its state is restored from the changelog when partitions
are assigned (:mod:`streamcompose.agent.stateful`).

Results are encoded, or dead-lettered (a result larger than its topic takes, with the
original cut to fit), by :mod:`streamcompose.agent.encoding`; a record never stops the
worker. On SIGTERM the worker stops fetching, finishes every record already fetched,
commits and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import mode
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener

from streamcompose.agent.control import ControlFollower
from streamcompose.agent.encoding import EncodingWorker
from streamcompose.agent.item import Item, Processed
from streamcompose.agent.pipeline import InferencePipeline
from streamcompose.agent.shared_cache import SharedCache, shared_cache
from streamcompose.agent.standby import Standby
from streamcompose.agent.stateful import StatefulRunner
from streamcompose.batching.adaptive import WaitPolicy
from streamcompose.batching.batcher import MicroBatcher
from streamcompose.batching.cost import cost_function
from streamcompose.codec import Trace, decode_payload
from streamcompose.codec.reasons import exception_text
from streamcompose.codec.redrive import meant_for
from streamcompose.delivery import Checkpoint
from streamcompose.errors import StreamComposeError
from streamcompose.kinds import build_step
from streamcompose.observe import tracing
from streamcompose.observe.lag import report_lag
from streamcompose.observe.monitor import build_monitor
from streamcompose.runtimes import RecordError
from streamcompose.serving.gate import ServingGate
from streamcompose.serving.lanes import LaneFetcher, lane_fetcher
from streamcompose.steps.base import Step
from streamcompose.steps.stateful import StatefulStep

log = logging.getLogger("streamcompose.agent")
EXIT_SEND_FAILED = 3
DELIVERY_QUEUE = 16  # processed batches waiting for the checkpoint; closed together


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: AgentWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        worker = self.worker
        if worker.stateful is not None:
            await worker.stateful.revoked(revoked)
        elif worker.checkpoint is not None:
            await worker.checkpoint.settle(revoked, worker.settings.drain_timeout_s)
        worker.drop_queued(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if self.worker.stateful is not None:
            await self.worker.stateful.assigned(assigned)
        self.worker.joined(assigned)


class AgentWorker(EncodingWorker):
    """Runs one replica of one agent (a model or a stateless router) of a topology."""

    # a batch whose step is quicker runs on the event loop; for one agent never, its model
    # thread overlapping the model with the loop's decoding and encoding
    inline_step_s = 0.0

    def __init__(self, *args: Any, standby: Standby | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.standby = standby
        self.serves: tuple[str, ...] = (self.agent,)  # whose redriven requests it takes
        b = self.spec.batch
        self.cost = cost_function(b.cost, self.topology.base_dir) if b.cost else None
        self.batcher: MicroBatcher[Item] = MicroBatcher(
            b.max_size, b.max_wait_ms, on_batch=self._on_batch,
            policy=WaitPolicy(b.max_size, b.max_wait_ms / 1000) if b.auto_wait else None,
            cost=(lambda item: item.cost) if self.cost else None, max_cost=b.max_cost)
        self.deliveries: asyncio.Queue[list[Processed]] = asyncio.Queue(DELIVERY_QUEUE)
        self.epochs: dict[TopicPartition, int] = {}
        self._consumed = asyncio.Event()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"model-{self.agent}")
        self.step: Step | None = None
        self.stateful: StatefulRunner | None = None
        self.checkpoint: Checkpoint | None = None
        self._fetching = True
        self.gate = ServingGate(self.topology, self.agent, self.metrics)
        self.lanes: LaneFetcher | None = None
        self.shared_cache: SharedCache | None = None
        tracing.configure(f"{self.topology.name}.{self.agent}")
        self.tracing = tracing.hop_tracer(self.agent)
        self.monitor = build_monitor(self.spec.monitor, self.metrics, self.agent,
                                     self.wstate.path)

    def _on_batch(self, stats: Any) -> None:
        self.metrics.batch_size.observe(stats.size)
        self.metrics.queue_seconds.observe(stats.wait_s)

    async def on_start(self) -> None:
        self.serve_metrics()
        loop = asyncio.get_running_loop()
        step = await loop.run_in_executor(self.executor, build_step, self.topology, self.agent)
        await loop.run_in_executor(self.executor, step.warmup)
        if self.settings.freeze_heap:  # a worker has its process to itself
            gc.collect()
            gc.freeze()
            self.metrics.frozen_objects.set(gc.get_freeze_count())
        if self.standby is not None:
            await self.standby.wait(self.wstate)
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
        self.lanes = lane_fetcher(self.consumer, self.topology, self.agent,
                                  self.spec.batch.max_size)
        self.shared_cache = shared_cache(self.topology, self.agent, self.bootstrap,
                                         self.gate.remember)
        if self.shared_cache is not None:  # answered before: loaded before consuming
            await self.shared_cache.load()
            self.add_future(self.shared_cache.follow())
        self.add_future(report_lag(self.consumer, self.metrics.lag))
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
            batches = await (self.lanes.fetch(self.settings.poll_ms) if self.lanes else
                             self.consumer.getmany(timeout_ms=self.settings.poll_ms,
                                                   max_records=self.settings.fetch_records))
            for tp, records in batches.items():  # bookkeeping once per partition's batch
                self.metrics.records_in.inc(len(records))
                self.checkpoint.track(tp, [r.offset for r in records])
                await self.batcher.put_many([self._decode(r, tp) for r in records])
        self._consumed.set()

    def _decode(self, record: ConsumerRecord, tp: TopicPartition) -> Item:
        trace = Trace.from_record(record.key, record.headers)
        epoch = self.epochs.get(tp, 0)
        if not meant_for(self.serves, record.topic, record.headers):
            return Item(record, trace, None, epoch=epoch, tp=tp, skipped=True)
        if self.stateful is not None:  # a stateful step reads the raw values it needs
            return Item(record, trace, None, epoch=epoch, tp=tp)
        hop = self.tracing and self.tracing.received(
            trace.request_id, trace.extra, f"{record.topic}[{record.partition}]@{record.offset}")
        try:
            item = Item(record, trace, decode_payload(record.value, trace.content_type),
                        epoch=epoch, tp=tp, hop=hop)
        except StreamComposeError as exc:
            return Item(record, trace, None, exc, epoch=epoch, tp=tp, hop=hop)
        if self.cost is not None:
            try:
                item.cost = self.cost(item.payload or {})
            except Exception as exc:  # the user's cost function: the record's fault
                return Item(record, trace, None, RecordError(
                    f"batch.cost {self.spec.batch.cost!r} failed: "
                    f"{exception_text(exc, typed=True)}", agent=self.agent), epoch=epoch, tp=tp,
                    hop=hop)
        return item

    def drop_queued(self, partitions: Iterable[TopicPartition]) -> None:
        """What is still queued of ``partitions`` (fetched, not yet taken) is dropped,
        never processed: a new epoch of their assignment begins."""
        for tp in partitions:
            self.epochs[tp] = self.epochs.get(tp, 0) + 1

    def current(self, tp: TopicPartition | None, epoch: int) -> bool:
        """Whether a record fetched in ``epoch`` of its partition's assignment may still
        be processed: not if the partition was revoked since (its records are consumed
        again by whoever owns it now, this worker included)."""
        return tp is None or self.epochs.get(tp, 0) == epoch

    @mode.Service.task
    async def _infer(self) -> None:
        if self.stateful is not None:
            await self.stateful.run()
        assert self.step is not None
        await InferencePipeline(self).run()

    @mode.Service.task
    async def _deliver(self) -> None:
        assert self.checkpoint is not None
        while True:  # cancelled by mode once on_stop has seen every record closed
            queued = await self.deliveries.get()
            while not self.deliveries.empty():  # one transaction for what piled up meanwhile
                queued += self.deliveries.get_nowait()
            await self.checkpoint.close([c for c, epoch, _ in queued
                                         if self.current(c.tp, epoch)])
            if self.tracing:
                self.tracing.done(hop for _, _, hop in queued)
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
        tracing.flush()
