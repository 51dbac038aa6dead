"""A worker's own consumer lag, for the ``streamcompose_lag`` gauge: the records of its
assigned partitions beyond its position (up to the last stable offset, which is what a
``read_committed`` consumer can read)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import IllegalStateError

LAG_INTERVAL_S = 1.0


async def consumer_lag(consumer: AIOKafkaConsumer) -> int:
    """Records of the consumer's assigned partitions it has not yet fetched, as far as
    its last fetch responses tell (partitions not fetched yet count 0)."""
    lag = 0
    for tp in consumer.assignment():
        end = consumer.last_stable_offset(tp)
        if end is None:
            end = consumer.highwater(tp)
        with contextlib.suppress(IllegalStateError):  # revoked meanwhile
            if end is not None:
                lag += max(0, end - await consumer.position(tp))
    return lag


async def report_lag(consumer: AIOKafkaConsumer, gauge: Any,
                     interval_s: float = LAG_INTERVAL_S) -> None:
    """Set ``gauge`` to the consumer's lag every ``interval_s`` until cancelled."""
    while True:
        gauge.set(await consumer_lag(consumer))
        await asyncio.sleep(interval_s)
