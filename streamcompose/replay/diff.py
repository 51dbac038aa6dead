"""How two answers to one request differ: the comparison ``replay`` and ``shadow-report``
share, field by field.

The fields compared are those the agent produced: the fields of either answer that the
request did not carry (or carried with another value), unless the caller names them.
Each value is compared by its kind:

* ``label``: a string, boolean or integer; equal or not (a classifier's label),
* ``proba``: a flat vector of two or more floats in 0..1 that sum to 1, read as class
  probabilities: the two agree when their argmax (the label) does; their largest
  absolute difference is kept,
* ``number``: any other numbers (a regressor's output, an embedding): they agree when
  every element lies within ``tolerance``; the largest absolute difference is kept,
* ``other``: anything else (maps, bytes): equal or not.

>>> live = Answer({"x": [1, 2], "proba": [0.1, 0.9]}, latency_ms=5)
>>> cand = Answer({"x": [1, 2], "proba": [0.6, 0.4]}, latency_ms=7)
>>> d = compare("r1", {"x": [1, 2]}, live, cand)
>>> d.agree, [(f.field, f.kind, f.live, f.candidate, round(f.abs_diff, 2)) for f in d.fields]
(False, [('proba', 'proba', 1, 0, 0.5)])
>>> compare("r2", {}, live, None).status
'only_live'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_TOLERANCE = 1e-6
PROBA_SUM = 1e-2  # how far from 1 the sum of class probabilities may be (float32 rounding)
KINDS = ("label", "proba", "number", "other")


@dataclass(frozen=True)
class Answer:
    """What one side did with a request: its result ``payload``, or the ``error`` of its
    dead letter; ``latency_ms`` from the request reaching the agent to the answer."""

    payload: dict[str, Any] | None
    error: str | None = None
    latency_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.payload is not None


@dataclass(frozen=True)
class FieldDiff:
    """One field of two answers: its kind, the values compared (the label for ``label``
    and ``proba``, else the value), whether they agree, their largest absolute
    difference (numbers and probabilities)."""

    field: str
    kind: str
    live: Any
    candidate: Any
    agree: bool
    abs_diff: float | None = None


@dataclass(frozen=True)
class RequestDiff:
    """Both sides' answers to one request. ``status``: ``both`` (both gave a result),
    ``only_live`` / ``only_candidate`` (the other failed or gave nothing), ``neither``."""

    id: str
    status: str
    fields: tuple[FieldDiff, ...]
    live: Answer | None
    candidate: Answer | None

    @property
    def agree(self) -> bool | None:
        """Whether every compared field agrees; None unless both gave a result."""
        return all(f.agree for f in self.fields) if self.status == "both" else None

    def to_json(self) -> dict[str, Any]:
        """The difference as JSON-ready values (what ``--out`` writes, one per line)."""
        def side(a: Answer | None) -> dict[str, Any]:
            if a is None:
                return {"state": "missing"}
            return {"state": "ok" if a.ok else "failed", "error": a.error,
                    "latency_ms": a.latency_ms}

        return {"id": self.id, "status": self.status, "agree": self.agree,
                "live": side(self.live), "candidate": side(self.candidate),
                "fields": [{"field": f.field, "kind": f.kind, "live": _plain(f.live),
                            "candidate": _plain(f.candidate), "agree": f.agree,
                            "abs_diff": f.abs_diff} for f in self.fields]}


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def kind_of(value: Any) -> str:
    """The kind a value is compared as (see the module documentation).

    >>> kind_of(3), kind_of("cat"), kind_of([0.2, 0.8]), kind_of(2.5), kind_of({"a": 1})
    ('label', 'label', 'proba', 'number', 'other')
    >>> kind_of([1.5, 2.0]), kind_of([0.2, 0.3])
    ('number', 'number')
    """
    if isinstance(value, str | bool | np.bool_):
        return "label"
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        return "other"
    if array.dtype.kind in "iu" and array.ndim == 0:
        return "label"
    if array.dtype.kind == "f" and array.ndim == 1 and array.size >= 2 and bool(
            (array >= 0).all() and (array <= 1).all() and abs(array.sum() - 1) < PROBA_SUM):
        return "proba"
    return "number" if array.dtype.kind in "iuf" and array.size > 0 else "other"


def same(a: Any, b: Any) -> bool:
    """Equal values, arrays and nested lists included.

    >>> same([1, 2], np.array([1, 2])), same({"a": 1}, {"a": 2})
    (True, False)
    """
    try:
        x, y = np.asarray(a), np.asarray(b)
        if x.dtype.kind in "biuf" and y.dtype.kind in "biuf":
            return x.shape == y.shape and bool(np.array_equal(x, y))
    except (TypeError, ValueError):
        pass
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def produced_fields(request: dict[str, Any] | None, *answers: Answer | None) -> list[str]:
    """The fields of the answers that the request did not carry as they are."""
    request = request or {}
    names: dict[str, None] = {}
    for a in answers:
        if a is not None and a.payload is not None:
            names.update((k, None) for k, v in a.payload.items()
                         if k not in request or not same(request[k], v))
    return list(names)


def compare_field(name: str, live: Any, candidate: Any,
                  tolerance: float = DEFAULT_TOLERANCE) -> FieldDiff:
    """Compare one field of two answers by the kind of the live value.

    >>> compare_field("y", 1.0, 1.5).abs_diff, compare_field("y", 1.0, 1.0 + 1e-9).agree
    (0.5, True)
    >>> compare_field("label", 3, None).agree
    False
    """
    kind = kind_of(live if live is not None else candidate)
    if live is None or candidate is None or kind in ("label", "other"):
        return FieldDiff(name, kind, live, candidate, live is not None and same(live, candidate))
    x = np.asarray(live, dtype=np.float64)
    y = np.asarray(candidate, dtype=np.float64) if kind_of(candidate) in ("proba", "number") \
        else None
    if y is None or x.shape != y.shape:
        return FieldDiff(name, kind, _plain(live), _plain(candidate), False)
    diff = float(np.max(np.abs(x - y))) if x.size else 0.0
    if kind == "proba":
        a, b = int(np.argmax(x)), int(np.argmax(y))
        return FieldDiff(name, kind, a, b, a == b, diff)
    return FieldDiff(name, kind, _plain(live), _plain(candidate), diff <= tolerance, diff)


def compare(request_id: str, request: dict[str, Any] | None, live: Answer | None,
            candidate: Answer | None, fields: list[str] | None = None,
            tolerance: float = DEFAULT_TOLERANCE) -> RequestDiff:
    """Compare the two answers to one request (``fields``: those to compare, else the
    fields the agent produced)."""
    live_ok = live is not None and live.ok
    cand_ok = candidate is not None and candidate.ok
    status = {(True, True): "both", (True, False): "only_live",
              (False, True): "only_candidate", (False, False): "neither"}[(live_ok, cand_ok)]
    compared: tuple[FieldDiff, ...] = ()
    if status == "both":
        assert live is not None and candidate is not None
        assert live.payload is not None and candidate.payload is not None
        names = fields or produced_fields(request, live, candidate)
        compared = tuple(compare_field(n, live.payload.get(n), candidate.payload.get(n),
                                       tolerance) for n in names)
    return RequestDiff(request_id, status, compared, live, candidate)
