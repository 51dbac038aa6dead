"""Tokenizer for the routing-condition language of :mod:`streamcompose.conditions.expr`.

A hand-written scanner (no regular expressions, no Python evaluation): it turns the text
into :class:`Token` objects, each with the 0-based character offset it starts at, and
raises :class:`TokenizeError` with the offset of the first character it cannot accept.

>>> [(t.kind, t.value) for t in tokenize("x.y >= -1.5e3")]
[('name', 'x.y'), ('>=', None), ('number', -1500.0), ('end', None)]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from string import ascii_letters, hexdigits
from typing import Any

from streamcompose.errors import StreamComposeError

__all__ = ["KEYWORDS", "Token", "TokenizeError", "tokenize"]

KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false", "null", "has"})
_DIGITS = "0123456789"
_NAME_START = ascii_letters + "_"
_NAME_CHARS = _NAME_START + _DIGITS
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r", "0": "\0"}
_SYMBOLS = ("==", "!=", "<=", ">=", "<", ">", "(", ")", "[", "]", ",")
_MISTAKES = {  # symbols people write from other languages, and what to write instead
    "&&": "use 'and'", "||": "use 'or'", "&": "use 'and'", "|": "use 'or'",
    "!": "use 'not'", "=": "did you mean '=='?",
}
# Names that look like a keyword in the wrong case (or Python's None): a helpful error.
_NEAR_KEYWORDS = {**{k: k for k in KEYWORDS}, "none": "null"}


class TokenizeError(StreamComposeError):
    """The text cannot be split into tokens; ``position`` is where scanning failed."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message, position=position)
        self.position = position


@dataclass(frozen=True, slots=True)
class Token:
    """One token: ``kind`` is ``number``, ``string``, ``name``, ``end``, a keyword, ``not in``
    or a symbol (``and``, ``==``, ``(``...); ``text`` is its source text and ``pos`` its offset;
    ``value`` is the decoded literal for numbers and strings, the dotted name for names."""

    kind: str
    text: str
    pos: int
    value: Any = None


def tokenize(text: str) -> Iterator[Token]:
    """Yield the tokens of ``text``, ending with an ``end`` token at ``len(text)``.

    Lazily, so that a parser stopping at a syntax error reports it rather than a bad
    character further on. ``not`` followed by ``in`` becomes one ``not in`` token.
    """
    held: Token | None = None  # a 'not', until we know whether 'in' follows
    for tok in _scan(text):
        if held is not None:
            if tok.kind == "in":
                tok = Token("not in", text[held.pos : tok.pos + 2], held.pos)
            else:
                yield held
            held = None
        if tok.kind == "not":
            held = tok
        else:
            yield tok


def _scan(text: str) -> Iterator[Token]:
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "'\"":
            tok = _string(text, i)
        elif c in _DIGITS or (c in "-." and _starts_number(text, i)):
            tok = _number(text, i)
        elif c in _NAME_START:
            tok = _name(text, i)
        else:
            symbol = next((s for s in _SYMBOLS if text.startswith(s, i)), None)
            if symbol is None:
                wrong = text[i : i + 2] if text[i : i + 2] in _MISTAKES else c
                hint = f" ({_MISTAKES[wrong]})" if wrong in _MISTAKES else ""
                raise TokenizeError(f"unexpected {wrong!r}{hint}", i)
            tok = Token(symbol, symbol, i)
        yield tok
        i += len(tok.text)
    yield Token("end", "", n)


def _starts_number(text: str, i: int) -> bool:
    """Whether a ``-`` or ``.`` at ``i`` begins a number (``-1``, ``-.5``, ``.5``)."""
    if text[i] == "-":
        i += 1
        if text.startswith(".", i):
            i += 1
    elif text[i] == ".":
        i += 1
    return i < len(text) and text[i] in _DIGITS


def _skip(text: str, i: int, chars: str) -> int:
    while i < len(text) and text[i] in chars:
        i += 1
    return i


def _number(text: str, start: int) -> Token:
    i = _skip(text, start + (text[start] == "-"), _DIGITS)
    is_float = False
    if text.startswith(".", i):
        is_float, i = True, _skip(text, i + 1, _DIGITS)
    if i < len(text) and text[i] in "eE":
        digits_at = i + 1 + (text[i + 1 : i + 2] in ("+", "-"))
        end = _skip(text, digits_at, _DIGITS)
        if end == digits_at:
            raise TokenizeError("malformed exponent in number", i)
        is_float, i = True, end
    if i < len(text) and text[i] in _NAME_CHARS + ".":
        raise TokenizeError(f"unexpected {text[i]!r} after number", i)
    source = text[start:i]
    try:
        return Token("number", source, start, float(source) if is_float else int(source))
    except ValueError:  # more digits than int() accepts
        raise TokenizeError("number too long", start) from None


def _string(text: str, start: int) -> Token:
    quote, out, i = text[start], [], start + 1
    while i < len(text):
        c = text[i]
        if c == quote:
            return Token("string", text[start : i + 1], start, "".join(out))
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(text):
            break
        escape = text[i + 1]
        if escape == "u":
            code = text[i + 2 : i + 6]
            if len(code) != 4 or any(h not in hexdigits for h in code):
                raise TokenizeError("invalid \\u escape (needs 4 hex digits)", i)
            out.append(chr(int(code, 16)))
            i += 6
        elif escape in _ESCAPES:
            out.append(_ESCAPES[escape])
            i += 2
        else:
            raise TokenizeError(f"invalid escape '\\{escape}'", i)
    raise TokenizeError("unterminated string", start)


def _name(text: str, start: int) -> Token:
    i = _skip(text, start, _NAME_CHARS)
    while text.startswith(".", i):
        if not text[i + 1 : i + 2] or text[i + 1] not in _NAME_START:
            raise TokenizeError("expected a name after '.'", i + 1)
        i = _skip(text, i + 1, _NAME_CHARS)
    word = text[start:i]
    if word in KEYWORDS:
        return Token(word, word, start)
    if word.lower() in _NEAR_KEYWORDS:
        case = "keywords are lower case: " if word.lower() in KEYWORDS else ""
        hint = _NEAR_KEYWORDS[word.lower()]
        raise TokenizeError(f"unknown name {word!r} ({case}did you mean {hint}?)", start)
    return Token("name", word, start, word)
