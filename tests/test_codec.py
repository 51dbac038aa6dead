"""The wire format: msgpack/JSON payloads and the trace carried in keys and headers."""

from __future__ import annotations

import base64
import json
import pickle
import re
from concurrent.futures import ThreadPoolExecutor

import msgpack
import numpy as np
import pytest

from streamcompose.codec import (
    JSON,
    MSGPACK,
    Trace,
    decode_payload,
    encode_payload,
    new_request_id,
    to_jsonable,
)
from streamcompose.codec.lineage import LineageStamp, read_lineage
from streamcompose.codec.record import CONTENT_TYPE, ENTERED, PATH, now_ms
from streamcompose.errors import CodecError, StreamComposeError

# ----------------------------------------------------------------------------- msgpack


@pytest.mark.parametrize("array", [
    np.arange(60, dtype=np.uint8).reshape(4, 5, 3),
    np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
    np.array([-(2**62), 0, 2**62 + 7], dtype=np.int64),
    np.array([[True, False], [False, True]]),
    np.array(3.5, dtype=np.float64),
    np.array([], dtype=np.int16).reshape(0, 4),
    np.array([1.5, -2.25], dtype=">f4"),
    np.array([1 + 2j, 3 - 4j], dtype=np.complex64),
    np.array([1, 2, 3], dtype=np.float16),
], ids=["uint8-image", "float32", "int64", "bool", "0-d", "empty", "big-endian", "complex",
        "float16"])
def test_msgpack_round_trips_arrays_exactly(array: np.ndarray) -> None:
    decoded = decode_payload(encode_payload({"a": array}))["a"]
    assert isinstance(decoded, np.ndarray)
    assert decoded.dtype == array.dtype
    assert decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)


def test_msgpack_round_trips_a_non_contiguous_slice() -> None:
    base = np.arange(48, dtype=np.float32).reshape(4, 12)
    view = base[::2, 1::3]
    assert not view.flags.c_contiguous
    decoded = decode_payload(encode_payload({"v": view}))["v"]
    assert decoded.shape == (2, 4)
    np.testing.assert_array_equal(decoded, view)
    transposed = base.T
    np.testing.assert_array_equal(decode_payload(encode_payload({"t": transposed}))["t"],
                                  transposed)


def test_big_endian_array_keeps_its_byte_order_and_values() -> None:
    array = np.array([1.0, 2.5, -3.0], dtype=">f4")
    decoded = decode_payload(encode_payload({"x": array}))["x"]
    assert decoded.dtype.str == ">f4"
    assert decoded.tolist() == [1.0, 2.5, -3.0]


def test_msgpack_round_trips_bytes_strings_and_nested_structures() -> None:
    payload = {
        "raw": b"\x00\xff\x10binary",
        "text": "héllo",
        "n": 42,
        "f": 0.125,
        "none": None,
        "flag": True,
        "nested": {"list": [1, "two", [3.0, {"deep": b"\x01"}]], "arr": np.ones(2, np.int8)},
    }
    decoded = decode_payload(encode_payload(payload))
    assert decoded["raw"] == b"\x00\xff\x10binary"
    assert isinstance(decoded["raw"], bytes)
    assert decoded["text"] == "héllo"
    assert (decoded["n"], decoded["f"], decoded["none"], decoded["flag"]) == (42, 0.125, None,
                                                                               True)
    assert decoded["nested"]["list"] == [1, "two", [3.0, {"deep": b"\x01"}]]
    np.testing.assert_array_equal(decoded["nested"]["arr"], np.ones(2, np.int8))
    assert decoded["nested"]["arr"].dtype == np.int8


def test_numpy_scalars_become_plain_python_values() -> None:
    payload = {"i": np.int32(-7), "u": np.uint8(200), "f": np.float32(0.5),
               "d": np.float64(2.25), "b": np.bool_(True)}
    decoded = decode_payload(encode_payload(payload))
    assert decoded == {"i": -7, "u": 200, "f": 0.5, "d": 2.25, "b": True}
    assert type(decoded["i"]) is int
    assert type(decoded["b"]) is bool


