"""ONNX Runtime models.

The CPU provider is used unless ``device: cuda`` asks for a GPU; then TensorRT and CUDA
providers are tried in that order, where the installed onnxruntime has them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np

from streamcompose.errors import ModelError
from streamcompose.runtimes.tensor import TensorInput, TensorRuntime, numpy_dtype
from streamcompose.topology.fieldflow import ModelInfo
from streamcompose.topology.model import ModelSpec

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")

#: Why an onnx agent cannot start without ONNX Runtime, and the two ways to install it.
MISSING_ORT = ("ONNX Runtime is not installed; install one of (not both): "
               "pip install 'streamcompose[cpu]' (onnxruntime) or "
               "pip install 'streamcompose[gpu]' (onnxruntime-gpu)")


def import_onnxruntime(agent: str | None = None) -> ModuleType:
    """The ``onnxruntime`` module (installed by ``onnxruntime`` or ``onnxruntime-gpu``),
    or a :class:`ModelError` naming both install commands."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModelError(MISSING_ORT, agent=agent) from exc
    return onnxruntime


def select_providers(device: str, available: list[str]) -> list[str]:
    """Execution providers for a device, best first, CPU always last.

    >>> select_providers("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    ['CUDAExecutionProvider', 'CPUExecutionProvider']
    >>> select_providers("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    ['CPUExecutionProvider']
    """
    chosen = [p for p in GPU_PROVIDERS if p in available] if device.startswith("cuda") else []
    return [*chosen, "CPUExecutionProvider"]


class OnnxRuntime(TensorRuntime):
    """A model file run by ONNX Runtime; inputs and outputs are read from the file."""

    def __init__(self, spec: ModelSpec, agent: str | None = None) -> None:
        super().__init__(spec, agent)
        ort = import_onnxruntime(agent)

        providers = select_providers(spec.device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.log_severity_level = 3
        threads = spec.options.get("intra_op_threads")
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(spec.path), options, providers=providers)
        except Exception as exc:
            raise ModelError(f"cannot load ONNX model {spec.path}: {exc}", agent=agent,
                             model=str(spec.path)) from exc
        self.providers = self.session.get_providers()
        self.tensor_inputs = tuple(
            TensorInput(name=i.name, field=spec.input_map.get(i.name, i.name),
                        dtype=numpy_dtype(i.type),
                        shape=tuple(d if isinstance(d, int) else None for d in i.shape[1:]))
            for i in self.session.get_inputs())
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.output_shapes = {
            spec.output_map.get(o.name, o.name):
                tuple(d if isinstance(d, int) else None for d in o.shape[1:])
            for o in self.session.get_outputs()
            if o.shape and (spec.outputs is None or o.name in spec.outputs)}
        self.output_fields = tuple(spec.output_map.get(n, n) for n in self.output_names
                                   if spec.outputs is None or n in spec.outputs)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, feeds),
                        strict=True))


def describe(spec: ModelSpec, base_dir: Path) -> ModelInfo:
    """The inputs, outputs and output shapes an ONNX file declares, read from an
    inference session on the file (an ONNX file holds no Python code to run). The
    session is a CPU one whatever the device: describing puts nothing on a GPU."""
    rt = OnnxRuntime(replace(spec, device="cpu"))
    return ModelInfo(rt.input_fields, rt.output_fields, rt.output_shapes)


def load(spec: ModelSpec, base_dir: Path, agent: str | None) -> OnnxRuntime:
    """The runtime of an agent's ONNX model."""
    return OnnxRuntime(spec, agent)
