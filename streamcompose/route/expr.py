"""Routing conditions: a small, safe expression language over a request's payload fields.

A switch router sends a request to the first case whose condition holds. A condition is
tokenized (:mod:`streamcompose.route.expr_lexer`) and parsed by recursive descent into a
tree of frozen dataclasses; no text ever reaches Python's evaluator. Grammar::

    expr       := or
    or         := and ('or' and)*
    and        := not ('and' not)*
    not        := 'not' not | comparison
    comparison := operand (('=='|'!='|'<'|'<='|'>'|'>='|'in'|'not in') operand)?
    operand    := NUMBER | STRING | 'true' | 'false' | 'null' | FIELD | '(' expr ')'
                | '[' [literal (',' literal)*] ']' | 'has' '(' FIELD ')'
    FIELD      := name ('.' name)*     -- name: letters, digits, _; not a keyword

NUMBER: ``3 -2 0.5 1e-3``; STRING: ``'...'`` or ``"..."`` with the escapes
``\\\\ \\' \\" \\n \\t \\r \\0 \\uXXXX``; keywords are lower case. For example::

    kind == 'image' and not has(meta.skip)
    score >= 0.8 or 'urgent' in tags
    lang in ['de', 'fr'] and meta.source != "camera"

Evaluation never raises, whatever the payload:

* ``a.b`` is key ``b`` of the map ``a``, *missing* if a step is absent or not a map;
  ``has(a.b)`` is true iff it is present (even as ``null``). A bare operand is
  truth-tested (missing, ``null``, ``0``, ``''`` and empty containers are false).
* A comparison with a missing side is false, ``!=`` and ``not in`` included; so is one
  between different types (bools are not numbers), except ``==``/``!=`` with ``null``.
  Lists and maps compare item by item; ``<``-style only numbers with numbers, strings
  with strings.
* ``x in y``: a substring test if both are strings, a ``==`` membership test if ``y`` is a
  list, a numpy array or a map (its keys), else false; ``not in`` is false there too.
* numpy scalars and 0-d arrays act as Python scalars; other arrays only work with ``in``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamcompose.errors import StreamComposeError
from streamcompose.route.expr_lexer import Token, TokenizeError, tokenize

__all__ = ["And", "Compare", "Condition", "ExpressionError", "Field", "Has", "Literal", "Node",
           "Not", "Or", "Scalar", "parse"]

Scalar = str | int | float | bool | None
MAX_DEPTH = 50  # nesting of '(' and 'not'; bounds the parser's and the evaluator's stack
_MISSING: Any = object()
_CONSTANTS = {"true": True, "false": False, "null": None}
_ORDERINGS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_OPERATORS = ("==", "!=", "in", "not in", *_ORDERINGS)
_LITERALS = ("number", "string", *_CONSTANTS)
_KINDS = (("null", type(None)), ("bool", bool), ("number", int | float), ("string", str),
          ("list", list | tuple), ("map", Mapping), ("array", np.ndarray))


class ExpressionError(StreamComposeError):
    """A condition's text is malformed; ``position`` is the 0-based offset of the error."""

    def __init__(self, message: str, *, expression: str, position: int) -> None:
        super().__init__(message, expression=expression, position=position)
        self.expression, self.position = expression, position

    def __str__(self) -> str:
        return f"{self.message} at position {self.position} in: {self.expression}"

    def pointer(self) -> str:
        """The expression, and under it a caret at the error."""
        pad = "".join(c if c == "\t" else " " for c in self.expression[: self.position])
        return f"{self.expression}\n{pad}^"


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


