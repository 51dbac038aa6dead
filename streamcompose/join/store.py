"""The joiner's state: pending joins and recently emitted request ids, per partition,
mirrored into a compacted changelog topic so that a restarted joiner resumes exactly
where the last committed transaction left it.

Each changelog record is keyed by request id, written to the partition of the branch
records it describes, and holds the whole entry: when the first branch result arrived,
the raw branch values so far, the trace, and ``done`` (when it was emitted). A
tombstone forgets an emitted request after ``remember_ms``.

>>> s = JoinStore()
>>> e = s.add_branch(0, "r1", "cnn", b"v", first_ms=1000, entered_ms=990, path=["pre", "cnn"])
>>> s.add_branch(0, "r1", "cnn", b"v", first_ms=1001, entered_ms=990, path=[]) is None
True
>>> sorted(e.branches), s.pending_count()
(['cnn'], 1)
>>> _ = s.mark_done("r1", now_ms=2000)
>>> s.is_done("r1"), s.add_branch(0, "r1", "mlp", b"w", first_ms=2001, entered_ms=990, path=[])
(True, None)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack

BRANCH_SEPARATOR = "\x00"


def changelog_key(request_id: str, branch: str | None = None) -> bytes:
    """The changelog key of a request's entry, or of one of its branch values."""
    return (request_id if branch is None else f"{request_id}{BRANCH_SEPARATOR}{branch}").encode()


@dataclass
class Entry:
    """One request's join progress. In the changelog the entry itself (without branch
    values) and each branch value are separate records, so that every branch result is
    written once; ``persisted`` names the branch values already written."""

    partition: int
    first_ms: int
    entered_ms: int
    path: list[str]
    branches: dict[str, bytes] = field(default_factory=dict)
    done_ms: int | None = None
    expect: list[str] | None = None
    persisted: set[str] = field(default_factory=set)

    def needed(self, default: int | None) -> int:
        """How many branch results complete this request."""
        if self.expect is not None:
            return len(self.expect)
        return default if default is not None else 1 << 30

    def encode(self) -> bytes:
        return msgpack.packb({"p": self.partition, "first": self.first_ms,
                              "entered": self.entered_ms, "path": self.path,
                              "done": self.done_ms, "expect": self.expect}, use_bin_type=True)

    @classmethod
    def decode(cls, value: bytes) -> Entry:
        d = msgpack.unpackb(value, raw=False)
        return cls(partition=d["p"], first_ms=d["first"], entered_ms=d["entered"],
                   path=list(d["path"]), done_ms=d["done"], expect=d.get("expect"))

    def changelog(self, request_id: str) -> list[tuple[bytes, bytes | None]]:
        """The changelog records that bring the stored entry up to date: the entry when
        it is new or done, each branch value not yet written, and, once done,
        tombstones for the branch values (compaction then drops them)."""
        records: list[tuple[bytes, bytes | None]] = []
        if self.done_ms is not None:
            records = [(changelog_key(request_id, b), None) for b in sorted(self.persisted)]
            self.persisted = set()
            return [*records, (changelog_key(request_id), self.encode())]
        if not self.persisted:
            records.append((changelog_key(request_id), self.encode()))
        for branch, value in self.branches.items():
            if branch not in self.persisted:
                records.append((changelog_key(request_id, branch), value))
                self.persisted.add(branch)
        return records


class JoinStore:
    """Pending entries (in order of their first branch result) and done entries (in order
    of emission) by request id; callers write the changelog."""

    def __init__(self) -> None:
        self._pending: dict[str, Entry] = {}
        self._done: dict[str, Entry] = {}

    def add_branch(self, partition: int, request_id: str, branch: str, value: bytes, *,
                   first_ms: int, entered_ms: int, path: list[str],
                   limit: int | None = None, expect: list[str] | None = None) -> Entry | None:
        """Record a branch result; ``None`` when it is a duplicate or arrived late (the
        request was emitted, or already has the ``limit`` results it needs). ``expect``
        names the branches this request goes to, when a router chose them."""
        if request_id in self._done:
            return None
        entry = self._pending.get(request_id)
        if entry is None:
            entry = self._pending[request_id] = Entry(partition, first_ms, entered_ms, path,
                                                      expect=expect)
        elif branch in entry.branches or len(entry.branches) >= entry.needed(limit):
            return None
        entry.branches[branch] = value
        entry.entered_ms = min(entry.entered_ms, entered_ms)
        return entry

    def is_pending(self, request_id: str) -> bool:
        return request_id in self._pending

    def pending_entry(self, request_id: str) -> Entry:
        return self._pending[request_id]

    def branches_of(self, request_id: str) -> dict[str, bytes]:
        """The raw branch results a pending request has so far."""
        return self._pending[request_id].branches

    def is_done(self, request_id: str) -> bool:
        return request_id in self._done

    def mark_done(self, request_id: str, now_ms: int) -> Entry:
        entry = self._done[request_id] = self._pending.pop(request_id)
        entry.done_ms = now_ms
        entry.branches = {}
        return entry

    def pending(self) -> Iterator[tuple[str, Entry]]:
        """Pending entries, oldest first (a snapshot: callers may mark them done)."""
        return iter(list(self._pending.items()))

    def oldest_pending(self) -> tuple[str, Entry] | None:
        return next(iter(self._pending.items()), None)

    def pending_count(self) -> int:
        return len(self._pending)

    def expired(self, now_ms: int, remember_ms: float) -> list[tuple[str, int]]:
        """Done entries older than ``remember_ms``, removed; returns (id, partition)."""
        old = []
        for rid, entry in self._done.items():
            if now_ms - (entry.done_ms or 0) <= remember_ms:
                break
            old.append((rid, entry.partition))
        for rid, _ in old:
            del self._done[rid]
        return old

    def restore(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record (``None``: a tombstone)."""
        request_id, _, branch = key.decode().partition(BRANCH_SEPARATOR)
        if branch:
            entry = self._pending.get(request_id)
            if entry is not None and value is not None:
                entry.branches[branch] = value
                entry.persisted.add(branch)
            elif entry is not None:
                entry.branches.pop(branch, None)
                entry.persisted.discard(branch)
            return
        pending = self._pending.pop(request_id, None)
        self._done.pop(request_id, None)
        if value is not None:
            entry = Entry.decode(value)
            if entry.done_ms is None and pending is not None:
                entry.branches, entry.persisted = pending.branches, pending.persisted
            (self._pending if entry.done_ms is None else self._done)[request_id] = entry

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the state of partitions this replica no longer owns."""
        gone = set(partitions)
        for table in (self._pending, self._done):
            for rid in [r for r, e in table.items() if e.partition in gone]:
                del table[rid]

    def stats(self) -> dict[str, Any]:
        return {"pending": len(self._pending), "remembered": len(self._done)}
