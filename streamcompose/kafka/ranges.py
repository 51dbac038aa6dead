"""Reading what Kafka recorded: the records of topics between two positions, each a
time, an age or an offset, as the ``--from``/``--to``/``--since`` options of ``replay``,
``shadow-report`` and ``dlq`` take them.

>>> parse_position("42")
Position(offset=42, time_ms=None)
>>> parse_position("10m", now=1000.0).time_ms
400000
>>> parse_position("2026-11-28T08:00:00+00:00").time_ms
1795852800000
>>> parse_position("soon")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: 'soon' is not an offset (123), a time (2026-11-28T08:00, ISO 8601) or an age ...

Example (needs a broker)::

    records = asyncio.run(read_range("127.0.0.1:9092", ["digits.in"],
                                     parse_position("1h"), None, limit=100))
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from streamcompose.kafka.admin import topic_partitions
from streamcompose.kafka.clients import make_consumer

AGE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
AGE_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
POLL_MS = 200


@dataclass(frozen=True)
class Position:
    """Where to start or stop reading: the same offset in every partition, or the first
    record at or after a time (milliseconds since the epoch)."""

    offset: int | None = None
    time_ms: int | None = None


def parse_position(text: str, now: float | None = None) -> Position:
    """An offset (``123``), an ISO 8601 time (``2026-11-28T08:00``; local time without a
    zone) or an age (``30s``, ``10m``, ``2h``, ``1d``: that long before ``now``, seconds
    since the epoch)."""
    text = text.strip()
    if text.isdigit():
        return Position(offset=int(text))
    age = AGE_RE.match(text)
    if age:
        now = time.time() if now is None else now
        return Position(time_ms=int((now - float(age[1]) * AGE_UNITS_S[age[2]]) * 1000))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an offset (123), a time (2026-11-28T08:00, ISO 8601) "
                         "or an age (30s, 10m, 2h, 1d)") from None
    return Position(time_ms=int(moment.astimezone().timestamp() * 1000))


async def _offsets(consumer: AIOKafkaConsumer, tps: list[TopicPartition],
                   position: Position | None, default: dict[TopicPartition, int],
                   ends: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    """The offset of ``position`` in each partition (``default`` without one)."""
    if position is None:
        return dict(default)
    if position.offset is not None:
        return {tp: position.offset for tp in tps}
    found = await consumer.offsets_for_times({tp: position.time_ms for tp in tps})
    return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in tps}


async def read_range(bootstrap: str, topics: list[str], start: Position | None,
                     end: Position | None, limit: int | None = None) -> list[ConsumerRecord]:
    """The committed records of ``topics`` from ``start`` (inclusive; the beginning when
    None) to ``end`` (exclusive; the current end when None), in time order, at most
    ``limit`` (the earliest)."""
    tps = await topic_partitions(bootstrap, topics)
    consumer = make_consumer(bootstrap)
    await consumer.start()
    try:
        firsts = await consumer.beginning_offsets(tps)
        lasts = await consumer.end_offsets(tps)
        starts = await _offsets(consumer, tps, start, firsts, lasts)
        stops = await _offsets(consumer, tps, end, lasts, lasts)
        spans = {tp: (max(starts[tp], firsts[tp]), min(stops[tp], lasts[tp])) for tp in tps}
        records = [r async for r in _read_spans(consumer, spans)]
    finally:
        await consumer.stop()
    records.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
    return records if limit is None else records[:limit]


async def _read_spans(consumer: AIOKafkaConsumer,
                      spans: dict[TopicPartition, tuple[int, int]]
                      ) -> AsyncIterator[ConsumerRecord]:
    remaining = {tp for tp, (first, stop) in spans.items() if first < stop}
    consumer.assign(list(spans))
    for tp in remaining:
        consumer.seek(tp, spans[tp][0])
    while remaining:
        for tp, records in (await consumer.getmany(*remaining, timeout_ms=POLL_MS)).items():
            for record in records:
                if record.offset < spans[tp][1]:
                    yield record
        # transaction markers take offsets too: the position may pass the stop unseen
        remaining = {tp for tp in remaining if await consumer.position(tp) < spans[tp][1]}


async def follow(bootstrap: str, topics: list[str], quiet_s: float,
                 start_ms: int | None = None) -> AsyncIterator[ConsumerRecord]:
    """The committed records of ``topics`` from ``start_ms`` (the beginning when None) as
    they come, until none came for ``quiet_s`` seconds; the caller may stop earlier."""
    tps = await topic_partitions(bootstrap, topics)
    consumer = make_consumer(bootstrap)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        if start_ms is not None:
            found = await consumer.offsets_for_times({tp: start_ms for tp in tps})
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, found[tp].offset if found.get(tp) is not None else ends[tp])
        loop = asyncio.get_running_loop()
        last = loop.time()
        while loop.time() - last < quiet_s:
            batches = await consumer.getmany(timeout_ms=POLL_MS)
            for records in batches.values():
                for record in records:
                    last = loop.time()
                    yield record
    finally:
        await consumer.stop()
