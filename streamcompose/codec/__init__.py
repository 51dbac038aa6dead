"""Encoding and decoding of record values, keys and headers."""

from streamcompose.codec.record import Trace, new_request_id
from streamcompose.codec.wire import JSON, MSGPACK, decode_payload, encode_payload, to_jsonable

__all__ = ["JSON", "MSGPACK", "Trace", "decode_payload", "encode_payload", "new_request_id",
           "to_jsonable"]
