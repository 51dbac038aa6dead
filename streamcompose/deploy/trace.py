"""A request's journey through a deployment, read back from Kafka: its input record, then
every record an agent wrote for it (a result, a routing decision, a join, a dead letter),
each with its topic, partition, offset, timestamp and the lineage it carries (the agent,
model version, replica and micro-batch that wrote it).

Every record of a request is keyed by its id and, whoever wrote it, sits in the same
partition number as its input record (or, in a topic with fewer partitions, where the
key hashes), so the partitions the client's partitioner gives the key are read first;
only if the input record is not there (a request sent by another partitioner, or keyed
by its first agent) are all partitions read.

Example (needs a running deployment)::

    for hop in trace("digits", "d0").hops:
        print(hop.kind, hop.agent, hop.version, hop.where)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import msgpack
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.partitioner import murmur2

from streamcompose.codec import Trace, decode_payload
from streamcompose.codec.lineage import read_lineage
from streamcompose.deploy.registry import Deployment
from streamcompose.errors import StreamComposeError
from streamcompose.kafka.admin import topic_partitions
from streamcompose.kafka.reader import read_records

SHOWN_FIELDS = ("label", "variant", "served_by", "chosen", "missing")


@dataclass(frozen=True)
class Hop:
    """One record of a request."""

    kind: str  # input, result, join, routed, dead letter
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    agent: str | None
    version: str | None
    replica: int | None
    batch: str | None
    detail: str
    lineage: list[dict[str, Any]] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass
class Journey:
    """Every record found of one request, in the order they were written."""

    request_id: str
    hops: list[Hop]
    records_read: int
    topics: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "records_read": self.records_read,
                "topics": self.topics, "hops": [asdict(h) | {"where": h.where}
                                                for h in self.hops]}


class _Classifier:
    """What each topic of a deployment holds, from its manifest."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        self.input, self.dlq = manifest["input"], manifest["dlq"]
        self.writer: dict[str, tuple[str, str]] = {}  # topic -> (kind, detail)
        for a in manifest["agents"]:
            for target, edge in zip(a["targets"], a["edges"], strict=True):
                self.writer[edge] = ("routed", f"{a['name']} -> {target}")
            if a["output"] not in self.writer:
                self.writer[a["output"]] = ("join" if a["kind"] == "join" else "result", "")

    def hop(self, record: ConsumerRecord) -> Hop:
        trace = Trace.from_record(record.key, record.headers)
        lineage = read_lineage(record.headers)
        last = lineage[-1] if lineage else {}
        agent = last.get("agent") or (trace.path[-1] if trace.path else None)
        kind, detail = self.writer.get(record.topic, ("result", ""))
        fields: list[str] = []
        if record.topic == self.input:
            kind, agent = "input", None
        if record.topic == self.dlq or record.topic.endswith(".dlq"):
            kind, detail = "dead letter", _dead_letter_reason(record.value)
        else:
            try:
                payload = decode_payload(record.value, trace.content_type)
                fields = sorted(payload)
                shown = [f"{k}={payload[k]}" for k in SHOWN_FIELDS if k in payload]
                detail = ", ".join(filter(None, [detail, *shown]))
            except StreamComposeError as exc:
                detail = f"undecodable: {exc}"
        return Hop(kind, record.topic, record.partition, record.offset, record.timestamp,
                   agent if kind != "input" else None,
                   last.get("version") if kind != "input" else None,
                   last.get("replica") if kind != "input" else None,
                   last.get("batch") if kind != "input" else None,
                   detail, lineage, fields)


def _dead_letter_reason(value: bytes | None) -> str:
    try:
        letter = msgpack.unpackb(value or b"", raw=False)
        return f"{letter.get('error_type', 'error')}: {letter.get('error', '?')}"
    except Exception:  # a dead letter written by something else
        return "(not a streamcompose dead letter)"


def key_partitions(request_id: str, counts: dict[str, int], input_topic: str
                   ) -> list[TopicPartition]:
    """Where the records of a request keyed ``request_id`` are, if its client used the
    default (murmur2) partitioner: the input's partition number, or where the key hashes.

    >>> [tp.partition for tp in key_partitions("d3", {"x.in": 3, "x.out": 3, "x.two": 2},
    ...                                         "x.in")]
    [2, 2, 0]
    """
    hashed = murmur2(request_id.encode()) & 0x7FFFFFFF
    first = hashed % counts[input_topic]
    return [TopicPartition(topic, p) for topic, n in counts.items()
            for p in sorted({first if first < n else hashed % n})]


def trace(name: str, request_id: str, *, since_ms: int | None = None,
          progress: Callable[[int, int], None] | None = None) -> Journey:
    """The journey of ``request_id`` through deployment ``name`` (a running or stopped
    one whose files remain), from the records written since ``since_ms`` (default: all)."""
    m = Deployment(name).manifest()
    topics = [t for t in m["topics"] if t != m.get("control")]
    classify = _Classifier(m)
    key = request_id.encode()
    found: list[ConsumerRecord] = []

    def keep(record: ConsumerRecord) -> None:
        if record.key == key:
            found.append(record)

    async def scan() -> int:
        tps = await topic_partitions(m["bootstrap"], topics)
        counts = {t: sum(tp.topic == t for tp in tps) for t in topics}
        likely = key_partitions(request_id, counts, m["input"])
        read = await read_records(m["bootstrap"], likely, keep, since_ms=since_ms,
                                  progress=progress)
        if not any(r.topic == m["input"] for r in found):
            rest = [tp for tp in tps if tp not in likely]
            read += await read_records(m["bootstrap"], rest, keep, since_ms=since_ms,
                                       progress=progress)
        return read

    read = asyncio.run(scan())
    order = {t: i for i, t in enumerate(topics)}
    found.sort(key=lambda r: (r.timestamp, order.get(r.topic, len(order)), r.offset))
    return Journey(request_id, [classify.hop(r) for r in found], read, topics)
