"""Model runtimes: ONNX Runtime, PyTorch and plain Python.

>>> from streamcompose.topology.model import ModelSpec
>>> rt = load_runtime(ModelSpec(runtime="python", entrypoint="copy:copy"), ".")
>>> rt.infer([{"x": 1}, {"x": 2}])
[{'x': 1}, {'x': 2}]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streamcompose.runtimes.base import Payload, RecordError, Result, Runtime
from streamcompose.topology.model import ModelSpec

__all__ = ["ModelInfo", "Payload", "RecordError", "Result", "Runtime", "describe_model",
           "load_runtime"]


def load_runtime(spec: ModelSpec, base_dir: str | Path, agent: str | None = None) -> Runtime:
    """Load the model an agent runs. Python entrypoints import from ``base_dir``."""
    base = Path(base_dir)
    if spec.runtime == "onnx":
        from streamcompose.runtimes.onnx_runtime import OnnxRuntime

        return OnnxRuntime(spec, agent)
    if spec.runtime == "torch":
        from streamcompose.runtimes.torch_runtime import TorchRuntime

        return TorchRuntime(spec, base, agent)
    from streamcompose.runtimes.python_runtime import PythonRuntime

    return PythonRuntime(spec, base, agent)


@dataclass(frozen=True)
class ModelInfo:
    """What is known of a model before running it: the payload fields it reads and
    writes (``None`` where unknown) and the per-request shapes of its outputs (by field,
    where the model file declares them)."""

    inputs: tuple[str, ...] | None
    outputs: tuple[str, ...] | None
    shapes: Mapping[str, tuple[int | None, ...]] = field(default_factory=dict)


def describe_model(spec: ModelSpec, base_dir: str | Path) -> ModelInfo:
    """Load a model (checking that its file or entrypoint works), without warming it up,
    and say what it reads and writes."""
    runtime = load_runtime(spec, base_dir)
    return ModelInfo(runtime.input_fields, runtime.output_fields,
                     dict(getattr(runtime, "output_shapes", {})))
