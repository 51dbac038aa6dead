"""Kafka administration: topics of a topology and consumer lag of its agents.

Example (needs a broker)::

    asyncio.run(ensure_topics("127.0.0.1:9092", {"demo.in": 3}))
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, KafkaError

from streamcompose.errors import BrokerError
from streamcompose.kafka.diagnose import raise_security_failure, unreachable
from streamcompose.kafka.security import client_options

CONNECT_TIMEOUT_S = 10.0
COUNTED_GAP = 64  # gaps up to this many offsets are counted record by record
COUNT_TIMEOUT_S = 3.0


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000,
                                **client_options())
    try:
        await asyncio.wait_for(admin.start(), CONNECT_TIMEOUT_S)
    except (KafkaConnectionError, TimeoutError, OSError) as exc:
        await admin.close()
        await raise_security_failure(bootstrap)
        raise unreachable(bootstrap, exc) from exc
    return admin


async def broker_count(bootstrap: str) -> int:
    """How many brokers the cluster has."""
    admin = await _admin(bootstrap)
    try:
        return len((await admin.describe_cluster())["brokers"])
    finally:
        await admin.close()


async def ensure_topics(bootstrap: str, topics: Mapping[str, int],
                        compacted: Iterable[str] = (),
                        configs: Mapping[str, str] | None = None,
                        replication: int = 1) -> dict[str, int]:
    """Create the topics that do not exist yet (name -> partitions, ``replication``
    replicas each; those named in ``compacted`` with ``cleanup.policy=compact``;
    ``configs`` for every new topic). Returns every topic's actual partition count;
    existing topics are left as they are."""
    compact = set(compacted)
    admin = await _admin(bootstrap)
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(name, parts, replication, topic_configs={
                    **(configs or {}), **({"cleanup.policy": "compact"} if name in compact
                                          else {})})
               for name, parts in topics.items() if name not in existing]
        if new:
            response = await admin.create_topics(new)
            for name, code, *rest in getattr(response, "topic_errors", ()):
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS, a concurrent create
                    message = rest[0] if rest else ""
                    raise BrokerError(f"cannot create topic {name!r}: error {code} {message}",
                                      bootstrap=bootstrap)
        counts: dict[str, int] = {}
        deadline = asyncio.get_running_loop().time() + CONNECT_TIMEOUT_S
        while topics:  # a topic just created may not show its partitions at once
            described = await admin.describe_topics(list(topics))
            counts = {d["topic"]: len(d["partitions"]) for d in described}
            if all(counts.values()) or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
        return counts
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, topics: list[str]) -> None:
    """Delete topics that exist."""
    admin = await _admin(bootstrap)
    try:
        existing = set(await admin.list_topics())
        doomed = [t for t in topics if t in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


async def consumer_lag(bootstrap: str, group: str, topics: list[str]) -> dict[str, int]:
    """Records not yet committed by ``group``, per topic: the sum over the topic's
    partitions of :func:`partition_lag`. A topic that does not exist counts 0."""
    lag: dict[str, int] = dict.fromkeys(topics, 0)
    for tp, n in (await partition_lag(bootstrap, group, topics)).items():
        lag[tp.topic] += n
    return lag


async def partition_lag(bootstrap: str, group: str, topics: list[str]
                        ) -> dict[TopicPartition, int]:
    """Records not yet committed by ``group``, per partition of the topics that exist:
    the committed records between the group's committed offset (0 where none is
    committed) and the partition's end.

    Offsets also number the markers that close transactions, so a small gap is counted
    record by record: a group that has consumed everything written in transactions lags
    0, not the number of markers after its last record."""
    admin = await _admin(bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=10000,
                                isolation_level="read_committed", enable_auto_commit=False,
                                **client_options())
    try:
        described = await admin.describe_topics(list(dict.fromkeys(topics)))
        partitions = [TopicPartition(d["topic"], p["partition"]) for d in described
                      if d["error_code"] == 0 for p in d["partitions"]]
        committed = await admin.list_consumer_group_offsets(group)
        await consumer.start()
        ends = await consumer.end_offsets(partitions) if partitions else {}
        spans = {}
        for tp, end in ends.items():
            done = committed.get(tp)
            start = done.offset if done is not None and done.offset >= 0 else 0
            if end > start:
                spans[tp] = (start, end)
        small = {tp: s for tp, s in spans.items() if s[1] - s[0] <= COUNTED_GAP}
        counted = await _records_between(consumer, small) if small else {}
    except KafkaError as exc:
        raise unreachable(bootstrap, exc) from exc
    finally:
        await consumer.stop()
        await admin.close()
    return {tp: counted.get(tp, spans[tp][1] - spans[tp][0]) if tp in spans else 0
            for tp in ends}


async def _records_between(consumer: AIOKafkaConsumer,
                           spans: dict[TopicPartition, tuple[int, int]]
                           ) -> dict[TopicPartition, int]:
    """How many committed records each partition holds between two offsets (the gap
    itself where they cannot be read in time)."""
    consumer.assign(list(spans))
    for tp, (start, _) in spans.items():
        consumer.seek(tp, start)
    counts = dict.fromkeys(spans, 0)
    loop = asyncio.get_running_loop()
    remaining, deadline = set(spans), loop.time() + COUNT_TIMEOUT_S
    while remaining and loop.time() < deadline:
        for tp, records in (await consumer.getmany(*remaining, timeout_ms=200)).items():
            counts[tp] += sum(r.offset < spans[tp][1] for r in records)
        remaining = {tp for tp in remaining if await consumer.position(tp) < spans[tp][1]}
    return {tp: spans[tp][1] - spans[tp][0] if tp in remaining else n
            for tp, n in counts.items()}


async def topic_partitions(bootstrap: str, topics: list[str]) -> list[TopicPartition]:
    """Every partition of the topics; raises if a topic does not exist."""
    admin = await _admin(bootstrap)
    try:
        described = await admin.describe_topics(list(dict.fromkeys(topics)))
    finally:
        await admin.close()
    missing = [d["topic"] for d in described if d["error_code"] == 3]
    if missing:
        raise BrokerError(f"no such topic: {', '.join(missing)} (deploy the topology first, "
                          "or check the name)", bootstrap=bootstrap)
    return [TopicPartition(d["topic"], p["partition"]) for d in described
            for p in sorted(d["partitions"], key=lambda p: p["partition"])]


async def message_limits(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Each topic's effective ``max.message.bytes`` (its own or the broker's default)."""
    admin = await _admin(bootstrap)
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t, {"max.message.bytes": None})
             for t in dict.fromkeys(topics)])
    finally:
        await admin.close()
    limits = {}
    for response in responses:
        for _code, _message, _type, name, configs in response.resources:
            for entry in configs:
                if entry[0] == "max.message.bytes" and entry[1] is not None:
                    limits[name] = int(entry[1])
    return limits
