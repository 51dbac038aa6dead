"""Dead-letter records: what failed, where, and why.

A record an agent cannot process goes to ``<topology>.dlq`` keyed by its request id,
with a msgpack map value holding the original value (bytes, untouched), the agent, the
topic, partition and offset it came from, the error type and its text.

>>> v = dead_letter_value(b"\\x01", agent="inc", topic="demo.in", partition=0, offset=7,
...                       error=ValueError("bad"))
>>> from streamcompose.codec import decode_payload
>>> d = decode_payload(v); d["agent"], d["offset"], d["error_type"], d["error"], d["original"]
('inc', 7, 'ValueError', 'bad', b'\\x01')
"""

from __future__ import annotations

from streamcompose.codec import encode_payload
from streamcompose.codec.record import now_ms


def error_reason(error: BaseException) -> str:
    """A short label for metrics."""
    return type(error).__name__


def dead_letter_value(original: bytes | None, *, agent: str, topic: str, partition: int,
                      offset: int, error: BaseException) -> bytes:
    """The value of a dead-letter record."""
    return encode_payload({
        "agent": agent, "topic": topic, "partition": partition, "offset": offset,
        "error_type": error_reason(error), "error": getattr(error, "message", str(error)),
        "original": original or b"",
        "failed_ms": now_ms(),
    })
