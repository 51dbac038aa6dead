"""Reading the serving options of a topology document: ``priorities`` and
``deadline_ms`` at the top, ``deadline_ms`` and ``cache`` on an agent.

>>> from streamcompose.topology.yamlsource import read_yaml_text
>>> doc = read_yaml_text("priorities: {lanes: [high, low], ratio: 4}")
>>> parse_priorities(Reader(doc), doc.data["priorities"], "priorities")
PrioritySpec(lanes=('high', 'low'), default_lane=None, ratio=4)
>>> doc = read_yaml_text("cache: {key: [pixels], ttl_s: 60}")
>>> parse_cache(Reader(doc), doc.data["cache"], "cache")
CacheSpec(key=('pixels',), ttl_s=60.0, max_entries=100000, shared=False)
"""

from __future__ import annotations

from typing import Any

from streamcompose.topology.parse_specs import Reader
from streamcompose.topology.serving_specs import DEFAULT_LANE_RATIO, CacheSpec, PrioritySpec

PRIORITY_KEYS = {"lanes", "default", "ratio"}
CACHE_KEYS = {"key", "ttl_s", "max_entries", "shared"}


def parse_priorities(r: Reader, raw: Any, key: str) -> PrioritySpec:
    """``[high, normal, low]``, or ``{lanes: [...], default: normal, ratio: 8}``."""
    p = r.mapping(raw, key, PRIORITY_KEYS) if isinstance(raw, dict) else {"lanes": raw}
    if "lanes" not in p:
        raise r.doc.error("missing 'lanes' (the priorities, most urgent first)", key)
    lanes_key = f"{key}.lanes" if isinstance(raw, dict) else key
    lanes = tuple(r.name(lane, f"{lanes_key}.{i}")
                  for i, lane in enumerate(r.strings(p["lanes"], lanes_key)))
    if len(lanes) < 2:
        raise r.doc.error(f"needs at least two lanes, got {list(lanes)}", lanes_key)
    if len(set(lanes)) != len(lanes):
        twice = next(lane for lane in lanes if lanes.count(lane) > 1)
        raise r.doc.error(f"lane {twice!r} is listed twice", lanes_key)
    default = p.get("default")
    if default is not None and default not in lanes:
        raise r.doc.error(f"{default!r} is not a lane (lanes: {', '.join(lanes)})",
                          f"{key}.default")
    return PrioritySpec(lanes=lanes, default_lane=default,
                        ratio=r.number(p.get("ratio", DEFAULT_LANE_RATIO), f"{key}.ratio",
                                       integer=True, minimum=1))


def parse_deadline(r: Reader, raw: Any, key: str) -> float:
    """A request's time to live in milliseconds, from when it entered the topology."""
    return float(r.number(raw, key, integer=False, minimum=1))


def parse_cache(r: Reader, raw: Any, key: str) -> CacheSpec:
    c = r.mapping(raw, key, CACHE_KEYS)
    if "key" not in c:
        raise r.doc.error("missing 'key' (the request fields that decide the answer)", key)
    shared = c.get("shared", False)
    if not isinstance(shared, bool):
        raise r.doc.error(f"must be true or false, got {shared!r}", f"{key}.shared")
    return CacheSpec(
        key=r.strings(c["key"], f"{key}.key"),
        ttl_s=float(r.number(c.get("ttl_s", 300), f"{key}.ttl_s", integer=False,
                             minimum=0.001)),
        max_entries=r.number(c.get("max_entries", 100_000), f"{key}.max_entries",
                             integer=True, minimum=1),
        shared=shared)
