"""How a joiner fuses its branches' answers for one request.

Every strategy takes the branches that answered, in the joiner's ``inputs`` order, as
``(branch name, payload)`` pairs, and returns the fields of the fused result. Sums run
over branches in that fixed order, so a result is reproducible bit for bit.

>>> spec = JoinSpec(strategy="soft_vote", weights={"b": 3})
>>> out = combine([("a", {"proba": [0.9, 0.1]}), ("b", {"proba": [0.2, 0.8]})], spec)
>>> out["label"], [round(float(p), 3) for p in out["proba"]]
(1, [0.375, 0.625])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from streamcompose.errors import StreamComposeError
from streamcompose.topology.model import JoinSpec

Branches = list[tuple[str, dict[str, Any]]]
ENTROPY_EPS = 1e-6


class StrategyError(StreamComposeError, ValueError):
    """The branches' values cannot be combined (missing field, shapes disagree)."""


def _values(branches: Branches, field: str) -> list[np.ndarray]:
    values = []
    for name, payload in branches:
        if field not in payload:
            raise StrategyError(f"branch {name!r} has no field {field!r} (it has: "
                                f"{', '.join(sorted(payload)) or 'nothing'})")
        values.append(np.asarray(payload[field], dtype=np.float64))
    first_name, first = branches[0][0], values[0]
    for (name, _), value in zip(branches, values, strict=True):
        if value.shape != first.shape:
            raise StrategyError(f"branch {name!r} gives {field!r} with shape {value.shape}, "
                                f"branch {first_name!r} with {first.shape}")
    return values


def _weights(branches: Branches, spec: JoinSpec) -> np.ndarray:
    return np.array([float(spec.weights.get(name, 1.0)) for name, _ in branches])


