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

from streamcompose.runtimes.base import Payload, RecordError, Result, Runtime, rename_outputs


@dataclass(frozen=True)
class TensorInput:
    """A model input: its name, the payload field bound to it, its dtype and the shape of
    one sample (``None`` for a dimension of any size, ``None`` shape for any shape)."""

    name: str
    field: str
    dtype: np.dtype
    shape: tuple[int | None, ...] | None


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


class TensorRuntime(Runtime):
    """A runtime whose model takes and returns named arrays with a batch axis first."""

    tensor_inputs: tuple[TensorInput, ...] = ()

    @abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on batched inputs; return batched outputs by output name."""

    def _bind(self, payload: Payload) -> dict[str, np.ndarray] | RecordError:
        feeds = {}
        for spec in self.tensor_inputs:
            if spec.field not in payload:
                return self.error(f"missing field {spec.field!r} (model input {spec.name!r}); "
                                  f"the payload has: {', '.join(sorted(payload)) or 'nothing'}")
            value = payload[spec.field]
            try:
                array = value if isinstance(value, np.ndarray) else np.asarray(value)
            except ValueError as exc:
                return self.error(f"field {spec.field!r} is not an array (model input "
                                  f"{spec.name!r}): {exc}")
            if array.dtype == object or not np.can_cast(array.dtype, spec.dtype, "same_kind"):
                return self.error(f"field {spec.field!r} has dtype {array.dtype}, model input "
                                  f"{spec.name!r} needs {spec.dtype}")
            if spec.shape is not None and (
                    array.ndim != len(spec.shape)
                    or any(d is not None and d != a for d, a in zip(spec.shape, array.shape,
                                                                     strict=True))):
                return self.error(f"field {spec.field!r} has shape {array.shape}, model input "
                                  f"{spec.name!r} needs {_shape_text(spec.shape)} per request")
            feeds[spec.name] = array.astype(spec.dtype, copy=False)
        return feeds

    def _infer_batch(self, payloads: list[Payload]) -> list[Result]:
        results: list[Result | None] = [None] * len(payloads)
        groups: dict[tuple, list[tuple[int, dict[str, np.ndarray]]]] = defaultdict(list)
        for i, payload in enumerate(payloads):
            bound = self._bind(payload)
            if isinstance(bound, RecordError):
                results[i] = bound
            else:
                groups[tuple(a.shape for a in bound.values())].append((i, bound))
        for members in groups.values():
            stacked = {name: np.stack([feeds[name] for _, feeds in members])
                       for name in members[0][1]}
            outputs = self._run(stacked)
            for name, value in outputs.items():
                if np.ndim(value) == 0 or len(value) != len(members):
                    raise RuntimeError(f"output {name!r} has shape {np.shape(value)}; expected "
                                       f"a first (batch) axis of {len(members)}")
            for j, (i, _) in enumerate(members):
                results[i] = rename_outputs(self.spec, {k: v[j] for k, v in outputs.items()})
        return results  # type: ignore[return-value]

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