def test_arrays_travel_as_extension_type_one_without_pickle() -> None:
    encoded = encode_payload({"a": np.arange(3, dtype=np.int16)})
    raw = msgpack.unpackb(encoded)  # no ext_hook: see the raw wire structure
    ext = raw["a"]
    assert isinstance(ext, msgpack.ExtType)
    assert ext.code == 1
    dtype, shape, data = msgpack.unpackb(ext.data)
    assert (dtype, shape) == ("<i2", [3])
    assert data == np.arange(3, dtype=np.int16).tobytes()
    assert b"numpy" not in encoded  # nothing pickled


def test_decoded_arrays_are_usable() -> None:
    decoded = decode_payload(encode_payload({"a": np.zeros((2, 2), np.float32)}))["a"]
    assert float((decoded + 1).sum()) == 4.0


# -------------------------------------------------------------------------------- JSON


def test_json_object_value_is_auto_detected() -> None:
    assert decode_payload(b'{"x": [1, 2], "s": "t"}') == {"x": [1, 2], "s": "t"}
    assert decode_payload(b'  \n {"a": {"b": null}}') == {"a": {"b": None}}


def test_json_with_content_type() -> None:
    assert decode_payload(b'{"k": 1.5}', JSON) == {"k": 1.5}
    with pytest.raises(CodecError, match="not valid JSON"):
        decode_payload(b"\x81\xa1k\x01", JSON)  # msgpack bytes labelled as JSON


def test_msgpack_content_type_is_not_parsed_as_json() -> None:
    with pytest.raises(CodecError, match="not valid msgpack"):
        decode_payload(b'{"x": 1}', MSGPACK)
    assert decode_payload(encode_payload({"x": 1}), MSGPACK) == {"x": 1}


def test_json_encoding_uses_lists_and_base64() -> None:
    payload = {"img": np.arange(6, dtype=np.uint8).reshape(2, 3), "raw": b"\x00\x01\xfe",
               "f": np.float32(1.5), "nested": [{"v": np.array([True])}]}
    text = encode_payload(payload, JSON)
    assert text.startswith(b"{") and b" " not in text  # compact separators
    data = json.loads(text)
    assert data["img"] == [[0, 1, 2], [3, 4, 5]]
    assert base64.b64decode(data["raw"]) == b"\x00\x01\xfe"
    assert data["f"] == 1.5
    assert data["nested"] == [{"v": [True]}]
    # and it decodes back through decode_payload (arrays as lists)
    assert decode_payload(text)["img"] == [[0, 1, 2], [3, 4, 5]]


def test_to_jsonable() -> None:
    out = to_jsonable({"a": np.ones(2, dtype=np.float32), "b": b"hi", "c": [np.int64(3)],
                       "d": "x"})
    assert out == {"a": [1.0, 1.0], "b": base64.b64encode(b"hi").decode(), "c": [3], "d": "x"}
    json.dumps(out)  # plain JSON types only


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("value", [b"", None])
def test_empty_value_is_rejected(value: bytes | None) -> None:
    with pytest.raises(CodecError, match="has no value"):
        decode_payload(value)


@pytest.mark.parametrize("value", [b"\xc1\xc1\xc1", b"\x81\xa1", b"\x92\x01"])
def test_garbage_bytes_are_rejected_as_msgpack(value: bytes) -> None:
    with pytest.raises(CodecError, match="not valid msgpack"):
        decode_payload(value)


def test_truncated_json_is_rejected() -> None:
    with pytest.raises(CodecError, match="not valid JSON"):
        decode_payload(b'{"x": [1, 2')


@pytest.mark.parametrize(("value", "kind"), [
    (msgpack.packb([1, 2, 3]), "a msgpack array of 3 items, expected a msgpack map"),
    (msgpack.packb("text"), "a msgpack string ('text'), expected a msgpack map"),
    (msgpack.packb(7), "a msgpack integer (7), expected a msgpack map"),
    (b"[1, 2]", "a JSON array of 2 items, expected a JSON object"),
])
def test_value_that_is_not_a_map_is_rejected(value: bytes, kind: str) -> None:
    with pytest.raises(CodecError, match=re.escape(f"the value is {kind} of fields")):
        decode_payload(value, JSON if value.startswith(b"[") else None)


