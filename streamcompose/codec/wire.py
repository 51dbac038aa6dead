"""The wire format of every streamcompose record.

* key: the request id (UTF-8), carried unchanged through every hop.
* value: a msgpack map of named fields. numpy arrays travel as msgpack extension type 1
  holding ``[dtype string, shape, raw bytes]``; nothing is ever pickled. A JSON object is
  accepted wherever a msgpack map is (for kcat or Java producers); results can be
  written as JSON, arrays as nested lists and bytes as base64 strings.
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
from typing import Any

import msgpack
import numpy as np

from streamcompose.errors import CodecError

MSGPACK = "application/msgpack"
JSON = "application/json"
NDARRAY_EXT = 1


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError("arrays of Python objects cannot be encoded")
        data = msgpack.packb([obj.dtype.str, list(obj.shape), np.ascontiguousarray(obj).tobytes()])
        return msgpack.ExtType(NDARRAY_EXT, data)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode a value of type {type(obj).__name__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code != NDARRAY_EXT:
        raise ValueError(f"unknown msgpack extension type {code}")
    dtype, shape, raw = msgpack.unpackb(data)
    return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape)


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
        if content_type == JSON:
            return json.dumps(payload, default=_jsonable, separators=(",", ":")).encode()
        return msgpack.packb(payload, default=_default, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode payload: {exc}") from exc


def decode_payload(value: bytes | None, content_type: str | None = None) -> dict[str, Any]:
    """Decode a record value into a payload map, msgpack or JSON (detected when the
    content type is not given). Raises :class:`CodecError` on anything else."""
    if not value:
        raise CodecError("the record has no value")
    is_json = content_type == JSON or (content_type is None and value.lstrip()[:1] == b"{")
    try:
        payload = (json.loads(value) if is_json else
                   msgpack.unpackb(value, ext_hook=_ext_hook, raw=False, strict_map_key=False))
    except Exception as exc:
        kind = "JSON" if is_json else "msgpack"
        raise CodecError(f"the value is not valid {kind}: {exc}") from exc
    if not isinstance(payload, dict):
        raise CodecError(f"the value must be a map of fields, got {type(payload).__name__}")
    return payload


def to_jsonable(payload: Any) -> Any:
    """A payload with arrays as nested lists and bytes as base64, ready for json.dumps.

    >>> to_jsonable({"a": np.ones(2, dtype=np.float32)})
    {'a': [1.0, 1.0]}
    """
    return json.loads(json.dumps(payload, default=_jsonable))
