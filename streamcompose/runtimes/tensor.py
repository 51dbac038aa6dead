"""Binding payload fields to tensor inputs, and micro-batch stacking.

Each payload holds one sample per model input (no batch dimension). Payloads whose
inputs have the same shapes are stacked into one model call along a new first axis; the
outputs are split back along that axis, one per payload.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamcompose.codec.reasons import exception_text
from streamcompose.runtimes.base import Payload, RecordError, Result, Runtime, rename_outputs
from streamcompose.topology.model import ModelSpec


@dataclass(frozen=True)
class TensorInput:
    """A model input: its name, the payload field bound to it, its dtype and the shape of
    one sample (``None`` for a dimension of any size, ``None`` shape for any shape)."""

    name: str
    field: str
    dtype: np.dtype
    shape: tuple[int | None, ...] | None

    def needs(self) -> str:
        """What the input takes, as messages say it."""
        shape = "any shape" if self.shape is None else f"shape {_shape_text(self.shape)}"
        return f"model input {self.name!r} needs {self.dtype}, {shape} per request"


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


#: the kinds of values (numpy dtype kinds) each kind of model input accepts: integers and
#: floats into a float input (JSON numbers arrive as int64 or float64), integers into an
#: integer input when the values fit; never a boolean into a number, a complex into a
#: real, a float into an integer, nor text or Python objects into anything
ACCEPTS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf", "c": "iufc"}
REFUSED = {
    "b": "booleans are not converted to numbers",
    "c": "complex values are not converted to real numbers",
    "f": "floats are not truncated to integers",
    "O": "some values are not numbers (null, a map, or an integer beyond 64 bits)",
    "U": "strings are not parsed as numbers",
    "S": "bytes are not read as numbers",
    "M": "dates are not numbers",
    "m": "durations are not numbers",
}


def cast_problem(array: np.ndarray, dtype: np.dtype) -> str | None:
    """Why ``array`` cannot feed an input of ``dtype``, or ``None`` when it can.

    >>> cast_problem(np.array([1, 2]), np.dtype("float32")) is None
    True
    >>> cast_problem(np.array([True]), np.dtype("float32"))
    'booleans are not converted to numbers'
    >>> cast_problem(np.array([300]), np.dtype("uint8"))
    'values from 300 to 300 do not fit uint8 (0 to 255)'
    """
    src = array.dtype
    if src.kind not in ACCEPTS.get(dtype.kind, dtype.kind):
        if dtype.kind == "b" and src.kind in "iufc":
            return "only booleans feed a bool input"
        return REFUSED.get(src.kind, f"{src} is not converted to {dtype}")
    if src.kind in "iu" and dtype.kind in "iu" and array.size and not np.can_cast(src, dtype):
        low, high, info = array.min(), array.max(), np.iinfo(dtype)
        if low < info.min or high > info.max:
            return f"values from {low} to {high} do not fit {dtype} ({info.min} to {info.max})"
    return None


def count_nonfinite(array: np.ndarray) -> int:
    """How many of an array's values are NaN or infinite.

    >>> count_nonfinite(np.array([1.0, np.nan, -np.inf])), count_nonfinite(np.arange(3))
    (2, 0)
    """
    return int((~np.isfinite(array)).sum()) if array.dtype.kind in "fc" else 0


def _check_batch_axis(outputs: dict[str, np.ndarray], size: int) -> None:
    """Raise unless every output has a first (batch) axis of ``size``."""
    for name, value in outputs.items():
        if np.ndim(value) == 0 or len(value) != size:
            raise RuntimeError(f"output {name!r} has shape {np.shape(value)}; expected "
                               f"a first (batch) axis of {size}")


class TensorRuntime(Runtime):
    """A runtime whose model takes and returns named arrays with a batch axis first.

    Inputs are checked before any model call: each field must convert to its input's
    dtype by the rules of :data:`ACCEPTS`, have its shape, and hold only finite numbers
    unless ``allow_nonfinite`` (read from the model spec) is true.
    """

    tensor_inputs: tuple[TensorInput, ...] = ()
    #: accept NaN and infinite values in float inputs
    allow_nonfinite: bool = False

    def __init__(self, spec: ModelSpec, agent: str | None = None) -> None:
        super().__init__(spec, agent)
        self.allow_nonfinite = bool(getattr(spec, "allow_nonfinite", False))

    @abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on batched inputs; return batched outputs by output name."""

    def _submit(self, feeds: dict[str, np.ndarray]) -> Any:
        """Start a model call; :meth:`_collect` gives its outputs. A runtime that queues
        work on a device starts every call of a batch before waiting for the first."""
        return self._run(feeds)

    def _collect(self, submitted: Any) -> dict[str, np.ndarray]:
        """The outputs of a call :meth:`_submit` started, once it has finished."""
        return submitted

    def _bind(self, payload: Payload) -> dict[str, np.ndarray] | RecordError:
        feeds = {}
        for spec in self.tensor_inputs:
            if spec.field not in payload:
                return self.error(f"missing field {spec.field!r} (model input {spec.name!r}); "
                                  f"the payload has: {', '.join(sorted(payload)) or 'nothing'}")
            value = payload[spec.field]
            try:
                array = value if isinstance(value, np.ndarray) else np.asarray(value)
            except (TypeError, ValueError) as exc:
                return self.error(f"field {spec.field!r} is not an array; {spec.needs()}: "
                                  f"{exception_text(exc)}")
            feed = self._convert(spec, array)
            if isinstance(feed, str):
                return self.error(f"field {spec.field!r} has dtype {array.dtype}, shape "
                                  f"{array.shape}; {spec.needs()}: {feed}")
            feeds[spec.name] = feed
        return feeds

    def _convert(self, spec: TensorInput, array: np.ndarray,
                 batched: bool = False) -> np.ndarray | str:
        """The array (one sample, or ``batched`` samples along a first axis) cast to the
        input's dtype, or why it cannot be."""
        problem = cast_problem(array, spec.dtype)
        if problem:
            return problem
        sample = array.shape[1:] if batched else array.shape
        if spec.shape is not None and (
                len(sample) != len(spec.shape)
                or any(d is not None and d != a for d, a in zip(spec.shape, sample,
                                                                 strict=True))):
            return "the shape differs"
        nonfinite = count_nonfinite(array)
        if nonfinite and not self.allow_nonfinite:
            nans = int(np.isnan(array).sum())
            return (f"{nonfinite} of {array.size} values are not finite ({nans} NaN, "
                    f"{nonfinite - nans} infinite); the agent does not accept NaN or infinity "
                    "(allow_nonfinite: true would)")
        with np.errstate(over="ignore"):
            feed = array.astype(spec.dtype, copy=False)
        if spec.dtype.kind in "fc" and not np.can_cast(array.dtype, spec.dtype):
            overflow = count_nonfinite(feed) - nonfinite
            if overflow:
                return (f"{overflow} of {array.size} values are beyond the range of "
                        f"{spec.dtype} (±{np.finfo(spec.dtype).max:g})")
        return feed

    def _bind_all(self, payloads: list[Payload]) -> dict[str, np.ndarray] | None:
        """The whole batch's feeds, checked at once, when each input's field is an array of
        one dtype and shape in every payload and they all bind; otherwise None, and each
        payload is bound on its own, which says which one is wrong and why (lists are
        always bound one by one: stacked together, a list of booleans would pass as
        numbers)."""
        feeds = {}
        for spec in self.tensor_inputs:
            try:
                values = [payload[spec.field] for payload in payloads]
                dtype = values[0].dtype
                if not all(type(v) is np.ndarray and v.dtype == dtype for v in values):
                    return None
                array = np.stack(values)
            except (AttributeError, KeyError, ValueError):
                return None
            feed = self._convert(spec, array, batched=True)
            if isinstance(feed, str):
                return None
            feeds[spec.name] = feed
        return feeds

    def bind(self, payloads: list[Payload]) -> dict[str, np.ndarray] | None:
        return self._bind_all(payloads) if self.tensor_inputs else None

    def run_bound(self, bound: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._collect(self._submit(bound))
        _check_batch_axis(outputs, len(next(iter(bound.values()))))
        return outputs

    def unbind(self, outputs: dict[str, np.ndarray], size: int) -> list[Result]:
        return self._split(outputs, size)

    def _infer_batch(self, payloads: list[Payload]) -> list[Result]:
        stacked = self._bind_all(payloads)
        if stacked is not None:
            return self._split(self.run_bound(stacked), len(payloads))
        results: list[Result | None] = [None] * len(payloads)
        groups: dict[tuple, list[tuple[int, dict[str, np.ndarray]]]] = defaultdict(list)
        for i, payload in enumerate(payloads):
            bound = self._bind(payload)
            if isinstance(bound, RecordError):
                results[i] = bound
            else:
                groups[tuple(a.shape for a in bound.values())].append((i, bound))
        calls = []  # every group's call is started before the first one is waited for
        for members in groups.values():
            stacked = {name: np.stack([feeds[name] for _, feeds in members])
                       for name in members[0][1]}
            calls.append((members, self._submit(stacked)))
        for members, call in calls:
            outputs = self._collect(call)
            _check_batch_axis(outputs, len(members))
            split = self._split(outputs, len(members))
            for (i, _), result in zip(members, split, strict=True):
                results[i] = result
        return results  # type: ignore[return-value]

    def _split(self, outputs: dict[str, np.ndarray], size: int) -> list[Result]:
        """One call's batched ``outputs``, whose batch axis of ``size`` is checked, as one
        result per sample."""
        kept = rename_outputs(self.spec, outputs)  # named once for the whole call
        return [{name: value[j] for name, value in kept.items()} for j in range(size)]

    def warmup(self) -> None:
        sample = {s.field: np.zeros(tuple(1 if d is None else d for d in (s.shape or ())),
                                    dtype=s.dtype) for s in self.tensor_inputs}
        self._run({s.name: sample[s.field][None] for s in self.tensor_inputs})

    @property
    def input_fields(self) -> tuple[str, ...]:  # type: ignore[override]
        return tuple(s.field for s in self.tensor_inputs)


def numpy_dtype(name: Any) -> np.dtype:
    """A numpy dtype from an ONNX type string such as ``tensor(float)`` or a dtype name.

    >>> numpy_dtype("tensor(float)"), numpy_dtype("int64")
    (dtype('float32'), dtype('int64'))
    """
    text = str(name)
    if text.startswith("tensor("):
        text = text[len("tensor("):-1]
        text = {"float": "float32", "double": "float64", "float16": "float16"}.get(text, text)
    return np.dtype(text)
