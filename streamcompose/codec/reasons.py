"""Words for what went wrong with a record: what came (its length and first bytes, what
it decoded to) and an exception's text even when the exception has none.

These texts end up in dead letters, where an operator reads them without the record's
bytes at hand, so they say what arrived rather than only that it was wrong.

>>> print(describe_bytes(b"[1, 2]"), describe_bytes(b"x" * 40), sep="; ")
6 bytes b'[1, 2]'; 40 bytes starting b'xxxxxxxxxxxxxxxx'
>>> describe_value([1, 2], "JSON"), describe_value(7, "msgpack")
('a JSON array of 2 items', 'a msgpack integer (7)')
"""

from __future__ import annotations

from typing import Any

import numpy as np

_JSON_NAMES = ((bool, "boolean"), (int | float, "number"), (str, "string"), (list, "array"),
               (dict, "object"), (type(None), "null"))
_MSGPACK_NAMES = ((bool, "boolean"), (int, "integer"), (float, "float"), (str, "string"),
                  (bytes, "bin"), (list, "array"), (dict, "map"), (type(None), "nil"))


def count(n: int, noun: str) -> str:
    """``n`` and a noun, plural unless ``n`` is 1.

    >>> count(1, "item"), count(3, "byte")
    ('1 item', '3 bytes')
    """
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def describe_bytes(value: bytes, head: int = 16) -> str:
    """How long a value is and how it starts."""
    if len(value) <= head:
        return f"{count(len(value), 'byte')} {value!r}"
    return f"{count(len(value), 'byte')} starting {value[:head]!r}"


def describe_value(value: Any, fmt: str) -> str:
    """What a decoded value is, in the words of its format (``JSON`` or ``msgpack``)."""
    if isinstance(value, np.ndarray):
        return f"a numpy array ({value.dtype}, shape {value.shape})"
    names = _JSON_NAMES if fmt == "JSON" else _MSGPACK_NAMES
    name = next((n for t, n in names if isinstance(value, t)), type(value).__name__)
    if isinstance(value, list | dict):
        return f"a {fmt} {name} of {count(len(value), 'item')}"
    if isinstance(value, bytes):
        return f"a {fmt} {name} of {count(len(value), 'byte')}"
    text = repr(value)
    return f"a {fmt} {name} ({text if len(text) <= 40 else text[:40] + '…'})"


def exception_text(exc: BaseException, typed: bool = False) -> str:
    """An exception's text (after its type name when ``typed``), never empty: an exception
    without text (msgpack raises ``FormatError()``) is named by its type and the first
    line of its docstring.

    >>> import msgpack
    >>> exception_text(ValueError("bad")), exception_text(ValueError("bad"), typed=True)
    ('bad', 'ValueError: bad')
    >>> exception_text(msgpack.FormatError())
    'FormatError: Invalid msgpack format'
    """
    name = type(exc).__name__
    text = str(exc).strip()
    if text:
        return f"{name}: {text}" if typed else text
    doc = (type(exc).__doc__ or "").strip().splitlines()
    return f"{name}: {doc[0].rstrip('.')}" if doc else f"{name} (no description)"
