"""At-least-once offset bookkeeping.

Every consumed record is registered with the tracker and marked done once all its
outputs (results or a dead-letter record) are acknowledged by the broker. Only the
contiguous run of done offsets at the start of each partition is committable, so a
crash never skips a record whose results were not yet stored.

>>> t = OffsetTracker()
>>> for off in (5, 6, 7):
...     t.track("p0", off)
>>> t.done("p0", 6); t.committable()
{}
>>> t.done("p0", 5); t.committable()
{'p0': 7}
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable


class OffsetTracker:
    """Tracks records in flight per partition and what may be committed."""

    def __init__(self) -> None:
        self._pending: dict[Hashable, OrderedDict[int, bool]] = {}
        self._committed: dict[Hashable, int] = {}
        self._retry: dict[Hashable, int] = {}

    def track(self, partition: Hashable, offset: int) -> None:
        """Register a consumed record."""
        self._pending.setdefault(partition, OrderedDict())[offset] = False

    def track_many(self, partition: Hashable, offsets: Iterable[int]) -> None:
        """Register several consumed records of a partition, in order."""
        self._pending.setdefault(partition, OrderedDict()).update(
            dict.fromkeys(offsets, False))

    def done(self, partition: Hashable, offset: int) -> None:
        """Mark a record's outputs as acknowledged."""
        pending = self._pending.get(partition)
        if pending is not None and offset in pending:
            pending[offset] = True

    def in_flight(self, partitions: Iterable[Hashable] | None = None) -> int:
        """Records not yet done (in the given partitions, or in all)."""
        keys = self._pending if partitions is None else partitions
        return sum(sum(not d for d in self._pending.get(p, {}).values()) for p in keys)

    def committable(self) -> dict[Hashable, int]:
        """The next offset to commit per partition, for partitions that moved; each
        returned position is remembered as committed."""
        out, self._retry = self._retry, {}
        for partition, pending in self._pending.items():
            last = None
            while pending:
                offset, is_done = next(iter(pending.items()))
                if not is_done:
                    break
                pending.popitem(last=False)
                last = offset
            if last is not None and self._committed.get(partition, -1) < last + 1:
                out[partition] = self._committed[partition] = last + 1
        return out

    def uncommit(self, positions: dict[Hashable, int]) -> None:
        """Positions whose commit failed: the next :meth:`committable` returns them again
        (or further ones).

        >>> t = OffsetTracker(); t.track("p0", 3); t.done("p0", 3)
        >>> t.uncommit(t.committable()); t.committable()
        {'p0': 4}
        """
        for partition, offset in positions.items():
            if offset >= self._committed.get(partition, -1):  # no newer commit since
                self._retry[partition] = offset

    def forget(self, partitions: Iterable[Hashable]) -> None:
        """Drop the partitions a rebalance took away."""
        for p in partitions:
            self._pending.pop(p, None)
            self._committed.pop(p, None)
            self._retry.pop(p, None)
