"""The arithmetic of routing, free of Kafka: sticky weighted choice for traffic splits,
and top-k expert choice with renormalised gate weights and a per-batch capacity.

>>> sticky_choice("user-42", {"v1": 95, "v2": 5}) in ("v1", "v2")
True
>>> [(e, round(w, 3)) for e, w in choose_experts([[0.1, 0.6, 0.3]], top_k=2,
...                                                capacity=None)[0]]
[(1, 0.667), (2, 0.333)]
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence


def key_fraction(key: str) -> float:
    """A stable number in [0, 1) for a request key (the same on every machine and run)."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def check_weights(weights: object, variants: Sequence[str]) -> dict[str, float]:
    """Split weights as floats in ``variants`` order; ValueError unless they name exactly
    the variants and are non-negative numbers with a positive sum.

    >>> check_weights({"v2": 10, "v1": 90}, ["v1", "v2"])
    {'v1': 90.0, 'v2': 10.0}
    """
    if not isinstance(weights, dict) or set(weights) != set(variants):
        raise ValueError(f"weights must name exactly the variants {', '.join(variants)}; "
                         f"got {weights!r}")
    if any(isinstance(w, bool) or not isinstance(w, int | float) or w < 0
           for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"weights must be non-negative numbers with a positive sum, "
                         f"got {weights}")
    return {v: float(weights[v]) for v in variants}


def sticky_choice(key: str, weights: Mapping[str, float]) -> str:
    """The variant for ``key``: the same key gets the same variant while the weights stay
    the same; variants get keys in proportion to their weights."""
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("the weights must sum to a positive number")
    point = key_fraction(key) * total
    running = 0.0
    for variant, weight in weights.items():
        running += weight
        if point < running:
            return variant
    return next(v for v, w in reversed(list(weights.items())) if w > 0)


def choose_experts(scores: Sequence[Sequence[float]], top_k: int, capacity: float | None
                   ) -> list[list[tuple[int, float]]]:
    """For each request of a batch, its ``top_k`` experts (by index) with gate weights
    renormalised over them. With ``capacity`` (a share in (0, 1]) one expert takes at
    most ``ceil(capacity * batch size)`` requests of the batch; a request whose best
    experts are full goes to the next best with room and a positive score (best
    regardless, if none has).
    Gate scores must be non-negative (probabilities)."""
    limit = math.inf if capacity is None else max(1, math.ceil(capacity * len(scores)))
    load: dict[int, int] = {}
    chosen_all = []
    for row in scores:
        ranked = sorted(range(len(row)), key=lambda e: (-row[e], e))
        chosen = [e for e in ranked if load.get(e, 0) < limit and row[e] > 0][:top_k]
        chosen += [e for e in ranked if e not in chosen][:top_k - len(chosen)]
        for e in chosen:
            load[e] = load.get(e, 0) + 1
        total = sum(row[e] for e in chosen)
        if total <= 0 or any(row[e] < 0 for e in chosen):
            raise ValueError(f"gate scores must be non-negative with a positive sum over the "
                             f"chosen experts, got {[row[e] for e in chosen]}")
        chosen_all.append([(e, row[e] / total) for e in chosen])
    return chosen_all
