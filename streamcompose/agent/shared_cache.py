"""A result cache shared by an agent's workers (``cache: {shared: true}``): each answer a
worker computes is also written, in the transaction of its batch, to the compacted topic
``<name>.<agent>.cache`` keyed by the cache key; every worker reads that topic to its end
before it starts consuming (so a restarted or added replica starts warm) and follows it
afterwards, taking the answers of the others into its own cache. Answers older than the
time to live are skipped.

>>> from streamcompose.steps.base import Emission
>>> value = encode_answer([Emission("d.out", {"y": 2}, (("h", b"v"),))], at_ms=7)
>>> decode_answer(value)
(7, [Emission(topic='d.out', fields={'y': 2}, headers=(('h', b'v'),), \
content_type='application/msgpack', target=None)])
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition

from streamcompose.codec import decode_payload, encode_payload
from streamcompose.codec.record import now_ms
from streamcompose.delivery import Output
from streamcompose.errors import StreamComposeError
from streamcompose.kafka.admin import topic_partitions
from streamcompose.kafka.clients import make_consumer
from streamcompose.steps.base import Emission
from streamcompose.topology.model import Topology

log = logging.getLogger("streamcompose.cache")
POLL_MS = 200


def encode_answer(emissions: list[Emission], at_ms: int) -> bytes:
    """A cache topic record's value: when the answer was computed, and the answer."""
    return encode_payload({"at": at_ms, "emissions": [
        {"topic": e.topic, "fields": e.fields, "headers": [list(h) for h in e.headers],
         "content_type": e.content_type, "target": e.target} for e in emissions]})


def decode_answer(value: bytes) -> tuple[int, list[Emission]]:
    data = decode_payload(value)
    return data["at"], [Emission(e["topic"], e["fields"],
                                 tuple((k, v) for k, v in e["headers"]), e["content_type"],
                                 e["target"]) for e in data["emissions"]]


class SharedCache:
    """Writes a worker's fresh answers to the cache topic and feeds the others' answers
    to ``remember(key, answer, at_ms)``."""

    def __init__(self, bootstrap: str, topic: str, ttl_s: float,
                 remember: Callable[[bytes, Any, int], None]) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.ttl_ms = ttl_s * 1000
        self.remember = remember
        self.consumer = make_consumer(bootstrap, client_id=f"cache-reader.{topic}")
        self.loaded = 0

    def outputs(self, fresh: list[tuple[bytes, list[Emission]]]) -> list[Output]:
        """The cache topic records of freshly computed answers."""
        at = now_ms()
        return [Output(self.topic, encode_answer(answer, at), key, []) for key, answer in fresh]

    async def load(self) -> None:
        """Read the topic to its end (the answers other workers computed so far)."""
        partitions = await topic_partitions(self.bootstrap, [self.topic])
        await self.consumer.start()
        self.consumer.assign(partitions)
        await self.consumer.seek_to_beginning(*partitions)
        ends = await self.consumer.end_offsets(partitions)
        waiting = {tp for tp in partitions if ends[tp] > 0}
        while waiting:
            self._take(await self.consumer.getmany(*waiting, timeout_ms=POLL_MS))
            for tp in list(waiting):
                if await self.consumer.position(tp) >= ends[tp]:
                    waiting.discard(tp)
        log.info("shared cache %s: %d answers loaded", self.topic, self.loaded)

    async def follow(self) -> None:
        """Take the answers other workers write, until cancelled."""
        try:
            while True:
                self._take(await self.consumer.getmany(timeout_ms=POLL_MS))
        except asyncio.CancelledError:
            await self.consumer.stop()
            raise

    def _take(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        now = now_ms()
        for records in fetched.values():
            for record in records:
                if record.value is None or record.key is None:
                    continue
                try:
                    at, answer = decode_answer(record.value)
                except (StreamComposeError, KeyError, TypeError, ValueError) as exc:
                    log.warning("shared cache %s[%d]@%d: unreadable answer skipped: %s",
                                self.topic, record.partition, record.offset, exc)
                    continue
                if now - at < self.ttl_ms:
                    self.remember(record.key, answer, at)
                    self.loaded += 1


def shared_cache(topology: Topology, agent: str, bootstrap: str,
                 remember: Callable[[bytes, Any, int], None]) -> SharedCache | None:
    """The shared cache of an agent with ``cache: {shared: true}``, else None."""
    spec = topology.agent(agent).cache
    if spec is None or not spec.shared:
        return None
    return SharedCache(bootstrap, topology.cache_topic(agent), spec.ttl_s, remember)
