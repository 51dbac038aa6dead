"""The syntax tree of routing conditions, and its evaluation (which never raises).

>>> Condition("kind == 'image'", Compare("==", Field("kind"), Literal("image")),
...           frozenset({"kind"})).evaluate({"kind": "image"})
True
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

Scalar = str | int | float | bool | None
_MISSING: Any = object()
_ORDERINGS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_KINDS = (("null", type(None)), ("bool", bool), ("number", int | float), ("string", str),
          ("list", list | tuple), ("map", Mapping), ("array", np.ndarray))


@dataclass(frozen=True, slots=True)
class Literal:
    """A number, string, true, false or null; a list literal is a tuple of them."""

    value: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Field:
    """A payload field, by its dotted name: ``meta.source``."""

    name: str


@dataclass(frozen=True, slots=True)
class Has:
    """``has(field)``: whether the field is present."""

    field: Field


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Compare:
    """``left op right``, ``op`` one of ``== != < <= > >= in``, ``not in``."""

    op: str
    left: Node
    right: Node


Node = Literal | Field | Has | Not | And | Or | Compare  # a node of the syntax tree


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed condition: its ``text``, syntax tree ``root`` and the ``fields`` it reads."""

    text: str
    root: Node
    fields: frozenset[str]

    def evaluate(self, payload: Mapping[str, Any]) -> bool:
        """Whether the condition holds on ``payload``; never raises."""
        return _test(self.root, payload)


def _test(node: Node, payload: Any) -> bool:
    try:
        v = _scalar(_resolve(node, payload))
        return v is not _MISSING and (v.size > 0 if isinstance(v, np.ndarray) else bool(v))
    except Exception:  # a payload value whose __bool__ fails is false
        return False


def _resolve(node: Node, payload: Any) -> Any:
    match node:
        case Literal(value):
            return value
        case Field(name):
            return _lookup(payload, name)
        case Has(Field(name)):
            return _lookup(payload, name) is not _MISSING
        case Not(operand):
            return not _test(operand, payload)
        case And(operands):
            return all(_test(o, payload) for o in operands)
        case Or(operands):
            return any(_test(o, payload) for o in operands)
        case Compare(op, left, right):
            a, b = _resolve(left, payload), _resolve(right, payload)
            try:
                return a is not _MISSING and b is not _MISSING and _compare(op, a, b)
            except Exception:  # e.g. a payload value whose __eq__ fails
                return False
    return _MISSING


def _lookup(payload: Any, name: str) -> Any:
    for key in name.split("."):
        try:
            if not isinstance(payload, Mapping) or key not in payload:
                return _MISSING
            payload = payload[key]
        except Exception:
            return _MISSING
    return payload


def _scalar(v: Any) -> Any:
    if isinstance(v, np.generic) or (isinstance(v, np.ndarray) and v.ndim == 0):
        return v.item()
    return v


def _kind(v: Any) -> str:
    return next((k for k, t in _KINDS if isinstance(v, t)), f"other {type(v).__qualname__}")


def _compare(op: str, a: Any, b: Any) -> bool:
    if op in ("==", "!="):
        return _equal(a, b) is (op == "==")
    if op in ("in", "not in"):
        return _contains(a, b) is (op == "in")
    a, b = _scalar(a), _scalar(b)
    kind = _kind(a)
    return kind == _kind(b) and kind in ("number", "string") and _ORDERINGS[op](a, b) is True


def _equal(a: Any, b: Any) -> bool | None:
    """``a == b`` by the rules of the language; None where ``a`` and ``b`` are incomparable."""
    a, b = _scalar(a), _scalar(b)
    ka, kb = _kind(a), _kind(b)
    if "array" in (ka, kb) or (ka != kb and "null" not in (ka, kb)):
        return None
    if ka == kb == "list":
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if ka == kb == "map":
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return (a == b) is True


def _contains(needle: Any, haystack: Any) -> bool | None:
    """``needle in haystack``; None where ``in`` does not apply."""
    needle, haystack = _scalar(needle), _scalar(haystack)
    if isinstance(haystack, np.ndarray):
        haystack = haystack.tolist()
    if isinstance(haystack, str):
        return needle in haystack if isinstance(needle, str) else None
    if isinstance(haystack, list | tuple | set | frozenset | Mapping):
        return any(_equal(needle, item) for item in haystack)  # a map yields its keys
    return None
