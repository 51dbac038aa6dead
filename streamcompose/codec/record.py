"""Request metadata carried in record keys and headers.

>>> h = Trace(request_id="r1", entered_ms=1000, path=("det",)).headers("application/json")
>>> t = Trace.from_record(b"r1", h)
>>> t.request_id, t.entered_ms, t.path, t.content_type
('r1', 1000, ('det',), 'application/json')
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from streamcompose.codec.wire import MSGPACK

Headers = list[tuple[str, bytes]]
CONTENT_TYPE = "content-type"
ENTERED = "sc-entered"
PATH = "sc-path"
EXPECT = "sc-expect"  # set by a mixture-of-experts gate: the experts a request went to


def new_request_id() -> str:
    """A fresh request id.

    >>> len(new_request_id())
    32
    """
    return uuid.uuid4().hex


def now_ms() -> int:
    return int(time.time() * 1000)


@functools.lru_cache(maxsize=256)
def _path(raw: bytes) -> tuple[str, ...]:
    """A ``sc-path`` header's agents, read once for the records of a batch."""
    return tuple(p for p in raw.decode("utf-8", "replace").split(",") if p)


@functools.lru_cache(maxsize=64)
def _text(raw: bytes) -> str:
    """A ``content-type`` header's text, read once for the records of a batch."""
    return raw.decode("utf-8", "replace")


@dataclass(frozen=True)
class Trace:
    """Where a request is in its journey: id, entry time, agents passed, value format."""

    request_id: str
    entered_ms: int
    path: tuple[str, ...] = ()
    content_type: str | None = None
    extra: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def from_record(cls, key: bytes | None, headers: Sequence[tuple[str, bytes]] | None
                    ) -> Trace:
        """Read a record's key and headers; a request without key gets a new id."""
        entered = path = content_type = None
        extra = []
        for name, value in headers or ():  # the last of repeated headers counts
            if name == ENTERED:
                entered = value
            elif name == PATH:
                path = value
            elif name == CONTENT_TYPE:
                content_type = value
            else:
                extra.append((name, value))
        try:
            entered_ms = int(entered) if entered else now_ms()
        except ValueError:
            entered_ms = now_ms()
        return cls(key.decode("utf-8", "replace") if key else new_request_id(), entered_ms,
                   _path(path) if path else (), _text(content_type) if content_type else None,
                   tuple(extra))

    def passed(self, agent: str) -> Trace:
        """This trace after one more agent."""
        return Trace(self.request_id, self.entered_ms, (*self.path, agent), self.content_type,
                     self.extra)

    @property
    def key(self) -> bytes:
        return self.request_id.encode()

    def headers(self, content_type: str = MSGPACK) -> Headers:
        return [(CONTENT_TYPE, content_type.encode()), (ENTERED, str(self.entered_ms).encode()),
                (PATH, ",".join(self.path).encode()), *self.extra]
