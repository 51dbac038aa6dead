"""Delivery: how a batch's outputs and its input offsets reach Kafka, under one policy.

A :class:`Checkpoint` closes batches of consumed records. Each consumed record is
*tracked* when fetched; closing a batch sends every output of its records (results, dead
letters, state changes) and moves the input offsets past them. The policy is a flag:

* **at-least-once** (``exactly_once=False``): outputs are sent with ``acks=all``; a
  record's offset becomes committable once all its outputs, and every earlier record of
  its partition, are acknowledged; :meth:`Checkpoint.commit` commits what is committable.
  A worker that dies re-consumes what it had not committed: nothing is lost, some results
  may come twice.
* **exactly-once** (``exactly_once=True``): the outputs of a batch and its input offsets
  go into one Kafka transaction. Consumers read committed records only, so a worker that
  dies mid-batch leaves an aborted transaction that nobody sees, and its successor (same
  transactional id) consumes the batch again: every result appears once.

Example (needs a broker)::

    checkpoint = Checkpoint(producer, consumer, "my-group", exactly_once=True)
    checkpoint.track(tp, [record.offset])
    await checkpoint.close([Closing(tp, record.offset, [Output("out", b"v", b"k")])])
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from streamcompose.delivery.offsets import OffsetTracker

log = logging.getLogger("streamcompose.delivery")
Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Output:
    """One record to produce; ``partition`` None hashes the key."""

    topic: str
    value: bytes | None
    key: bytes
    headers: Headers = field(default_factory=list)
    partition: int | None = None


@dataclass(frozen=True)
class Closing:
    """A consumed record (its partition and offset) and the outputs it gave; ``tp`` None
    for outputs that close no record (a stateful step's timeouts)."""

    tp: TopicPartition | None
    offset: int
    outputs: list[Output]


class Checkpoint:
    """Closes batches under at-least-once or exactly-once delivery.

    ``on_fatal`` is called when an output cannot be stored for a reason that is not the
    record's own (the broker gone for longer than the producer waits, a fenced
    producer): the worker must then stop without committing and be restarted."""

    def __init__(self, producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, group: str, *,
                 exactly_once: bool, on_fatal: Callable[[BaseException], None]) -> None:
        self.producer, self.consumer, self.group = producer, consumer, group
        self.exactly_once = exactly_once
        self.on_fatal = on_fatal
        self.tracker = OffsetTracker()

    def track(self, tp: TopicPartition, offsets: Iterable[int]) -> None:
        """Register the consumed records of one partition's fetch, in order, before they
        are processed."""
        self.tracker.track_many(tp, offsets)

    def in_flight(self, partitions: Iterable[TopicPartition] | None = None) -> int:
        """Tracked records whose batch is not closed (or not acknowledged) yet."""
        return self.tracker.in_flight(partitions)

    async def close(self, batch: list[Closing]) -> None:
        """Send the outputs of a batch and move its offsets past it."""
        if not batch:
            return
        if self.exactly_once:
            await self._close_transaction(batch)
        else:
            for closing in batch:
                await self._send_acknowledged(closing)

    async def _close_transaction(self, batch: list[Closing]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for closing in batch:
            if closing.tp is not None:
                offsets[closing.tp] = max(offsets.get(closing.tp, 0), closing.offset + 1)
        owned = self.consumer.assignment()
        try:
            async with self.producer.transaction():
                sent = await self._send_all([o for closing in batch for o in closing.outputs])
                kept = {tp: o for tp, o in offsets.items() if tp in owned}
                if kept:
                    await self.producer.send_offsets_to_transaction(kept, self.group)
                # aiokafka commits a transaction even when one of its batches failed: a
                # failed output must abort it instead
                await asyncio.gather(*sent)
        except KafkaError as exc:
            self.on_fatal(exc)
            raise
        for closing in batch:
            self._done(closing)

    async def _send_all(self, outputs: list[Output]) -> list[asyncio.Future]:
        """Send outputs in order, those bound for a known partition as whole record
        batches (one future per batch rather than per record); returns the futures."""
        sent, builders = [], {}
        for o in outputs:
            if o.partition is None:
                sent.append(await self.producer.send(o.topic, o.value, key=o.key,
                                                     headers=o.headers))
                continue
            record = {"timestamp": None, "key": o.key, "value": o.value, "headers": o.headers}
            where = (o.topic, o.partition)
            builder = builders.get(where)
            if builder is not None and builder.append(**record) is not None:
                continue
            if builder is not None:  # full: send it, start the next
                sent.append(await self.producer.send_batch(builder, o.topic,
                                                           partition=o.partition))
            builder = builders[where] = self.producer.create_batch()
            if builder.append(**record) is None:  # larger than a batch
                del builders[where]
                sent.append(await self.producer.send(o.topic, o.value, key=o.key,
                                                     headers=o.headers, partition=o.partition))
        for (topic, partition), builder in builders.items():
            sent.append(await self.producer.send_batch(builder, topic, partition=partition))
        return sent

    def _done(self, closing: Closing) -> None:
        if closing.tp is not None:
            self.tracker.done(closing.tp, closing.offset)

    async def _send_acknowledged(self, closing: Closing) -> None:
        remaining = len(closing.outputs)
        if remaining == 0:
            self._done(closing)
            return

        def acknowledged(fut: asyncio.Future) -> None:
            nonlocal remaining
            error = RuntimeError("the send was cancelled") if fut.cancelled() else fut.exception()
            if error is not None:
                log.error("output of %s@%d not stored: %s", closing.tp, closing.offset, error)
                self.on_fatal(error)
                return
            remaining -= 1
            if remaining == 0:
                self._done(closing)

        for o in closing.outputs:
            delivery = await self.producer.send(o.topic, o.value, key=o.key, headers=o.headers,
                                                partition=o.partition)
            delivery.add_done_callback(acknowledged)

    async def commit(self) -> None:
        """Commit what every acknowledged record allows (at-least-once; under
        exactly-once the offsets were committed with each transaction). A commit refused
        because a rebalance moved the partitions away is dropped: the new owner consumes
        those records again."""
        positions = self.tracker.committable()
        if self.exactly_once or not positions:
            return
        owned = self.consumer.assignment()
        try:
            await self.consumer.commit({tp: o for tp, o in positions.items() if tp in owned})
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("commit refused after a rebalance (%s); retried while this worker "
                        "owns the partitions, else their new owner consumes those records "
                        "again", exc)
            self.tracker.uncommit(positions)
        except KafkaError as exc:  # the broker is away: the next commit carries these too
            log.warning("commit failed (%s); retrying with the next one", exc)
            self.tracker.uncommit(positions)

    async def settle(self, partitions: list[TopicPartition] | None, timeout_s: float) -> None:
        """Wait until every tracked record (of ``partitions``, or all) is closed and
        acknowledged, then commit; forget ``partitions`` afterwards."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.tracker.in_flight(partitions) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if self.tracker.in_flight(partitions):
            log.warning("%d records still in flight after %.0fs; their partitions' new owner "
                        "consumes them again", self.tracker.in_flight(partitions), timeout_s)
        if not self.exactly_once:
            await self.producer.flush()
        await self.commit()
        if partitions is not None:
            self.tracker.forget(partitions)
