"""Model runtimes: ONNX Runtime, PyTorch and plain Python.

>>> from streamcompose.topology.model import ModelSpec
>>> rt = load_runtime(ModelSpec(runtime="python", entrypoint="copy:copy"), ".")
>>> rt.infer([{"x": 1}, {"x": 2}])
[{'x': 1}, {'x': 2}]
"""

from __future__ import annotations

from pathlib import Path

from streamcompose.runtimes.base import Payload, RecordError, Result, Runtime
from streamcompose.topology.model import ModelSpec

__all__ = ["Payload", "RecordError", "Result", "Runtime", "describe_model", "load_runtime"]


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


def describe_model(spec: ModelSpec, base_dir: str | Path
                   ) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """The payload fields a model reads and writes, ``None`` where unknown.

    Loads the model (checking that its file or entrypoint works) without warming it up.
    """
    runtime = load_runtime(spec, base_dir)
    return runtime.input_fields, runtime.output_fields
