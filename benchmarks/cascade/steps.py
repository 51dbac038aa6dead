"""The two cheap steps of the delivery benchmark's cascade (``topology.yaml`` beside this
file): each adds one small field, so what a record costs is streamcompose's own per-hop
work under the deployment's delivery mode.

>>> second(first([{"x": 3}]))
[{'z': 7}]
"""

from __future__ import annotations

from typing import Any


def first(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``y = 2x`` for each payload."""
    return [{"y": 2 * p["x"]} for p in batch]


def second(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``z = y + 1`` for each payload."""
    return [{"z": p["y"] + 1} for p in batch]
