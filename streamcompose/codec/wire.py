"""The wire format of every streamcompose record.

* key: the request id (UTF-8), carried unchanged through every hop.
* value: a msgpack map of named fields. numpy arrays travel as msgpack extension type 1
  holding ``[dtype string, shape, raw bytes]``; nothing is ever pickled. A JSON object is
  accepted wherever a msgpack map is (for kcat or Java producers: without a content type,
  a value starting with ``{`` or ``[`` is read as JSON); results can be written as JSON,
  arrays as nested lists and bytes as base64 strings. A value that cannot be decoded
  raises :class:`CodecError` naming the decoder, its complaint and the bytes that came.
* headers: ``content-type`` (``application/msgpack`` or ``application/json``),
  ``sc-entered`` (milliseconds since the epoch when the request entered the topology) and
  ``sc-path`` (the agents it passed, comma separated).

>>> import numpy as np
>>> value = encode_payload({"x": np.arange(3, dtype=np.int16), "note": "hi"})
>>> decoded = decode_payload(value)
>>> decoded["x"], decoded["note"]
(array([0, 1, 2], dtype=int16), 'hi')
>>> decode_payload(b'{"x": [1, 2]}')
{'x': [1, 2]}
"""

from __future__ import annotations

import base64
import json
import re
import threading
from typing import Any

import msgpack
import numpy as np

from streamcompose.codec.reasons import count, describe_bytes, describe_value, exception_text
from streamcompose.errors import CodecError

MSGPACK = "application/msgpack"
JSON = "application/json"
NDARRAY_EXT = 1
_JSON_START = re.compile(rb"[ \t\r\n]*([{\[])")
# each thread's packers: msgpack.packb makes a Packer with a 256 KiB buffer per call, and
# the array hook's, made while the payload's is in use, took fresh memory every time (17
# µs for a payload of three small arrays, against 4); a packer that packed more than
# KEEP_BYTES is dropped, so that a thread does not hold on to its largest buffer
_PACKERS = threading.local()
KEEP_BYTES = 1 << 20


def pack(obj: Any, arrays: bool = True) -> bytes:
    """``obj`` as msgpack, numpy arrays as extension type 1 (with ``arrays``; else only
    msgpack's own types).

    >>> pack({"n": 1}) == pack({"n": 1}, arrays=False) == msgpack.packb({"n": 1})
    True
    """
    kind = "outer" if arrays else "plain"
    packer = getattr(_PACKERS, kind, None)
    if packer is None:
        packer = msgpack.Packer(default=_default if arrays else None, use_bin_type=True)
        setattr(_PACKERS, kind, packer)
    data = packer.pack(obj)
    if len(data) > KEEP_BYTES:
        delattr(_PACKERS, kind)
    return data


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError("arrays of Python objects cannot be encoded")
        # the plain packer, not the outer one, which is packing the payload holding the array
        data = pack([obj.dtype.str, list(obj.shape), np.ascontiguousarray(obj).tobytes()],
                    arrays=False)
        return msgpack.ExtType(NDARRAY_EXT, data)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode a value of type {type(obj).__name__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code != NDARRAY_EXT:
        raise ValueError(f"unknown msgpack extension type {code} (only type {NDARRAY_EXT}, "
                         "a numpy array, is known)")
    try:
        dtype, shape, raw = msgpack.unpackb(data)
        return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape)
    except Exception as exc:
        raise ValueError(f"a malformed array (extension type {NDARRAY_EXT}, expected "
                         f"[dtype, shape, bytes]): {exception_text(exc)}") from exc


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, bytes | bytearray):
        return base64.b64encode(obj).decode("ascii")
    raise TypeError(f"cannot encode a value of type {type(obj).__name__} as JSON")


def encode_payload(payload: dict[str, Any], content_type: str = MSGPACK) -> bytes:
    """Encode a payload as msgpack (default) or JSON."""
    try:
        return _encode(payload, content_type)
    except (TypeError, ValueError, OverflowError) as exc:
        culprit = next((k for k, v in payload.items() if not _encodes({k: v}, content_type)),
                       None)
        where = f"field {culprit!r}" if culprit is not None else "payload"
        raise CodecError(f"cannot encode {where} as {_name(content_type)}: "
                         f"{exception_text(exc)}") from exc


def _encode(payload: dict[str, Any], content_type: str) -> bytes:
    if content_type == JSON:
        return json.dumps(payload, default=_jsonable, separators=(",", ":")).encode()
    return pack(payload)


def _encodes(payload: dict[str, Any], content_type: str) -> bool:
    try:
        _encode(payload, content_type)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def decode_payload(value: bytes | None, content_type: str | None = None) -> dict[str, Any]:
    """Decode a record value into a payload map, msgpack or JSON. Without a JSON or msgpack
    content type, a value whose first non-blank byte is ``{`` or ``[`` is JSON (no msgpack
    map starts so). Raises :class:`CodecError` saying which decoder failed, why, and what
    came.

    >>> try:
    ...     decode_payload(b"[1, 2]")
    ... except CodecError as exc:
    ...     print(exc.message[:60])
    the value is a JSON array of 2 items, expected a JSON object
    """
    if not value:
        raise CodecError("the record has no value; expected a msgpack map or a JSON object "
                         "of fields")
    kind, why = _decoder(value, content_type)
    try:
        payload = (json.loads(value) if kind == JSON else
                   msgpack.unpackb(value, ext_hook=_ext_hook, raw=False, strict_map_key=False))
    except Exception as exc:
        text = (" (the bytes look like text, not msgpack)"
                if kind == MSGPACK and _looks_like_text(value) else "")
        raise CodecError(f"the value is not valid {_name(kind)} ({why}): {_failure(exc)}; "
                         f"got {describe_bytes(value)}{text}") from exc
    if not isinstance(payload, dict):
        expected = "a JSON object" if kind == JSON else "a msgpack map"
        raise CodecError(f"the value is {describe_value(payload, _name(kind))}, expected "
                         f"{expected} of fields ({why}); got {describe_bytes(value)}")
    return payload


def _decoder(value: bytes, content_type: str | None) -> tuple[str, str]:
    """The decoder for a value (JSON or MSGPACK) and why it was chosen."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == JSON or media.endswith("+json"):
        return JSON, f"content-type {content_type!r}"
    if media in (MSGPACK, "application/x-msgpack"):
        return MSGPACK, f"content-type {content_type!r}"
    said = (f"content-type {content_type!r} is neither JSON nor msgpack" if content_type
            else "no content-type header")
    opening = _JSON_START.match(value)
    if opening:
        return JSON, f"{said}; JSON by its leading {opening[1].decode()!r}"
    return MSGPACK, f"{said}; msgpack as it does not start with '{{' or '['"


def _name(kind: str) -> str:
    return "JSON" if kind == JSON else "msgpack"


def _looks_like_text(value: bytes) -> bool:
    head = value[:64]
    return head.isascii() and head.decode().replace("\n", " ").isprintable()


def _failure(exc: Exception) -> str:
    if isinstance(exc, msgpack.ExtraData):
        return (f"{describe_value(exc.unpacked, 'msgpack')} followed by "
                f"{count(len(exc.extra), 'more byte')} (several values, or bytes appended "
                "to one)")
    return exception_text(exc)


def to_jsonable(payload: Any) -> Any:
    """A payload with arrays as nested lists and bytes as base64, ready for json.dumps.

    >>> to_jsonable({"a": np.ones(2, dtype=np.float32)})
    {'a': [1.0, 1.0]}
    """
    return json.loads(json.dumps(payload, default=_jsonable))
