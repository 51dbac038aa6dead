"""Bad input is dead-lettered with a reason that names its cause: which decoder failed on
what bytes, which field and model input refused which dtype or shape, how many values
were NaN or infinite. Unit tests of each message, then one run through the broker."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from fixtures import TOPOLOGIES, subscribe, trained, write_double_onnx

from streamcompose.codec import JSON, MSGPACK, decode_payload, encode_payload
from streamcompose.codec.deadletter import dead_letter_value
from streamcompose.codec.reasons import exception_text
from streamcompose.errors import CodecError
from streamcompose.runtimes import RecordError, Runtime, load_runtime
from streamcompose.runtimes.base import Payload, Result
from streamcompose.runtimes.tensor import cast_problem
from streamcompose.topology.model import ModelSpec

# ------------------------------------------------------------------------------ decoding


def codec_error(value: bytes, content_type: str | None = None) -> str:
    with pytest.raises(CodecError) as info:
        decode_payload(value, content_type)
    message = info.value.message
    assert message.strip() and not message.rstrip().endswith(":"), message
    return message


def test_msgpack_error_without_text_is_named_by_its_type() -> None:
    message = codec_error(b"\xc1\xc1")
    assert message.startswith("the value is not valid msgpack (no content-type header")
    assert "FormatError: Invalid msgpack format" in message
    assert message.endswith(r"got 2 bytes b'\xc1\xc1'")
    letter = decode_payload(dead_letter_value(b"\xc1\xc1", agent="a", topic="t", partition=0,
                                              offset=0, error=CodecError(message)))
    assert letter["error"] == message


@pytest.mark.parametrize("value", [b"[1, 2, 3]", b" \n\t[1, 2, 3]"])
def test_json_array_without_content_type_is_reported_as_json(value: bytes) -> None:
    message = codec_error(value)
    assert message.startswith("the value is a JSON array of 3 items, expected a JSON object "
                              "of fields (no content-type header; JSON by its leading '[')")
    assert "msgpack" not in message and "extra data" not in message


def test_truncated_msgpack_says_so_and_shows_the_bytes() -> None:
    value = encode_payload({"pixels": np.arange(64, dtype=np.float32)})[:-10]
    message = codec_error(value)
    assert "not valid msgpack" in message and "incomplete input" in message
    assert f"got {len(value)} bytes starting b'\\x81\\xa6pixels" in message


@pytest.mark.parametrize(("value", "said"), [
    (msgpack.packb({"x": 1}) + b"\x00\x00", "a msgpack map of 1 item followed by 2 more bytes"),
    (b"7,8,9\n", "the bytes look like text, not msgpack"),
])
def test_msgpack_with_more_than_one_value(value: bytes, said: str) -> None:
    assert said in codec_error(value)


@pytest.mark.parametrize(("value", "content_type", "what"), [
    (msgpack.packb(7), None, "a msgpack integer (7), expected a msgpack map of fields"),
    (msgpack.packb(b"\x00" * 5), MSGPACK, "a msgpack bin of 5 bytes, expected a msgpack map"),
    (msgpack.packb(None), None, "a msgpack nil (None), expected a msgpack map"),
    (b'"text"', JSON, "a JSON string ('text'), expected a JSON object of fields"),
    (b"true", JSON, "a JSON boolean (True), expected a JSON object"),
    (b"[{}]", JSON, "a JSON array of 1 item, expected a JSON object of fields (content-type "
                    "'application/json')"),
])
def test_value_that_is_not_a_map_says_what_it_decoded_to(value: bytes, content_type: str | None,
                                                         what: str) -> None:
    assert codec_error(value, content_type).startswith(f"the value is {what}")


def test_json_content_type_with_parameters_and_unknown_content_types() -> None:
    assert decode_payload(b'{"x": 1}', "application/json; charset=utf-8") == {"x": 1}
    assert decode_payload(msgpack.packb({"x": 1}), "application/octet-stream") == {"x": 1}
    message = codec_error(b"\xc1", "text/plain")
    assert "(content-type 'text/plain' is neither JSON nor msgpack; msgpack as" in message


def test_malformed_array_extension_names_the_array() -> None:
    bad = msgpack.packb(["<f4", [3, 3], np.zeros(2, np.float32).tobytes()])
    message = codec_error(msgpack.packb({"a": msgpack.ExtType(1, bad)}))
    assert "a malformed array (extension type 1, expected [dtype, shape, bytes]): cannot " \
        "reshape array of size 2 into shape (3,3)" in message


def test_encoding_error_names_the_field() -> None:
    with pytest.raises(CodecError, match="cannot encode field 'when' as JSON: cannot encode "
                                         "a value of type object as JSON"):
        encode_payload({"ok": 1, "when": object()}, JSON)


class Silent(Exception):
    pass


class Raising(Runtime):
    def _infer_batch(self, payloads: list[Payload]) -> list[Result]:
        raise Silent()


def test_exception_text_is_never_empty() -> None:
    assert exception_text(ValueError()) == ("ValueError: Inappropriate argument value (of "
                                            "correct type)")
    assert exception_text(Silent("loud"), typed=True) == "Silent: loud"
    (error,) = Raising(ModelSpec(runtime="python", entrypoint="m:f")).infer([{}])
    assert isinstance(error, RecordError) and error.message == "Silent (no description)"


# ----------------------------------------------------------------------------- tensors


@pytest.fixture
def float_model(tmp_path: Path) -> Path:
    """x float32 [N, 3] -> y = x * 2."""
    return write_double_onnx(tmp_path / "double.onnx")


@dataclass(frozen=True)
class NonfiniteSpec(ModelSpec):
    """A model spec with the ``allow_nonfinite`` flag the topology sets."""

    allow_nonfinite: bool = True


def run_one(model: Path, value: Any, spec_type: type[ModelSpec] = ModelSpec) -> Result:
    runtime = load_runtime(spec_type(runtime="onnx", path=model, input_map={"x": "pixels"}),
                           model.parent, "double")
    (result,) = runtime.infer([{"pixels": value}])
    return result


@pytest.mark.parametrize(("value", "received", "why"), [
    ([True, False, True], "bool", "booleans are not converted to numbers"),
    (np.array([1j, 2, 3], np.complex64), "complex64",
     "complex values are not converted to real numbers"),
    (["1", "2", "3"], "<U1", "strings are not parsed as numbers"),
    ([1.0, None, 3.0], "object",
     "some values are not numbers (null, a map, or an integer beyond 64 bits)"),
])
def test_float32_input_refuses(float_model: Path, value: Any, received: str, why: str) -> None:
    result = run_one(float_model, value)
    assert isinstance(result, RecordError)
    assert result.message == (f"field 'pixels' has dtype {received}, shape (3,); model input "
                              f"'x' needs float32, shape (3) per request: {why}")


@pytest.mark.parametrize("value", [[1, 2, 3], np.array([1, 2, 3], np.uint8),
                                   np.array([1, 2, 3], np.int64), [1.0, 2.0, 3.0],
                                   np.array([1, 2, 3], np.float16)])
def test_float32_input_accepts_integers_and_floats(float_model: Path, value: Any) -> None:
    result = run_one(float_model, value)
    assert not isinstance(result, RecordError), result
    assert result["y"].dtype == np.float32
    np.testing.assert_array_equal(result["y"], [2, 4, 6])


def test_wrong_shape_names_both_shapes(float_model: Path) -> None:
    result = run_one(float_model, [[1, 2, 3]])
    assert isinstance(result, RecordError)
    assert result.message == ("field 'pixels' has dtype int64, shape (1, 3); model input 'x' "
                              "needs float32, shape (3) per request: the shape differs")


@pytest.mark.parametrize(("value", "counted"), [
    ([1.0, math.nan, 3.0], "1 of 3 values are not finite (1 NaN, 0 infinite)"),
    ([math.inf, -math.inf, math.nan], "3 of 3 values are not finite (1 NaN, 2 infinite)"),
])
def test_nonfinite_values_are_refused(float_model: Path, value: list[float],
                                      counted: str) -> None:
    result = run_one(float_model, value)
    assert isinstance(result, RecordError)
    assert result.message == (f"field 'pixels' has dtype float64, shape (3,); model input 'x' "
                              f"needs float32, shape (3) per request: {counted}; the agent "
                              "does not accept NaN or infinity (allow_nonfinite: true would)")


def test_nonfinite_values_pass_when_allowed(float_model: Path) -> None:
    result = run_one(float_model, [1.0, math.nan, -math.inf], NonfiniteSpec)
    assert not isinstance(result, RecordError), result
    np.testing.assert_array_equal(result["y"], [2, math.nan, -math.inf])


def test_values_beyond_float32_are_refused_even_when_nonfinite_is_allowed(
        float_model: Path) -> None:
    result = run_one(float_model, [1e300, 1.0, math.nan], NonfiniteSpec)
    assert isinstance(result, RecordError)
    assert result.message.endswith("1 of 3 values are beyond the range of float32 "
                                   "(±3.40282e+38)")


def test_json_nan_reaches_the_check(float_model: Path) -> None:
    payload = decode_payload(b'{"pixels": [NaN, 1, Infinity]}')
    result = run_one(float_model, payload["pixels"])
    assert isinstance(result, RecordError)
    assert "2 of 3 values are not finite (1 NaN, 1 infinite)" in result.message


@pytest.mark.parametrize(("array", "dtype", "problem"), [
    (np.array([1, 2], np.int64), "float32", None),
    (np.array([1.5], np.float64), "float16", None),
    (np.array([True]), "bool", None),
    (np.array([1], np.int64), "bool", "only booleans feed a bool input"),
    (np.array([0.5]), "bool", "only booleans feed a bool input"),
    (np.array([1.5], np.float64), "int64", "floats are not truncated to integers"),
    (np.array([1 + 1j]), "complex64", None),
    (np.array([3, 200], np.int64), "uint8", None),
    (np.array([-1, 200], np.int64), "uint8", "values from -1 to 200 do not fit uint8 (0 to 255)"),
    (np.array([2**40], np.int64), "int32", "do not fit int32"),
    (np.array([], np.int64), "uint8", None),
    (np.array(["2024-01-01"], "datetime64[D]"), "float32", "dates are not numbers"),
])
def test_cast_rules(array: np.ndarray, dtype: str, problem: str | None) -> None:
    found = cast_problem(array, np.dtype(dtype))
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


# ------------------------------------------------------------------------ through Kafka

ONNX_AGENT = """
name: badinput
fields: [pixels]
agents:
  logreg:
    inputs: [$input]
    model:
      runtime: onnx
      path: MODEL
      input_map: {x: pixels}
      outputs: [proba]
      options: {intra_op_threads: 1}
