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
    """A short label for metrics and the dead letter's ``error_type``: the error's
    ``reason`` where it has one (``expired``), else its type name."""
    return getattr(error, "reason", None) or type(error).__name__


def dead_letter_value(original: bytes | None, *, agent: str, topic: str, partition: int,
                      offset: int, error: BaseException,
                      max_original: int | None = None) -> bytes:
    """The value of a dead-letter record. An original longer than ``max_original`` bytes
    is cut to that length, with ``original_bytes`` giving its full size.

    >>> from streamcompose.codec import decode_payload
    >>> d = decode_payload(dead_letter_value(b"abcdef", agent="a", topic="t", partition=0,
    ...                    offset=1, error=ValueError("big"), max_original=2))
    >>> d["original"], d["original_bytes"], d["truncated"]
    (b'ab', 6, True)
    """
    original = original or b""
    cut = max_original is not None and len(original) > max_original
    return encode_payload({
        "agent": agent, "topic": topic, "partition": partition, "offset": offset,
        "error_type": error_reason(error), "error": getattr(error, "message", str(error)),
        "original": original[:max_original] if cut else original,
        **({"original_bytes": len(original), "truncated": True} if cut else {}),
        "failed_ms": now_ms(),
    })