def test_object_dtype_array_cannot_be_encoded() -> None:
    with pytest.raises(CodecError, match="arrays of Python objects cannot be encoded"):
        encode_payload({"a": np.array([{"x": 1}, None], dtype=object)})


def test_unknown_extension_type_is_rejected() -> None:
    value = msgpack.packb({"a": msgpack.ExtType(5, b"xyz")})
    with pytest.raises(CodecError, match="unknown msgpack extension type 5"):
        decode_payload(value)


def test_malformed_array_extension_is_rejected() -> None:
    bad_shape = msgpack.packb(["<f4", [3, 3], np.zeros(2, np.float32).tobytes()])
    with pytest.raises(CodecError, match="not valid msgpack"):
        decode_payload(msgpack.packb({"a": msgpack.ExtType(1, bad_shape)}))
    object_dtype = msgpack.packb(["|O", [1], b"\x00" * 8])
    with pytest.raises(CodecError, match="not valid msgpack"):
        decode_payload(msgpack.packb({"a": msgpack.ExtType(1, object_dtype)}))


class Custom:
    def __reduce__(self):  # would run on unpickling: must never be pickled
        raise AssertionError("pickled")


@pytest.mark.parametrize("content_type", [MSGPACK, JSON])
def test_custom_objects_are_never_pickled(content_type: str) -> None:
    with pytest.raises(CodecError, match="cannot encode a value of type Custom") as info:
        encode_payload({"obj": Custom()}, content_type)
    assert isinstance(info.value, StreamComposeError)


def test_pickled_bytes_are_not_unpickled() -> None:
    with pytest.raises(CodecError):
        decode_payload(pickle.dumps({"a": 1}))


def test_codec_error_carries_location_context() -> None:
    exc = CodecError("bad", topic="t", partition=1, offset=9)
    assert (exc.topic, exc.partition, exc.offset) == ("t", 1, 9)
    assert str(exc) == "bad"


# ------------------------------------------------------------------------------- trace


def test_trace_headers_round_trip() -> None:
    trace = Trace(request_id="req-1", entered_ms=1_700_000_000_123, path=("det", "rec"),
                  extra=(("x-user", b"alice"),))
    headers = trace.headers(JSON)
    assert headers == [(CONTENT_TYPE, b"application/json"), (ENTERED, b"1700000000123"),
                       (PATH, b"det,rec"), ("x-user", b"alice")]
    back = Trace.from_record(trace.key, headers)
    assert back == Trace(request_id="req-1", entered_ms=1_700_000_000_123,
                         path=("det", "rec"), content_type=JSON,
                         extra=(("x-user", b"alice"),))


def test_default_header_content_type_is_msgpack() -> None:
    headers = dict(Trace(request_id="r", entered_ms=1).headers())
    assert headers[CONTENT_TYPE] == MSGPACK.encode()
    assert headers[PATH] == b""
    assert Trace.from_record(b"r", list(headers.items())).path == ()


def test_key_none_gets_a_fresh_request_id() -> None:
    before = now_ms()
    a = Trace.from_record(None, None)
    b = Trace.from_record(b"", [])
    after = now_ms()
    for t in (a, b):
        assert re.fullmatch(r"[0-9a-f]{32}", t.request_id)
        assert before <= t.entered_ms <= after
        assert (t.path, t.content_type, t.extra) == ((), None, ())
    assert a.request_id != b.request_id
    assert re.fullmatch(r"[0-9a-f]{32}", new_request_id())


def test_key_is_utf8_request_id() -> None:
    t = Trace.from_record("clé-1".encode(), [])
    assert t.request_id == "clé-1"
    assert t.key == "clé-1".encode()
    # undecodable bytes are replaced, not fatal
    assert Trace.from_record(b"\xffid", []).request_id == "\ufffdid"


def test_passed_appends_to_path_without_mutating() -> None:
    t = Trace(request_id="r", entered_ms=5)
    t1 = t.passed("a")
    t2 = t1.passed("b")
    assert (t.path, t1.path, t2.path) == ((), ("a",), ("a", "b"))
    assert (t2.request_id, t2.entered_ms) == ("r", 5)
    assert dict(t2.headers())[PATH] == b"a,b"


