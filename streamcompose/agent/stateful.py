"""How the worker core runs a stateful step (a joiner, a fallback router).

Every topic such a step reads is keyed by request id and has the topology's partition
count, so one request's records sit in the same partition number of every topic; the
group uses the range assignor, which gives a replica the same partition numbers of every
topic, so all records of a request reach the same replica however many replicas run.

One Kafka transaction holds the step's results, dead letters and changelog records and
the input offsets of the polls they came from (stateful steps are always exactly-once);
it commits as soon as a poll emits something (see :meth:`StatefulRunner.run`). A
worker killed mid-stream leaves an open transaction that its successor aborts; the
successor restores the changelog (read committed) of the partitions it is given and
resumes from the committed offsets, timing requests out by the :class:`CatchUpClock`
until it has caught up, so no request is lost, emitted twice or emitted partial.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from streamcompose.agent.clock import CatchUpClock
from streamcompose.codec import MSGPACK, Trace
from streamcompose.codec.deadletter import dead_letter_value
from streamcompose.codec.record import now_ms
from streamcompose.delivery import Closing, Output
from streamcompose.errors import AgentError
from streamcompose.kafka.reader import read_to_end
from streamcompose.steps.stateful import Arrival, Send, StatefulStep

if TYPE_CHECKING:
    from streamcompose.agent.item import Item
    from streamcompose.agent.worker import AgentWorker

log = logging.getLogger("streamcompose.stateful")

#: how often the step looks at the time of every open request (timeouts, deadlines);
#: complete requests are answered by the poll that completes them
TIMERS_S = 0.05
#: a look that takes longer than TIMERS_S / LOOK_SHARE (thousands of open requests, a
#: joiner draining a backlog) waits LOOK_SHARE times as long as it took before the next,
#: so that looking takes at most a twentieth of the step's time (10000 open requests
#: and a look of 10 ms, say, time out up to 0.2 s late), but never more than LOOK_MAX_S
#: (a look stalled by a pause of the process)
LOOK_SHARE = 20
LOOK_MAX_S = 0.5


class StatefulRunner:
    """The stateful half of the worker core: restore, clock, one transaction a poll."""

    def __init__(self, worker: AgentWorker, step: StatefulStep) -> None:
        self.worker, self.step = worker, step
        self.busy = asyncio.Lock()
        self._clock: CatchUpClock | None = None
        self._open: list[Closing] = []  # records processed, not committed yet
        self._outputs: list[Output] = []  # what they gave
        self._emitted = False  # whether that includes results or dead letters
        self._opened = 0.0  # loop time of the first of them
        self._held: set[TopicPartition] = set()  # input partitions paused for the step
        # their records fetched already, in order
        self._deferred: dict[TopicPartition, list[Item]] = {}
        self._timers_at = 0.0  # loop time from which the step looks at its timers again

    @staticmethod
    def consumer_options() -> dict[str, Any]:
        return {"partition_assignment_strategy": (RangePartitionAssignor,)}

    @property
    def clock(self) -> CatchUpClock:
        if self._clock is None:
            w = self.worker
            assert w.consumer is not None and w.checkpoint is not None
            tracker = w.checkpoint.tracker
            self._clock = CatchUpClock(w.consumer, lambda tp: tracker.in_flight([tp]))
        return self._clock

    async def assigned(self, assigned: list[TopicPartition]) -> None:
        """Restore the state of newly assigned partitions, then catch up with them."""
        async with self.busy:
            partitions = sorted({tp.partition for tp in assigned})
            count = await read_to_end(self.worker.bootstrap, self.step.changelog, partitions,
                                      self.step.restore)
            self.step.store.restored()
            self.step.resumed(now_ms())
            log.info("agent %s restored %d changelog records for partitions %s: %s",
                     self.worker.agent, count, partitions, self.step.store.stats())
            await self.clock.catch_up(assigned)

    async def revoked(self, revoked: list[TopicPartition]) -> None:
        """Forget the state of partitions given away (after the open transaction); the
        first rebalance may come while the worker still starts, before there is any."""
        async with self.busy:
            for tp in revoked:  # consumed again by whoever owns them now
                self._deferred.pop(tp, None)
            self._held -= set(revoked)
            if self.worker.checkpoint is not None:
                if self._open or self._outputs:
                    await self.commit()
                self.worker.checkpoint.tracker.forget(revoked)
            self.step.forget({tp.partition for tp in revoked})

    async def run(self) -> None:
        """Process each poll as it comes; commit as soon as a poll emits something.

        Polls that only take records into the state (a request still missing branches)
        stay in the open unit of work: their offsets and changelog records are committed
        with the next poll that emits, or after ``commit_interval_s``, or before a
        rebalance or a stop. A request changed by several such polls is written to the
        changelog once. While catching up, every poll commits (the clock counts the
        records not yet closed as unprocessed)."""
        w = self.worker
        assert w.consumer is not None and w.checkpoint is not None
        loop = asyncio.get_running_loop()
        while True:  # cancelled by mode after on_stop
            wait = w.settings.poll_ms / 1000
            if self._open or self._outputs:
                wait = max(0.0, min(wait, self._opened + w.settings.commit_interval_s
                                    - loop.time()))
            batch = await w.batcher.next_batch(timeout=wait)
            async with self.busy:
                items = self._take(batch)
                now = await self.clock.now((i.record for i in items), self._held)
                timers = loop.time() >= self._timers_at
                if timers:
                    self._timers_at = loop.time() + min(max(TIMERS_S, LOOK_SHARE
                                                            * self.step.look_s), LOOK_MAX_S)
                    self.step.unread(await self._unread(), now)
                if items or timers:
                    await self._process(items, now, timers)
                if self._commit_due(loop.time()):
                    await self.commit()
                if not w._fetching and self._deferred and not self._open:
                    self._leave_deferred()

    def _take(self, batch: list[Item]) -> list[Item]:
        """The records to process now: those held back before, then ``batch``, but not
        those of partitions given away since they were fetched (a rebalance).

        A record that would open a request when the step has no room for more (a joiner
        at ``max_pending``) waits, and so does every later record of its partition, which
        is paused until there is room: branches running ahead of a slow sibling wait for
        it instead of filling the joiner."""
        w = self.worker
        assert w.consumer is not None
        owned = w.consumer.assignment()
        room = self.step.room()
        # a held partition goes on with a margin, so that it is not paused again at once
        # (pausing drops what the consumer had fetched of it, fetched again on resuming)
        again = self.step.room(resuming=True)
        waiting, self._deferred = self._deferred, {}
        items: list[Item] = []
        going: set[TopicPartition] = set()

        def take(tp: TopicPartition, queue: list[Item]) -> None:
            nonlocal room, again
            if tp in self._deferred:  # held already: after its earlier records
                self._deferred[tp].extend(queue)
                return
            for n, i in enumerate(queue):
                if not i.skipped and self.step.opens(i.trace.request_id):
                    if (room if tp in going or tp not in self._held else again) <= 0:
                        self._deferred[tp] = queue[n:]
                        return
                    room, again = room - 1, again - 1
                    going.add(tp)
                items.append(i)

        for tp, queue in waiting.items():  # revoked partitions' records were dropped
            take(tp, queue)
        for i in batch:
            tp = i.tp
            if tp in owned and w.current(tp, i.epoch):
                take(tp, [i])
        self._pause(set(self._deferred), owned)
        return items

    async def _unread(self) -> set[str]:
        """The input topics of which this worker has records on the broker still to read
        (its position is before the last stable offset). Partitions held back for room
        do not count: their records would open requests, not complete those waiting, and
        a branch that skipped the waiting ones must fall silent for them to time out."""
        consumer = self.worker.consumer
        assert consumer is not None
        topics: set[str] = set()
        for tp in consumer.assignment() - self._held:
            if tp.topic not in topics:
                end = consumer.last_stable_offset(tp)
                if end is not None and end > await consumer.position(tp):
                    topics.add(tp.topic)
        return topics

    def _leave_deferred(self) -> None:
        """On stopping, once the rest is committed: the records held back for room are
        left to whoever consumes their partitions next, so that stopping does not wait
        for them."""
        w = self.worker
        assert w.checkpoint is not None
        w.checkpoint.tracker.forget(self._deferred)
        w.drop_queued(self._deferred)
        log.info("agent %s stops with %d records not taken for room; they are consumed "
                 "again", w.agent, sum(map(len, self._deferred.values())))
        self._deferred = {}

    def _pause(self, held: set[TopicPartition], owned: set[TopicPartition]) -> None:
        """Pause the partitions ``held``, resume those held before and no longer."""
        consumer = self.worker.consumer
        assert consumer is not None
        before = self._held & owned
        if held == before:
            return
        consumer.resume(*(before - held))
        consumer.pause(*held)
        if bool(held) != bool(before):
            log.info("agent %s %s with %d requests open", self.worker.agent,
                     "waits with the inputs running ahead" if held
                     else "reads every input again", self.step.store.pending_count())
        self._held = held

    def _commit_due(self, now: float) -> bool:
        """Whether the open unit of work commits now: it emitted, or it is old or large
        enough, or the clock is catching up, or the worker stops."""
        w = self.worker
        if not self._open and not self._outputs:
            return False
        return (self._emitted or bool(self.clock.behind) or not w._fetching
                or now - self._opened >= w.settings.commit_interval_s
                or len(self._open) >= w.settings.fetch_records)

    async def _process(self, items: list[Any], now: int, timers: bool) -> None:
        w = self.worker
        loop = asyncio.get_running_loop()
        arrivals = [Arrival(i.record.topic, i.record.partition, i.record.offset,
                            i.record.timestamp, i.record.value, i.trace)
                    for i in items if not i.skipped]
        sends = await loop.run_in_executor(w.executor, self.step.handle, arrivals, now, False,
                                           timers)
        if not items and not sends:  # a look at the timers that found nothing due
            return
        if not self._open and not self._outputs:
            self._opened = loop.time()
        self._open.extend(Closing(i.tp, i.record.offset, []) for i in items)
        lineage = w.lineage.next_batch(len(items))
        self._outputs.extend(self._output(s, lineage) for s in sends)
        self._emitted = self._emitted or bool(sends)
        w.metrics.step_events(self.step.events)
        self.step.events.clear()
        w.metrics.in_flight.set(self.step.store.pending_count())

    async def commit(self) -> None:
        """Commit the open unit of work: its outputs, changelog records and offsets in one
        transaction."""
        w = self.worker
        assert w.checkpoint is not None
        # the step's thread packs the changelog records, as it runs the step
        changes = await asyncio.get_running_loop().run_in_executor(w.executor,
                                                                   self.step.changes)
        outputs = self._outputs + [self._output(s, None) for s in changes]
        closings = [*self._open, Closing(None, -1, outputs)]
        self._open, self._outputs, self._emitted = [], [], False
        await w.checkpoint.close(closings)

    def _output(self, send: Send, lineage: dict[str, Any] | None) -> Output:
        """The record to produce (with this step's ``lineage`` entry, but for the
        changelog); a result too large for its topic becomes a dead letter saying so."""
        w = self.worker
        if send.topic == self.step.changelog:
            return Output(send.topic, send.value, send.key, send.headers,
                          w.partition_of(send.topic, send.partition))
        out = Output(send.topic, send.value, send.key, w.lineage.stamp(send.headers, lineage),
                     w.partition_of(send.topic, send.partition))
        reason = w.too_large(out)
        if reason is None:
            return out
        w.metrics.error(AgentError.__name__)
        letter = dead_letter_value(b"", agent=w.agent, topic=send.topic,
                                   partition=send.partition, offset=-1,
                                   error=AgentError(f"the result cannot be stored: {reason}",
                                                    agent=w.agent, topic=send.topic))
        dlq = w.topology.dlq_topic
        trace = Trace.from_record(send.key, send.headers)
        return Output(dlq, letter, send.key, w.lineage.stamp(trace.headers(MSGPACK), lineage),
                      w.partition_of(dlq, send.partition))
