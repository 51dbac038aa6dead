"""Routing conditions: a small, safe expression language over a request's payload fields.

A switch router sends a request to the first case whose condition holds. A condition is
tokenized (:mod:`streamcompose.conditions.expr_lexer`) and parsed by recursive descent into a
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

from collections.abc import Callable
from typing import Any

from streamcompose.conditions.expr_lexer import Token, TokenizeError, tokenize
from streamcompose.conditions.expr_tree import (
    _ORDERINGS,
    And,
    Compare,
    Condition,
    Field,
    Has,
    Literal,
    Node,
    Not,
    Or,
    Scalar,
)
from streamcompose.errors import StreamComposeError

__all__ = ["And", "Compare", "Condition", "ExpressionError", "Field", "Has", "Literal", "Node",
           "Not", "Or", "Scalar", "parse"]

MAX_DEPTH = 50  # nesting of '(' and 'not'; bounds the parser's and the evaluator's stack
_CONSTANTS = {"true": True, "false": False, "null": None}
_OPERATORS = ("==", "!=", "in", "not in", *_ORDERINGS)
_LITERALS = ("number", "string", *_CONSTANTS)


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
