"""Lineage: which agents, model versions, replicas and micro-batches produced a result.

Every record an agent writes carries the header ``sc-lineage``, a JSON list with one
entry per agent that handled the request so far, oldest first::

    [{"agent": "cnn", "version": "3", "replica": 0, "batch": "0-4242-17", "size": 32}]

``batch`` names the micro-batch the request was part of (``<replica>-<pid>-<sequence>``
of the worker process that ran it; every request of one batch has the same), ``size`` how
many requests it held. A joiner merges the lineage of the branches it fused (entries they
share, such as a common preprocessing step, appear once).

>>> stamp = LineageStamp("cnn", "3", replica=1)
>>> batch = stamp.next_batch(2)
>>> headers = stamp.stamp([("sc-lineage", b'[{"agent": "pre", "version": "a"}]')], batch)
>>> [e["agent"] for e in read_lineage(headers)], read_lineage(headers)[1]["version"]
(['pre', 'cnn'], '3')
"""

from __future__ import annotations

import functools
import json
import operator
import os
from collections.abc import Iterable, Sequence
from typing import Any

LINEAGE = "sc-lineage"
Headers = list[tuple[str, bytes]]
Entry = dict[str, Any]


def read_lineage(headers: Sequence[tuple[str, bytes]] | None) -> list[Entry]:
    """The lineage a record's headers carry; ``[]`` when none (or not a JSON list)."""
    raw = next((v for k, v in headers or () if k == LINEAGE), None)
    return [dict(entry) for entry in _parsed(raw)] if raw else []


@functools.lru_cache(maxsize=256)
def _parsed(raw: bytes) -> tuple[Entry, ...]:
    """The entries of one header value, parsed once for the records of a micro-batch,
    which carry the same (callers get copies)."""
    try:
        entries = json.loads(raw)
    except ValueError:
        return ()
    return tuple(e for e in entries if isinstance(e, dict)) if isinstance(entries, list) else ()


def merge_lineage(*lineages: Iterable[Entry]) -> list[Entry]:
    """The lineages of several branches as one, in order, each entry once.

    >>> merge_lineage([{"agent": "a", "batch": "0-1-1"}, {"agent": "b", "batch": "0-1-2"}],
    ...               [{"batch": "0-1-1", "agent": "a"}, {"agent": "c", "batch": "0-9-3"}])
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'agent': 'a', 'batch': '0-1-1'}, {'agent': 'b', 'batch': '0-1-2'},
     {'agent': 'c', 'batch': '0-9-3'}]
    """
    merged: list[Entry] = []
    for lineage in lineages:  # a few entries each: comparing dicts beats hashing them
        for entry in lineage:
            if entry not in merged:
                merged.append(entry)
    return merged


def with_lineage(headers: Iterable[tuple[str, bytes]], lineage: list[Entry]) -> Headers:
    """``headers`` with their ``sc-lineage`` replaced by ``lineage``."""
    kept = [(k, v) for k, v in headers if k != LINEAGE]
    return [*kept, (LINEAGE, json.dumps(lineage, separators=(",", ":")).encode())]


class LineageStamp:
    """What one worker adds to the lineage of the records it writes."""

    def __init__(self, agent: str, version: str, replica: int) -> None:
        self.agent, self.version, self.replica = agent, version, replica
        self._prefix = f"{replica}-{os.getpid()}"
        self._sequence = 0
        self._last: tuple[tuple[Entry, ...], bytes] = ((), b"[]")

    def next_batch(self, size: int) -> Entry:
        """This worker's entry for its next micro-batch, of ``size`` requests."""
        self._sequence += 1
        return {"agent": self.agent, "version": self.version, "replica": self.replica,
                "batch": f"{self._prefix}-{self._sequence}", "size": size}

    def stamp(self, headers: Iterable[tuple[str, bytes]], *entries: Entry) -> Headers:
        """``headers`` (an input record's, passed on) with ``entries`` appended to the
        lineage they carry (spliced into its JSON text, which is not parsed again).

        >>> stamp = LineageStamp("b", "2", 0)
        >>> once = stamp.stamp([("x", b"1")], {"agent": "a"})
        >>> stamp.stamp(once, {"agent": "b"})
        [('x', b'1'), ('sc-lineage', b'[{"agent":"a"},{"agent":"b"}]')]
        """
        kept, carried = [], b""
        for key, value in headers:
            if key == LINEAGE:
                carried = value
            else:
                kept.append((key, value))
        if not carried.strip(b"[] "):  # none carried (a client's request), or no entry
            return [*kept, (LINEAGE, self._encoded(entries))]
        if carried[:1] == b"[" and carried[-1:] == b"]":
            return [*kept, (LINEAGE, carried[:-1] + b"," + self._encoded(entries)[1:])]
        # not a list of entries: read as what it holds, if anything
        return with_lineage(kept, [*read_lineage([(LINEAGE, carried)]), *entries])

    def _encoded(self, entries: tuple[Entry, ...]) -> bytes:
        """``entries`` as JSON, encoded once for the records of a batch, which share the
        same entry objects (entries are never changed once made)."""
        last, encoded = self._last
        if len(last) != len(entries) or any(map(operator.is_not, last, entries)):
            encoded = json.dumps(entries, separators=(",", ":")).encode()
            self._last = (entries, encoded)
        return encoded
