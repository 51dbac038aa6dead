"""The state of a stateful step (a joiner, a fallback router): its open requests, each an
entry with named fields, and the ids of requests it already answered, mirrored into a
compacted changelog topic so that a restarted worker resumes where the last committed
transaction left it.

A changelog record is keyed by request id and written to the partition number of the
request. Its value is the open entry, or, once answered, a small ``done`` marker (the
partition and when), or a tombstone once the step no longer needs to remember it (after
``remember_ms``, or when more than ``remember_max`` answered requests are remembered).
What is remembered of an answered request is its id, partition and time: enough to drop
a late or repeated record of it, and a few dozen bytes.

>>> from dataclasses import dataclass
>>> @dataclass
... class Note(Entry):
...     text: str = ""
>>> s = RequestStore(Note, remember_ms=1000, remember_max=10)
>>> s.open("r1", Note(partition=0, first_ms=5, text="hi"))
>>> [(p, k) for p, k, _ in s.take_changes()]
[(0, b'r1')]
>>> s.pending_entry("r1").text, s.answer("r1", now_ms=7), s.is_done("r1")
('hi', Note(partition=0, first_ms=5, text='hi'), True)
>>> s.expire(now_ms=2000), s.is_done("r1")
([(0, b'r1', None)], False)
"""

from __future__ import annotations

import dataclasses
import functools
from collections import OrderedDict
from collections.abc import ItemsView, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgpack

from streamcompose.codec.wire import pack

DONE = "done"


@dataclass
class Entry:
    """The fields every open request has; steps subclass it with their own."""

    partition: int
    first_ms: int

    def encode(self) -> bytes:
        # the fields as they are (values of msgpack's types): asdict would copy them deeply
        return pack({name: getattr(self, name) for name in _names(type(self))}, arrays=False)


@functools.cache
def _names(entry_type: type[Entry]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(entry_type))


E = TypeVar("E", bound=Entry)
Change = tuple[int, bytes, bytes | None]  # partition, key, value (None: a tombstone)


class RequestStore(Generic[E]):
    """Open entries (oldest first) and answered request ids, with the changelog records
    that bring the stored state up to date (:meth:`take_changes`)."""

    def __init__(self, entry_type: type[E], remember_ms: float, remember_max: int) -> None:
        self.entry_type = entry_type
        self.remember_ms, self.remember_max = remember_ms, remember_max
        self._pending: dict[str, E] = {}
        self._done: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._changed: dict[str, None] = {}
        self._removed: list[Change] = []

    def open(self, request_id: str, entry: E) -> None:
        self._pending[request_id] = entry
        self.changed(request_id)

    def changed(self, request_id: str) -> None:
        """Mark an open entry as changed: its next changelog record is due."""
        self._changed[request_id] = None

    def is_pending(self, request_id: str) -> bool:
        return request_id in self._pending

    def pending_entry(self, request_id: str) -> E:
        return self._pending[request_id]

    def open_entries(self) -> ItemsView[str, E]:
        """Open entries, oldest first, as they stand (no request may be opened or
        answered while they are read)."""
        return self._pending.items()

    def pending_count(self) -> int:
        return len(self._pending)

    def is_done(self, request_id: str) -> bool:
        return request_id in self._done

    def answer(self, request_id: str, now_ms: int) -> E:
        """Close an open request: from now on it is only remembered as answered."""
        entry = self._pending.pop(request_id)
        # a clock still catching up may lag the request's own time: never remember an
        # answer as older than the request
        self._done[request_id] = (entry.partition, max(now_ms, entry.first_ms))
        self.changed(request_id)
        return entry

    def take_changes(self) -> list[Change]:
        """The changelog records (key, value or tombstone) since the last call."""
        out = self._removed
        for rid in self._changed:
            entry = self._pending.get(rid)
            if entry is not None:
                out.append((entry.partition, rid.encode(), entry.encode()))
            elif rid in self._done:
                partition, at = self._done[rid]
                out.append((partition, rid.encode(),
                            pack({DONE: at, "partition": partition}, arrays=False)))
        self._changed, self._removed = {}, []
        return out

    def expire(self, now_ms: int) -> list[Change]:
        """Forget answered requests older than ``remember_ms`` or beyond
        ``remember_max``; returns their tombstones (also in :meth:`take_changes`)."""
        gone: list[Change] = []
        while self._done:
            rid, (partition, at) = next(iter(self._done.items()))
            if now_ms - at <= self.remember_ms and len(self._done) <= self.remember_max:
                break
            del self._done[rid]
            self._changed.pop(rid, None)
            gone.append((partition, rid.encode(), None))
        self._removed.extend(gone)
        return gone

    def restore(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record."""
        rid = key.decode()
        self._pending.pop(rid, None)
        self._done.pop(rid, None)
        if value is None:
            return
        fields: dict[str, Any] = msgpack.unpackb(value, raw=False)
        if DONE in fields:
            self._done[rid] = (fields["partition"], fields[DONE])
        else:
            self._pending[rid] = self.entry_type(**fields)

    def restored(self) -> None:
        """After a restore: answered requests oldest first again (partitions are restored
        one after another), as :meth:`expire` expects."""
        self._done = OrderedDict(sorted(self._done.items(), key=lambda item: item[1][1]))

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the state of partitions this replica no longer owns."""
        gone = set(partitions)
        for rid in [r for r, e in self._pending.items() if e.partition in gone]:
            del self._pending[rid]
        for rid in [r for r, (p, _) in self._done.items() if p in gone]:
            del self._done[rid]

    def stats(self) -> dict[str, int]:
        return {"pending": len(self._pending), "remembered": len(self._done)}
