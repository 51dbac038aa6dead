"""Reading partitions to their end: how stateful steps restore their state, and how
``streamcompose trace`` finds a request's records.

Example (needs a broker)::

    count = await read_to_end("127.0.0.1:9092", "demo.vote.changelog", [0, 1],
                              lambda key, value: print(key, value))
"""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import ConsumerRecord, TopicPartition

from streamcompose.kafka.clients import make_consumer


async def read_to_end(bootstrap: str, topic: str, partitions: list[int],
                      apply: Callable[[bytes, bytes | None], None]) -> int:
    """Hand every committed record of the partitions, oldest first, to ``apply(key,
    value)``; returns how many there were."""
    return await read_records(bootstrap, [TopicPartition(topic, p) for p in sorted(partitions)],
                              lambda record: apply(record.key, record.value))


async def read_records(bootstrap: str, tps: list[TopicPartition],
                       apply: Callable[[ConsumerRecord], None], *, since_ms: int | None = None,
                       progress: Callable[[int, int], None] | None = None) -> int:
    """Hand every committed record of the partitions ``tps`` (those written from
    ``since_ms`` on, if given), oldest first in each, to ``apply(record)``, up to the end
    each had when this started; ``progress(done, total)`` follows the records read.
    Returns how many there were."""
    reader = make_consumer(bootstrap)
    await reader.start()
    count = 0
    try:
        reader.assign(tps)
        starts = await reader.beginning_offsets(tps)
        if since_ms is not None:
            found = await reader.offsets_for_times(dict.fromkeys(tps, since_ms))
            ends_now = await reader.end_offsets(tps)
            starts = {tp: found[tp].offset if found[tp] else ends_now[tp] for tp in tps}
        for tp in tps:
            reader.seek(tp, starts[tp])
        ends = await reader.end_offsets(tps)
        total = sum(max(ends[tp] - starts[tp], 0) for tp in tps)
        remaining = {tp for tp in tps if ends[tp] > starts[tp]}
        while remaining:
            for records in (await reader.getmany(*remaining, timeout_ms=500)).values():
                for record in records:
                    if record.offset < ends[TopicPartition(record.topic, record.partition)]:
                        apply(record)
                        count += 1
            for tp in list(remaining):
                if await reader.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if progress is not None:
                done = [min(await reader.position(tp), ends[tp]) - starts[tp] for tp in tps]
                progress(sum(done), total)
    finally:
        await reader.stop()
    return count
