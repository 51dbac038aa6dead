"""Reading a topic's partitions to their end: how stateful steps restore their state.

Example (needs a broker)::

    count = await read_to_end("127.0.0.1:9092", "demo.vote.changelog", [0, 1],
                              lambda key, value: print(key, value))
"""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import TopicPartition

from streamcompose.kafka.clients import make_consumer


async def read_to_end(bootstrap: str, topic: str, partitions: list[int],
                      apply: Callable[[bytes, bytes | None], None]) -> int:
    """Hand every committed record of the partitions, oldest first, to ``apply(key,
    value)``; returns how many there were."""
    reader = make_consumer(bootstrap)
    await reader.start()
    count = 0
    try:
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)
        ends = await reader.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            for records in (await reader.getmany(*remaining, timeout_ms=500)).values():
                for record in records:
                    apply(record.key, record.value)
                    count += 1
            for tp in list(remaining):
                if await reader.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await reader.stop()
    return count