"""


@pytest.mark.integration
def test_dead_letters_of_an_onnx_agent_name_the_cause(cli, deploy, write_topology, bootstrap,
                                                      tmp_path: Path) -> None:
    trained("digits")
    model = TOPOLOGIES / "models" / "digits_logreg.onnx"
    m = deploy(write_topology(ONNX_AGENT.replace("MODEL", str(model))))

    async def produce_raw() -> None:  # as kcat or a Java producer would: no headers
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        await producer.send_and_wait(m["input"], b"[1, 2, 3]", key=b"json-array")
        await producer.send_and_wait(m["input"], b"\xc1\x00", key=b"not-msgpack")
        await producer.stop()

    asyncio.run(produce_raw())
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps({"id": i, "pixels": v}) for i, v in [
        ("nan", [math.nan] + [0.0] * 62 + [math.inf]),
        ("bool", [True] * 64),
        ("good", [8] * 64)]))
    cli("publish", m["name"], "--file", str(events))

    letters = {r["id"]: r["payload"] for r in subscribe(cli, m["dlq"], 4)}
    assert set(letters) == {"json-array", "not-msgpack", "nan", "bool"}
    assert letters["json-array"]["error"].startswith(
        "the value is a JSON array of 3 items, expected a JSON object of fields (no "
        "content-type header")
    assert "FormatError: Invalid msgpack format" in letters["not-msgpack"]["error"]
    assert letters["nan"]["error"] == (
        "field 'pixels' has dtype float64, shape (64,); model input 'x' needs float32, shape "
        "(64) per request: 2 of 64 values are not finite (1 NaN, 1 infinite); the agent does "
        "not accept NaN or infinity (allow_nonfinite: true would)")
    assert letters["bool"]["error"] == (
        "field 'pixels' has dtype bool, shape (64,); model input 'x' needs float32, shape "
        "(64) per request: booleans are not converted to numbers")
    for letter in letters.values():
        assert letter["agent"] == "logreg" and letter["topic"] == m["input"]
        assert letter["error_type"] in ("CodecError", "RecordError")

    (result,) = subscribe(cli, m["name"], 1)
    assert result["id"] == "good" and len(result["payload"]["proba"]) == 10