def test_unknown_headers_are_preserved_in_extra_in_order() -> None:
    headers = [("traceparent", b"00-abc-01"), (ENTERED, b"10"), ("x-b", b"2"),
               (PATH, b"a"), ("x-a", b"1")]
    t = Trace.from_record(b"k", headers)
    assert t.extra == (("traceparent", b"00-abc-01"), ("x-b", b"2"), ("x-a", b"1"))
    assert t.entered_ms == 10
    assert t.path == ("a",)
    out = t.passed("b").headers()
    assert out[3:] == list(t.extra)
    assert dict(out)[PATH] == b"a,b"


@pytest.mark.parametrize("bad", [b"not-a-number", b"1.5e3", b"", b"\xff"])
def test_bad_entered_header_is_tolerated(bad: bytes) -> None:
    before = now_ms()
    t = Trace.from_record(b"k", [(ENTERED, bad), (PATH, b"x")])
    assert before <= t.entered_ms <= now_ms()
    assert t.path == ("x",)


def test_empty_path_segments_are_dropped() -> None:
    assert Trace.from_record(b"k", [(PATH, b",a,,b,")]).path == ("a", "b")


def test_undecodable_path_and_content_type_headers_do_not_raise() -> None:
    """A record with garbage headers must reach the dead-letter path, not crash the worker."""
    t = Trace.from_record(b"k", [(PATH, b"a,\xff"), (CONTENT_TYPE, b"\xfe")])
    assert t.path == ("a", "\ufffd")
    assert t.content_type == "\ufffd"
    with pytest.raises(CodecError):
        decode_payload(b"\xc1", t.content_type)


def test_header_with_null_value_is_tolerated() -> None:
    t = Trace.from_record(b"k", [(ENTERED, None), (PATH, None), ("x-null", None)])
    assert t.path == ()
    assert t.extra == (("x-null", None),)


def test_a_lineage_entry_is_encoded_once_per_batch_and_never_reused_for_another(
        monkeypatch: pytest.MonkeyPatch) -> None:
    encodings = []
    dumps = json.dumps
    monkeypatch.setattr(json, "dumps", lambda *a, **k: encodings.append(a) or dumps(*a, **k))
    stamp = LineageStamp("cnn", "3", replica=0)
    carried = [("sc-lineage", b'[{"agent":"pre"}]')]
    first, second = stamp.next_batch(2), stamp.next_batch(1)
    stamped = [stamp.stamp(carried, e) for e in (first, first, second)]
    assert len(encodings) == 2  # once for the two records of the first batch
    batches = [read_lineage(h)[-1]["batch"] for h in stamped]
    assert batches == [first["batch"], first["batch"], second["batch"]]
    cached = {**first, "cached": True}  # equal keys but one more: its own encoding
    assert read_lineage(stamp.stamp(carried, cached))[-1] == cached
    assert [e["agent"] for e in read_lineage(stamp.stamp(carried, first, second))] == [
        "pre", "cnn", "cnn"]
    encodings.clear()  # a client's requests carry no lineage: the same, once per batch
    fresh = [stamp.stamp(headers, first) for headers in ([("x", b"1")], [], [("y", b"")])]
    assert len(encodings) == 1 and all(read_lineage(h) == [first] for h in fresh)
    assert read_lineage(stamp.stamp([("sc-lineage", b"[]")], first)) == [first]


def test_threads_packing_at_once_each_get_their_own_bytes():
    """Every thread packs with packers of its own: payloads of arrays packed at once on
    four threads, some over the size after which a packer is dropped, decode as sent."""
    payloads = [{"i": i, "x": np.full(i % 7 * 40_000 + 1, i, np.float32)} for i in range(64)]

    def round_trip(payload):
        return decode_payload(encode_payload(payload))

    with ThreadPoolExecutor(4) as pool:
        for payload, back in zip(payloads * 4, pool.map(round_trip, payloads * 4), strict=True):
            assert back["i"] == payload["i"]
            np.testing.assert_array_equal(back["x"], payload["x"])
