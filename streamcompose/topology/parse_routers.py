"""Reading router agents (``route``, ``switch``, ``split``, ``shadow``, ``fallback``).

>>> from streamcompose.topology.yamlsource import read_yaml_text
>>> doc = read_yaml_text("split: {v1: 95, v2: 5}")
>>> parse_router(Reader(doc), "split", doc.data["split"], "split", Path(".")).targets
('v1', 'v2')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamcompose.topology.parse_specs import Reader
from streamcompose.topology.routers import ROUTERS
from streamcompose.topology.specs import RouterSpec

ROUTER_KEYS = tuple(ROUTERS)


def parse_router(r: Reader, kind: str, raw: Any, key: str, base_dir: Path) -> RouterSpec:
    """The router of kind ``kind`` (one of :data:`ROUTER_KEYS`) written at ``key``."""
    return ROUTERS[kind].parse(r, raw, key, base_dir)
