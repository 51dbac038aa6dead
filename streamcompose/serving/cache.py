"""Result caches: an agent with ``cache: {key: [fields], ttl_s, max_entries}`` answers a
request whose key fields equal those of a request answered within ``ttl_s`` with that
answer, without calling its model. Each worker keeps a least-recently-used map of at
most ``max_entries`` answers; with ``shared: true`` the answers also go to the compacted
topic ``<name>.<agent>.cache``, from which every replica (and a restarted worker) fills
its own map. A cached answer carries the header ``sc-cache: hit``.

>>> c = ResultCache(ttl_s=10, max_entries=2)
>>> k = cache_key({"x": [1, 2], "noise": 3}, ("x",))
>>> k == cache_key({"x": [1, 2], "noise": 4}, ("x",)), k == cache_key({"x": [2]}, ("x",))
(True, False)
>>> c.put(k, "answer", now_ms=0)
>>> c.get(k, now_ms=9_999), c.get(k, now_ms=10_000)
('answer', None)
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

from streamcompose.codec import Trace, encode_payload
from streamcompose.errors import CodecError

CACHE = "sc-cache"
HIT = b"hit"


def cache_key(payload: dict[str, Any], fields: tuple[str, ...]) -> bytes | None:
    """A digest of the key fields' values (a missing field counts as null); None when
    they cannot be encoded, so the request is not cached."""
    try:
        encoded = encode_payload({"k": [payload.get(f) for f in fields]})
    except CodecError:
        return None
    return hashlib.blake2b(encoded, digest_size=20).digest()


def cached_here(trace: Trace, received: list[tuple[str, bytes]] | None) -> bool:
    """Whether the agent that holds ``trace`` answered it from its cache: it is marked
    now and was not when it came (``received``: the consumed record's headers).

    >>> cached_here(mark_cached(Trace("r1", 0)), []), cached_here(Trace("r1", 0), [])
    (True, False)
    """
    return (CACHE, HIT) in trace.extra and (CACHE, HIT) not in (received or ())


def mark_cached(trace: Trace) -> Trace:
    """The trace of a request answered from a cache: its records carry ``sc-cache: hit``
    (kept downstream, like every header).

    >>> mark_cached(mark_cached(Trace("r1", 0))).extra
    (('sc-cache', b'hit'),)
    """
    extra = (*(h for h in trace.extra if h[0] != CACHE), (CACHE, HIT))
    return Trace(trace.request_id, trace.entered_ms, trace.path, trace.content_type, extra)


class ResultCache:
    """Answers by key, each valid ``ttl_s`` after it was computed; beyond
    ``max_entries`` the least recently used is forgotten."""

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self.ttl_ms = ttl_s * 1000
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, tuple[int, Any]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, now_ms: int) -> Any | None:
        """The answer for ``key`` if one younger than the time to live is kept."""
        found = self._entries.get(key)
        if found is None:
            return None
        at, answer = found
        if now_ms - at >= self.ttl_ms:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return answer

    def put(self, key: bytes, answer: Any, now_ms: int) -> None:
        """Keep ``answer``, computed at ``now_ms`` (an older answer for the key is kept
        only if it is the newer one)."""
        old = self._entries.get(key)
        if old is not None and old[0] > now_ms:
            return
        self._entries[key] = (now_ms, answer)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