class _Parser:
    """Recursive descent over the tokens: one method per rule of the grammar."""

    def __init__(self, text: str) -> None:
        self.text, self.stream, self.depth = text, tokenize(text), 0
        self.next: Token | None = None  # the one token of lookahead
        self.fields: set[str] = set()

    def peek(self) -> Token:
        if self.next is None:
            self.next = next(self.stream)
        return self.next

    def take(self) -> Token:
        tok = self.peek()
        if tok.kind != "end":
            self.next = None
        return tok

    def fail(self, tok: Token, message: str = "", hint: str = "") -> ExpressionError:
        if not message:
            what = {"end": "end of expression", "string": f"string {tok.text}"}
            message = f"unexpected {what.get(tok.kind, repr(tok.text))}{hint}"
        return ExpressionError(message, expression=self.text, position=tok.pos)

    def close(self, kind: str, opening: Token) -> None:
        if self.peek().kind != kind:
            hint = f" (expected '{kind}' to close '{opening.text}' at position {opening.pos})"
            raise self.fail(self.peek(), hint=hint)
        self.take()

    def nested(self, opening: Token, rule: Callable[[], Node]) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(opening, f"expression nested more than {MAX_DEPTH} deep")
        node = rule()
        self.depth -= 1
        return node

    def condition(self) -> Node:
        if self.peek().kind == "end":
            raise self.fail(self.peek(), "empty expression")
        node = self.junction("or")
        if self.peek().kind != "end":
            raise self.fail(self.peek(), hint=" (expected 'and', 'or' or the end)")
        return node

    def junction(self, word: str) -> Node:
        """A chain of ``or`` (over ``and`` chains) or of ``and`` (over negations)."""
        rule = self.negation if word == "and" else lambda: self.junction("and")
        items = [rule()]
        while self.peek().kind == word:
            self.take()
            items.append(rule())
        return items[0] if len(items) == 1 else (And if word == "and" else Or)(tuple(items))

    def negation(self) -> Node:
        if self.peek().kind != "not":
            return self.comparison()
        return Not(self.nested(self.take(), self.negation))

    def comparison(self) -> Node:
        left = self.operand()
        if self.peek().kind not in _OPERATORS:
            return left
        op, right = self.take().kind, self.operand()
        if self.peek().kind in _OPERATORS:
            raise self.fail(self.peek(), "comparisons cannot be chained; join them with 'and'")
        return Compare(op, left, right)

    def operand(self) -> Node:
        tok = self.take()
        if tok.kind in _LITERALS:
            return Literal(_CONSTANTS.get(tok.kind, tok.value))
        if tok.kind == "(":
            node = self.nested(tok, lambda: self.junction("or"))
            self.close(")", tok)
            return node
        if tok.kind == "[":
            items: list[Any] = []
            while self.peek().kind != "]" or items:  # so that a ']' right after ',' fails
                item = self.take()
                if item.kind not in _LITERALS:
                    raise self.fail(item, hint=" (expected a number, string, true, false or null)")
                items.append(_CONSTANTS.get(item.kind, item.value))
                if self.peek().kind != ",":
                    break
                self.take()
            self.close("]", tok)
            return Literal(tuple(items))
        if tok.kind == "has":
            opening = self.take()
            if opening.kind != "(":
                raise self.fail(opening, hint=" (expected has(field))")
            name = self.take()
            if name.kind != "name":
                raise self.fail(name, hint=" (expected has(field))")
            self.close(")", opening)
            self.fields.add(name.text)
            return Has(Field(name.text))
        if tok.kind != "name":
            raise self.fail(tok)
        self.fields.add(tok.text)
        return Field(tok.text)


def parse(text: str) -> Condition:
    """Parse a routing condition; raise :class:`ExpressionError` at its first error.

    >>> cond = parse("kind == 'image' and not has(meta.skip)")
    >>> cond.evaluate({"kind": "image", "meta": {"source": "camera"}}), sorted(cond.fields)
    (True, ['kind', 'meta.skip'])
    >>> try:
    ...     parse("kind == 'image' and )")
    ... except ExpressionError as exc:
    ...     print(exc, exc.position, exc.pointer(), sep="\\n")
    unexpected ')' at position 20 in: kind == 'image' and )
    20
    kind == 'image' and )
                        ^
    """
    try:
        parser = _Parser(text)
        root = parser.condition()
    except TokenizeError as exc:
        raise ExpressionError(exc.message, expression=text, position=exc.position) from None
    return Condition(text, root, frozenset(parser.fields))
