"""Reading a deployment's dead letters: every dead-letter topic it has (``<name>.dlq``
and each shadow's own), each record decoded with its reason, and the filters of
``dlq list`` and ``dlq redrive``.

>>> from streamcompose.codec.deadletter import dead_letter_value
>>> from aiokafka import ConsumerRecord
>>> value = dead_letter_value(b'{"x": 1}', agent="inc", topic="demo.in", partition=1,
...                           offset=7, error=ValueError("x must be a list"))
>>> record = ConsumerRecord("demo.dlq", 1, 3, 0, 0, b"r1", value, None, 0, 0, [])
>>> letter = DeadLetter.from_record(record)
>>> letter.ref, letter.agent, letter.reason, letter.source
('demo.dlq:1:3', 'inc', 'ValueError: x must be a list', 'demo.in[1]@7')
>>> Filters(reason="must be", agent="inc").match(letter), Filters(agent="dec").match(letter)
(True, False)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord

from streamcompose.codec import Trace, decode_payload, to_jsonable
from streamcompose.codec.reasons import describe_bytes
from streamcompose.errors import CodecError, DeploymentError
from streamcompose.kafka.ranges import Position, read_range


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter: where it is (``topic``, ``partition``, ``offset``), the request
    id, the agent that failed it and the record it failed on (``source_*``), the reason,
    and the original value."""

    topic: str
    partition: int
    offset: int
    id: str
    agent: str
    source_topic: str
    source_partition: int
    source_offset: int
    error_type: str
    error: str
    original: bytes
    original_bytes: int
    truncated: bool
    failed_ms: int
    headers: tuple[tuple[str, bytes], ...]

    @classmethod
    def from_record(cls, record: ConsumerRecord) -> DeadLetter:
        try:
            v = decode_payload(record.value)
        except CodecError as exc:
            v = {"error_type": "unreadable", "error": f"not a dead letter: {exc}"}
        original = v.get("original") or b""
        return cls(topic=record.topic, partition=record.partition, offset=record.offset,
                   id=Trace.from_record(record.key, []).request_id if record.key else "",
                   agent=str(v.get("agent", "")), source_topic=str(v.get("topic", "")),
                   source_partition=int(v.get("partition", -1)),
                   source_offset=int(v.get("offset", -1)),
                   error_type=str(v.get("error_type", "")), error=str(v.get("error", "")),
                   original=original if isinstance(original, bytes) else b"",
                   original_bytes=int(v.get("original_bytes", len(original))),
                   truncated=bool(v.get("truncated", False)),
                   failed_ms=int(v.get("failed_ms", record.timestamp)),
                   headers=tuple(record.headers or ()))

    @property
    def ref(self) -> str:
        """``topic:partition:offset``, what ``dlq show`` takes."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def reason(self) -> str:
        return f"{self.error_type}: {self.error}"

    @property
    def source(self) -> str:
        return f"{self.source_topic}[{self.source_partition}]@{self.source_offset}"

    def to_json(self, with_original: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ref": self.ref, "topic": self.topic, "partition": self.partition,
            "offset": self.offset, "id": self.id, "agent": self.agent,
            "source": {"topic": self.source_topic, "partition": self.source_partition,
                       "offset": self.source_offset},
            "error_type": self.error_type, "error": self.error, "failed_ms": self.failed_ms,
            "original_bytes": self.original_bytes, "truncated": self.truncated}
        if with_original:
            out["headers"] = {k: v.decode("utf-8", "replace") for k, v in self.headers}
            out["original"] = self.original_payload()
        return out

    def original_payload(self) -> Any:
        """The original request as JSON-ready values, or a description of its bytes."""
        try:
            return to_jsonable(decode_payload(self.original))
        except CodecError:
            return describe_bytes(self.original)


@dataclass(frozen=True)
class Filters:
    """Which dead letters: ``reason`` in the reason (any case), failed by ``agent``,
    from ``since`` on, with one of ``ids``."""

    reason: str | None = None
    agent: str | None = None
    since: Position | None = None
    ids: tuple[str, ...] = ()

    def match(self, letter: DeadLetter) -> bool:
        return ((self.reason is None or self.reason.lower() in letter.reason.lower())
                and (self.agent is None or letter.agent == self.agent)
                and (not self.ids or letter.id in self.ids))


def dlq_topics(manifest: dict[str, Any]) -> list[str]:
    """Every dead-letter topic of a deployment: its own, then each shadow's."""
    return list(dict.fromkeys([manifest["dlq"], *(t for t in manifest["topics"]
                                                  if t.endswith(".dlq"))]))


async def read_letters(manifest: dict[str, Any], filters: Filters = Filters()
                       ) -> list[DeadLetter]:
    """The dead letters of a deployment that pass ``filters``, oldest first."""
    if filters.agent is not None:
        agents = [a["name"] for a in manifest["agents"]]
        if filters.agent not in agents:
            raise DeploymentError(f"deployment {manifest['name']!r} has no agent "
                                  f"{filters.agent!r} (agents: {', '.join(agents)})",
                                  topology=manifest["name"])
    records = await read_range(manifest["bootstrap"], dlq_topics(manifest), filters.since,
                               None)
    return [d for d in map(DeadLetter.from_record, records) if filters.match(d)]


async def find_letter(manifest: dict[str, Any], ref: str) -> list[DeadLetter]:
    """The dead letters at ``ref``: ``OFFSET`` (in any partition of any dead-letter
    topic), ``PARTITION:OFFSET`` (of ``<name>.dlq``) or ``TOPIC:PARTITION:OFFSET``."""
    parts = ref.rsplit(":", 2)
    if not all(p.isdigit() for p in parts[-2:]) or (len(parts) == 3 and not parts[0]):
        raise ValueError(f"{ref!r} is not OFFSET, PARTITION:OFFSET or TOPIC:PARTITION:OFFSET")
    offset = int(parts[-1])
    partition = int(parts[-2]) if len(parts) >= 2 else None
    topics = [parts[0]] if len(parts) == 3 else (
        [manifest["dlq"]] if partition is not None else dlq_topics(manifest))
    unknown = [t for t in topics if t not in dlq_topics(manifest)]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a dead-letter topic of {manifest['name']!r} "
                         f"({', '.join(dlq_topics(manifest))})")
    records = await read_range(manifest["bootstrap"], topics, Position(offset=offset),
                               Position(offset=offset + 1))
    return [DeadLetter.from_record(r) for r in records
            if partition is None or r.partition == partition]
