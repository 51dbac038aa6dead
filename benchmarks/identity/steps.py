"""The identity model of the overhead benchmark (``topology.yaml`` beside this file)."""

from __future__ import annotations

from typing import Any


def identity(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Produce no new field for any payload: the worker passes each one on unchanged."""
    return [{} for _ in batch]
