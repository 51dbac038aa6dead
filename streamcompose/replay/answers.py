"""Reading one side's answers back from Kafka: the requests an agent got (its input
topics), its results (records whose ``sc-path`` ends with it) and its dead letters
(whose ``agent`` is it), matched by request id, the record key.

>>> side = Side("live", "cnn", ("digits.preprocess",), ("digits.cnn",), "digits.dlq")
>>> side.topics
['digits.cnn', 'digits.dlq']
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import ConsumerRecord

from streamcompose.codec import Trace, decode_payload
from streamcompose.errors import CodecError
from streamcompose.kafka.ranges import follow
from streamcompose.replay.diff import Answer


@dataclass(frozen=True)
class Side:
    """Where one side of a comparison reads: ``agent``'s requests on ``inputs``, its
    results on ``outputs``, its dead letters on ``dlq``; ``label`` names it in reports."""

    label: str
    agent: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dlq: str

    @property
    def topics(self) -> list[str]:
        """Where its answers are: results and dead letters."""
        return list(dict.fromkeys([*self.outputs, self.dlq]))


@dataclass(frozen=True)
class Request:
    """A request as an agent received it: its payload (None if undecodable) and when."""

    id: str
    payload: dict[str, Any] | None
    timestamp_ms: int
    record: ConsumerRecord


def requests_of(records: list[ConsumerRecord]) -> tuple[dict[str, Request], int]:
    """The requests among input records, by id (the first record of an id), and how many
    records had no key (a request id is given by the first agent: those cannot be
    matched)."""
    found: dict[str, Request] = {}
    keyless = 0
    for r in records:
        if r.key is None:
            keyless += 1
            continue
        trace = Trace.from_record(r.key, r.headers)
        try:
            payload = decode_payload(r.value, trace.content_type)
        except CodecError:
            payload = None
        found.setdefault(trace.request_id, Request(trace.request_id, payload, r.timestamp, r))
    return found, keyless


def answer_of(record: ConsumerRecord, side: Side, sent_ms: int) -> Answer | None:
    """The answer a record gives for ``side`` (None when it is another agent's): a
    result on an output topic, or a dead letter of the side's agent."""
    trace = Trace.from_record(record.key, record.headers)
    latency = float(record.timestamp - sent_ms)
    if record.topic in side.outputs:
        if trace.path[-1:] != (side.agent,):
            return None
        try:
            return Answer(decode_payload(record.value, trace.content_type), latency_ms=latency)
        except CodecError as exc:
            return Answer(None, error=f"the result cannot be decoded: {exc}", latency_ms=latency)
    try:
        letter = decode_payload(record.value)
    except CodecError:
        return None
    if letter.get("agent") != side.agent:
        return None
    return Answer(None, error=f"{letter.get('error_type')}: {letter.get('error')}",
                  latency_ms=latency)


async def collect(bootstrap: str, side: Side, sent: dict[str, int], quiet_s: float,
                  start_ms: int | None = None,
                  progress: Callable[[int], None] | None = None) -> dict[str, Answer]:
    """The first answer of ``side`` to each request of ``sent`` (id -> when the agent got
    it), reading its topics from ``start_ms`` until every request is answered or none came
    for ``quiet_s`` seconds. ``progress(n)`` is called with each new answer count."""
    found: dict[str, Answer] = {}
    if not sent:
        return found
    async with contextlib.aclosing(follow(bootstrap, side.topics, quiet_s, start_ms)) as records:
        async for record in records:
            rid = (record.key or b"").decode("utf-8", "replace")
            answer = answer_of(record, side, sent[rid]) if rid in sent and rid not in found \
                else None
            if answer is None:
                continue
            found[rid] = answer
            if progress is not None:
                progress(1)
            if len(found) == len(sent):
                break
    return found
