"""A result record read back by a client: its request id, payload, trace and lineage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streamcompose.codec.lineage import read_lineage
from streamcompose.codec.record import Trace
from streamcompose.codec.wire import decode_payload, to_jsonable

if TYPE_CHECKING:
    from aiokafka import ConsumerRecord


@dataclass(frozen=True)
class Result:
    """One record read back: its request id, payload and where it came from, and its
    ``lineage``: one entry per agent that handled it (``agent``, model ``version``,
    ``replica``, ``batch``; see :mod:`streamcompose.codec.lineage`)."""

    id: str
    payload: dict[str, Any]
    topic: str
    partition: int
    offset: int
    path: tuple[str, ...]
    entered_ms: int
    timestamp_ms: int
    lineage: tuple[dict[str, Any], ...] = ()
    #: the record's headers (``sc-deadline``, ``sc-priority``, ``sc-cache``, ...)
    headers: dict[str, bytes] = field(default_factory=dict, compare=False)

    @classmethod
    def from_record(cls, record: ConsumerRecord) -> Result:
        trace = Trace.from_record(record.key, record.headers)
        return cls(id=trace.request_id, payload=decode_payload(record.value, trace.content_type),
                   topic=record.topic, partition=record.partition, offset=record.offset,
                   path=trace.path, entered_ms=trace.entered_ms, timestamp_ms=record.timestamp,
                   lineage=tuple(read_lineage(record.headers)),
                   headers=dict(record.headers or ()))

    @property
    def latency_ms(self) -> int:
        """Time from the request entering the topology to this record being written."""
        return self.timestamp_ms - self.entered_ms

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: arrays become nested lists, bytes base64."""
        return {"id": self.id, "payload": to_jsonable(self.payload), "topic": self.topic,
                "partition": self.partition, "offset": self.offset, "path": list(self.path),
                "latency_ms": self.latency_ms, "lineage": list(self.lineage)}
