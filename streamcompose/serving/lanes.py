"""Priority lanes: a topology with ``priorities: [high, normal, low]`` has one input
topic per lane, and its input agents fetch from the most urgent lane that has records.
A lane is never starved: a lane passed over ``ratio`` times in a row by fetches served
from more urgent lanes is tried first on the next fetch (when it has records, that
fetch serves it), so a waiting lane gets at least one fetch in every ``ratio + 1``
(``ratio + lanes - 1`` when several lanes wait at once).

The fetches take records only from the chosen lane's partitions (aiokafka's
``getmany(*partitions)``); the records other lanes' partitions fetched meanwhile stay
buffered in the consumer, one fetch response per partition, until their lane's turn.

>>> s = LaneScheduler(lanes=2, ratio=3)
>>> served = []
>>> for _ in range(8):  # both lanes always have records
...     lane = s.order()[0]
...     s.tried(lane, served=True)
...     served.append(lane)
>>> served
[0, 0, 0, 1, 0, 0, 0, 1]
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from streamcompose.topology.model import Topology

Fetched = dict[TopicPartition, list[Any]]
PRIORITY = "sc-priority"  # the header naming a request's lane, set by its publisher


class LaneScheduler:
    """Which lane (0 the most urgent) to try first, second, ... for the next fetch."""

    def __init__(self, lanes: int, ratio: int) -> None:
        self.lanes, self.ratio = lanes, ratio
        self.passed_over = [0] * lanes

    def order(self) -> list[int]:
        """Lanes passed over ``ratio`` times, then the others, each by urgency."""
        due = [lane for lane in range(self.lanes) if self.passed_over[lane] >= self.ratio]
        return [*due, *(lane for lane in range(self.lanes) if lane not in due)]

    def tried(self, lane: int, served: bool) -> None:
        """A fetch tried ``lane``: it served records of it, or found none (then the lane
        waits for nothing and its count starts again)."""
        self.passed_over[lane] = 0
        if served:
            for less_urgent in range(lane + 1, self.lanes):
                self.passed_over[less_urgent] += 1


class LaneFetcher:
    """Fetches for an agent that reads a topology's priority lanes (``lane_topics``,
    most urgent first); partitions of its other input topics come with every fetch."""

    def __init__(self, consumer: AIOKafkaConsumer, lane_topics: list[str], ratio: int,
                 chunk: int) -> None:
        self.consumer, self.topics, self.chunk = consumer, lane_topics, chunk
        self.scheduler = LaneScheduler(len(lane_topics), ratio)

    async def fetch(self, timeout_ms: int) -> Fetched:
        """Records of the lane whose turn it is, or, when no lane has any buffered,
        whatever arrives first within ``timeout_ms``."""
        assigned = self.consumer.assignment()
        others = [tp for tp in assigned if tp.topic not in self.topics]
        for lane in self.scheduler.order():
            partitions = [tp for tp in assigned if tp.topic == self.topics[lane]]
            got = await self.consumer.getmany(*partitions, *others, timeout_ms=0,
                                              max_records=self.chunk) if partitions else {}
            self.scheduler.tried(lane, any(tp.topic == self.topics[lane] for tp in got))
            if got:
                return got
        got = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=self.chunk)
        lanes = [self.topics.index(tp.topic) for tp in got if tp.topic in self.topics]
        if lanes:
            self.scheduler.tried(min(lanes), True)
        return got


def lane_fetcher(consumer: AIOKafkaConsumer, topology: Topology, agent: str,
                 batch_size: int) -> LaneFetcher | None:
    """The fetcher of an agent that reads the topology's lanes; None for other agents.
    A fetch takes about two batches, so that few less urgent records queue ahead of
    urgent ones in the batcher."""
    inputs = topology.input_topics(agent)
    lanes = [topic for topic in topology.lane_topics().values() if topic in inputs]
    if not lanes or topology.priorities is None:
        return None
    return LaneFetcher(consumer, lanes, topology.priorities.ratio, max(2 * batch_size, 16))
