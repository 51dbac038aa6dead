"""ONNX Runtime models.

The CPU provider is used unless ``device: cuda[:N]`` asks for a GPU; then the TensorRT
and CUDA providers are tried in that order, where the installed onnxruntime has them
(onnxruntime-gpu), on GPU N. TensorRT keeps the engines it builds in
:func:`~streamcompose.runtimes.device.engine_cache_dir` (``$STREAMCOMPOSE_ENGINE_CACHE``,
else the model's folder), so a restarted worker does not build them again. Without the
CUDA provider, or when it fails to start (CUDA or cuDNN libraries missing), the model
does not load unless its spec says ``fallback: cpu`` (:mod:`~streamcompose.runtimes.device`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np

from streamcompose.errors import ModelError
from streamcompose.runtimes.device import device_index, engine_cache_dir, resolve_device
from streamcompose.runtimes.tensor import TensorInput, TensorRuntime, numpy_dtype
from streamcompose.topology.fieldflow import ModelInfo
from streamcompose.topology.model import ModelSpec

TENSORRT, CUDA = "TensorrtExecutionProvider", "CUDAExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)

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


def provider_options(providers: list[str], device: str, cache: Path) -> list[dict[str, str]]:
    """The options of each provider: the GPU index, and TensorRT's engine cache.

    >>> provider_options([CUDA, "CPUExecutionProvider"], "cuda:1", Path("/c"))
    [{'device_id': '1'}, {}]
    """
    gpu = {"device_id": str(device_index(device))}
    options = {TENSORRT: {**gpu, "trt_engine_cache_enable": "True",
                          "trt_engine_cache_path": str(cache)}, CUDA: gpu}
    return [options.get(p, {}) for p in providers]


class OnnxRuntime(TensorRuntime):
    """A model file run by ONNX Runtime; inputs and outputs are read from the file."""

    def __init__(self, spec: ModelSpec, agent: str | None = None) -> None:
        super().__init__(spec, agent)
        ort = import_onnxruntime(agent)

        available = ort.get_available_providers()
        self.device = resolve_device(spec, None if CUDA in available else (
            f"onnxruntime {ort.__version__} has no {CUDA} (it has {', '.join(available)}); "
            "install onnxruntime-gpu"), agent)
        providers = select_providers(self.device, available)
        cache = engine_cache_dir(spec)
        if TENSORRT in providers:
            cache.mkdir(parents=True, exist_ok=True)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        threads = spec.options.get("intra_op_threads")
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(
                str(spec.path), options, providers=providers,
                provider_options=provider_options(providers, self.device, cache))
        except Exception as exc:
            raise ModelError(f"cannot load ONNX model {spec.path}: {exc}", agent=agent,
                             model=str(spec.path)) from exc
        self.providers = self.session.get_providers()
        if CUDA in providers and CUDA not in self.providers:  # it failed to start
            self.device = resolve_device(spec, f"onnxruntime could not start its {CUDA} "
                                         "(CUDA or cuDNN libraries missing?)", agent)
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
