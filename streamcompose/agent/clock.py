"""The clock of a stateful step: by its inputs' own timestamps until it has caught up.

A worker that has just taken partitions (after a restart, say) first reads what piled up
on them. Until it has processed every input partition up to where it ended at
assignment (fetched is not enough: fetched records may still wait in the worker's
queue), time runs on the records' own timestamps: the oldest of the newest timestamps
processed on the partitions still behind, a moment up to which every input has been
read. Once caught up, it is the wall clock. So a restarted joiner never takes a restored
request for timed out before it has read the branch results that complete it.

Example (needs a consumer)::

    clock = CatchUpClock(consumer, unprocessed=lambda tp: 0)
    await clock.catch_up(assigned)
    now = await clock.now(polled_records)
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from streamcompose.codec.record import now_ms

log = logging.getLogger("streamcompose.clock")


class CatchUpClock:
    """Event time while catching up with the assigned partitions, then wall time."""

    def __init__(self, consumer: AIOKafkaConsumer,
                 unprocessed: Callable[[TopicPartition], int]) -> None:
        """``unprocessed(tp)``: records of ``tp`` fetched and not yet processed (the
        records given to :meth:`now` included)."""
        self.consumer, self.unprocessed = consumer, unprocessed
        self.behind: dict[TopicPartition, int] = {}
        self.seen_ms: dict[TopicPartition, int] = {}
        self.last = 0  # the clock never runs backwards

    async def catch_up(self, assigned: Iterable[TopicPartition]) -> None:
        """Note where each newly assigned partition ends now."""
        ends = await self.consumer.end_offsets(list(assigned))
        self.behind.update({tp: end for tp, end in ends.items() if end > 0})

    async def now(self, records: Iterable[ConsumerRecord],
                  held: Collection[TopicPartition] = ()) -> int:
        """The time at which the step should look at what is due, given the records of
        this poll; partitions ``held`` back (their records would only open requests) do
        not hold the clock back, and once only they are behind it is the wall clock."""
        if not self.behind:
            return now_ms()
        taken: Counter[TopicPartition] = Counter()
        for r in records:
            tp = TopicPartition(r.topic, r.partition)
            self.seen_ms[tp] = max(self.seen_ms.get(tp, 0), r.timestamp)
            taken[tp] += 1
        owned = self.consumer.assignment()
        self.behind = {tp: end for tp, end in self.behind.items()
                       if tp in owned and (await self.consumer.position(tp) < end
                                           or self.unprocessed(tp) > taken[tp])}
        if not self.behind:
            log.info("caught up with the inputs; timeouts follow the wall clock")
            self.seen_ms = {}
            return now_ms()
        waiting = [tp for tp in self.behind if tp not in held]
        self.last = max(self.last, min(self.seen_ms.get(tp, 0) for tp in waiting)
                        if waiting else now_ms())
        return self.last