def _weighted_mean(values: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    if weights.sum() <= 0:
        raise StrategyError("the weights of the branches that answered sum to zero")
    total = np.zeros_like(values[0])
    for value, weight in zip(values, weights, strict=True):
        total = total + weight * value
    return total / weights.sum()


def soft_vote(branches: Branches, spec: JoinSpec) -> dict[str, Any]:
    """Weighted mean of probability vectors, then argmax."""
    proba = _weighted_mean(_values(branches, spec.field), _weights(branches, spec))
    return {spec.field: proba, "label": int(np.argmax(proba))}


def majority_vote(branches: Branches, spec: JoinSpec) -> dict[str, Any]:
    """Weighted count of hard labels; ties go to the label with the larger summed
    probability (when branches give ``proba_field``), then to the earliest branch."""
    labels = [int(np.asarray(v)) for v in _values(branches, spec.field)]
    votes: dict[int, float] = {}
    for label, weight in zip(labels, _weights(branches, spec), strict=True):
        votes[label] = votes.get(label, 0.0) + weight
    top = max(votes.values())
    tied = [label for label in dict.fromkeys(labels) if votes[label] == top]
    if len(tied) > 1 and all(spec.proba_field in p for _, p in branches):
        summed = np.sum(_values(branches, spec.proba_field), axis=0)
        best = max(summed[label] for label in tied)
        tied = [label for label in tied if summed[label] == best]
    return {"label": tied[0], "votes": {str(k): v for k, v in votes.items()}}


def weighted_average(branches: Branches, spec: JoinSpec) -> dict[str, Any]:
    """Weighted mean of regression outputs."""
    return {spec.field: _weighted_mean(_values(branches, spec.field), _weights(branches, spec))}


def max_confidence(branches: Branches, spec: JoinSpec) -> dict[str, Any]:
    """The answer of the branch most confident in its top class (earliest on ties)."""
    values = _values(branches, spec.field)
    best = int(np.argmax([v.max() for v in values]))
    return {spec.field: values[best], "label": int(np.argmax(values[best])),
            "chosen": branches[best][0]}


def entropy_weighted(branches: Branches, spec: JoinSpec) -> dict[str, Any]:
    """Weights inversely proportional to each branch's predictive entropy for this
    request (times the configured weights), then a weighted mean and argmax."""
    values = _values(branches, spec.field)
    entropy = np.array([-(v * np.log(np.clip(v, 1e-12, None))).sum() for v in values])
    weights = _weights(branches, spec) / (entropy + ENTROPY_EPS)
    proba = _weighted_mean(values, weights)
    return {spec.field: proba, "label": int(np.argmax(proba)),
            "branch_weights": {name: float(w / weights.sum())
                               for (name, _), w in zip(branches, weights, strict=True)}}


def gate_weighted(branches: Branches, spec: JoinSpec) -> dict[str, Any]:
    """Mixture of experts: the experts' outputs summed with the gate's weights (each
    expert's payload carries ``gate_weights``), renormalised over the experts that
    answered."""
    weights = []
    for name, payload in branches:
        gate = payload.get("gate_weights")
        if not isinstance(gate, dict) or name not in gate:
            raise StrategyError(f"branch {name!r} carries no gate weight for itself: is it an "
                                "expert of a mixture-of-experts router?")
        weights.append(float(gate[name]))
    value = _weighted_mean(_values(branches, spec.field), np.array(weights))
    out: dict[str, Any] = {spec.field: value}
    if value.ndim == 1:
        out["label"] = int(np.argmax(value))
    return out


def merge(branches: Branches, spec: JoinSpec) -> dict[str, Any]:
    """Every branch's payload under its agent name."""
    return {name: payload for name, payload in branches}


def stacking_features(branches: Branches, spec: JoinSpec) -> np.ndarray:
    """The stacking meta-model's input: the branches' ``field`` values flattened and
    concatenated in branch order, as float32."""
    return np.concatenate([v.ravel() for v in _values(branches, spec.field)]).astype(np.float32)


STRATEGIES: dict[str, Callable[[Branches, JoinSpec], dict[str, Any]]] = {
    "soft_vote": soft_vote,
    "majority_vote": majority_vote,
    "weighted_average": weighted_average,
    "max_confidence": max_confidence,
    "entropy_weighted": entropy_weighted,
    "merge": merge,
    "gate_weighted": gate_weighted,
}


def _means(requests: list[Branches], spec: JoinSpec) -> np.ndarray | None:
    """The weighted means of many requests at once, the same sums in the same order as
    :func:`_weighted_mean` per request; None unless every request has the same branches
    with values of one shape."""
    names = [name for name, _ in requests[0]]
    if any(len(branches) != len(names) or [n for n, _ in branches] != names
           for branches in requests):
        return None
    try:
        values = np.asarray([[payload[spec.field] for _, payload in branches]
                             for branches in requests], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        return None
    try:
        return _weighted_mean(list(values.swapaxes(0, 1)), _weights(requests[0], spec))
    except StrategyError:  # weights summing to zero: said request by request
        return None


def combine_many(requests: list[Branches], spec: JoinSpec) -> list[dict[str, Any]] | None:
    """:func:`combine` for a batch of requests in one pass of numpy, for the strategies
    that average (``soft_vote``, ``weighted_average``); None where the batch cannot be
    taken whole (another strategy, branches or shapes that differ, a missing field), and
    each request is combined on its own, which says what is wrong with it.

    >>> spec = JoinSpec(strategy="soft_vote", weights={"b": 3})
    >>> batch = [[("a", {"proba": [0.9, 0.1]}), ("b", {"proba": [0.2, 0.8]})]] * 2
    >>> [out["label"] for out in combine_many(batch, spec)]
    [1, 1]
    """
    if spec.strategy not in ("soft_vote", "weighted_average") or spec.keep_branches:
        return None
    means = _means(requests, spec) if requests else None
    if means is None:
        return None
    if spec.strategy == "weighted_average":
        return [{spec.field: mean} for mean in means]
    labels = means.reshape(len(means), -1).argmax(axis=1)
    return [{spec.field: mean, "label": int(label)} for mean, label in zip(means, labels,
                                                                             strict=True)]


def combine(branches: Branches, spec: JoinSpec) -> dict[str, Any]:
    """Fuse the branches with one of the built-in stateless strategies; with
    ``keep_branches`` the per-branch values are kept under ``branches``."""
    if not branches:
        raise StrategyError("no branch answered")
    out = STRATEGIES[spec.strategy](branches, spec)
    if spec.keep_branches and spec.strategy != "merge":
        out["branches"] = {name: payload.get(spec.field) for name, payload in branches}
    return out
