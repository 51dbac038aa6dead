"""Run-time settings of running agents, carried by the topology's compacted control
topic (key: agent name, value: a JSON object of settings). A worker applies the latest
settings for its agent before consuming, then each new one as it arrives, between
batches, so no record is lost or handled twice.

Example (needs a broker)::

    asyncio.run(publish_control("127.0.0.1:9092", "ab.control", "ab",
                                {"weights": {"model_v1": 90, "model_v2": 10}}))
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer

from streamcompose.errors import StreamComposeError
from streamcompose.kafka.admin import topic_partitions
from streamcompose.kafka.clients import make_consumer, make_producer

log = logging.getLogger("streamcompose.control")


async def publish_control(bootstrap: str, topic: str, agent: str,
                          settings: dict[str, Any]) -> None:
    """Publish new settings for an agent; running workers apply them."""
    producer = make_producer(bootstrap, "streamcompose-control")
    await producer.start()
    try:
        await producer.send_and_wait(topic, json.dumps(settings).encode(), key=agent.encode())
    finally:
        await producer.stop()


class ControlFollower:
    """Reads the control topic and hands this agent's settings to ``apply``."""

    def __init__(self, bootstrap: str, topic: str, agent: str,
                 apply: Callable[[dict[str, Any]], None]) -> None:
        self.bootstrap, self.topic, self.agent, self.apply = bootstrap, topic, agent, apply
        self.consumer: AIOKafkaConsumer | None = None

    async def catch_up(self) -> None:
        """Apply the latest settings already published."""
        partitions = await topic_partitions(self.bootstrap, [self.topic])
        self.consumer = make_consumer(self.bootstrap)
        await self.consumer.start()
        self.consumer.assign(partitions)
        await self.consumer.seek_to_beginning(*partitions)
        ends = await self.consumer.end_offsets(partitions)
        latest = None
        while [tp for tp, end in ends.items() if await self.consumer.position(tp) < end]:
            for records in (await self.consumer.getmany(timeout_ms=200)).values():
                latest = next((r for r in reversed(records) if self._mine(r)), latest)
        if latest is not None:
            self._apply(latest.value)

    async def follow(self) -> None:
        """Apply new settings as they arrive (runs until cancelled)."""
        assert self.consumer is not None
        try:
            while True:
                for records in (await self.consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        if self._mine(record):
                            self._apply(record.value)
        finally:
            await self.consumer.stop()

    def _mine(self, record: Any) -> bool:
        return record.key == self.agent.encode() and record.value is not None

    def _apply(self, value: bytes) -> None:
        try:
            self.apply(json.loads(value))
            log.info("agent %s: applied run-time settings %s", self.agent, value.decode())
        except (ValueError, StreamComposeError) as exc:
            log.error("agent %s: ignored run-time settings %r: %s", self.agent, value, exc)
