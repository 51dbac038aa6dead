"""The cost of a request for cost-aware batching (``batch: {max_cost: N, cost: ...}``):
big items (long texts, large images) then form smaller batches.

``cost`` names a payload field, whose cost is its size (the elements of an array, the
characters of a text, the items of a list; a number is its own cost), or a Python
``module:function`` that takes the payload and returns its cost. A payload without the
field costs 1.

>>> import numpy as np
>>> f = cost_function("image", Path("."))
>>> f({"image": np.zeros((32, 100, 3))}), f({"image": "abc"}), f({"image": 7}), f({})
(9600.0, 3.0, 7.0, 1.0)
>>> cost_function("json:dumps", Path("."))({"a": 1})
Traceback (most recent call last):
  ...
TypeError: cost entrypoint 'json:dumps' returned str, not a number
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamcompose.runtimes.base import import_callable

Payload = dict[str, Any]


def field_cost(field: str) -> Callable[[Payload], float]:
    """The size of ``payload[field]``."""

    def cost(payload: Payload) -> float:
        value = payload.get(field)
        if value is None:
            return 1.0
        if isinstance(value, int | float):
            return float(value)
        size = getattr(value, "size", None)  # a numpy array
        return float(size if isinstance(size, int) else len(value))

    return cost


def cost_function(spec: str, base_dir: Path) -> Callable[[Payload], float]:
    """The cost of a payload, from a field name or a ``module:function``."""
    if ":" not in spec:
        return field_cost(spec)
    target = import_callable(spec, base_dir)

    def cost(payload: Payload) -> float:
        value = target(payload)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"cost entrypoint {spec!r} returned {type(value).__name__}, "
                            "not a number")
        return float(value)

    return cost
