"""Where a tensor model runs: the device its spec asks for, what the machine offers, and
the fallback the topology allows.

``device: cuda[:N]`` needs what the runtime lacks on a machine without a GPU (torch's
CUDA, or onnxruntime-gpu's CUDA provider). Then the model does not load: the agent stops
with a :class:`~streamcompose.errors.ModelError` naming what is missing, unless the
model spec says ``fallback: cpu``, in which case a warning is logged and the model runs
on the CPU. Nothing ever runs on the CPU silently when a GPU was asked for.

>>> from streamcompose.topology.model import ModelSpec
>>> resolve_device(ModelSpec(runtime="torch", device="cuda:1"), None)
'cuda:1'
>>> resolve_device(ModelSpec(runtime="torch", device="cuda", fallback="cpu"), "no GPU")
'cpu'
>>> device_index("cuda:1"), device_index("cuda"), device_index("cpu")
(1, 0, 0)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from streamcompose.errors import ModelError
from streamcompose.topology.model import ModelSpec

log = logging.getLogger("streamcompose.runtimes")

#: environment variable naming the folder of TensorRT engine caches
ENGINE_CACHE_ENV = "STREAMCOMPOSE_ENGINE_CACHE"


def is_cuda(device: str) -> bool:
    """Whether a device name (``cpu``, ``cuda``, ``cuda:N``) names a GPU."""
    return device.startswith("cuda")


def device_index(device: str) -> int:
    """The GPU index of ``cuda:N`` (0 for ``cuda`` and ``cpu``)."""
    return int(device.partition(":")[2] or 0)


def resolve_device(spec: ModelSpec, missing: str | None, agent: str | None = None) -> str:
    """The device a model runs on: the one its spec asks for, unless that is a GPU and
    ``missing`` says what the machine lacks for it. Then ``fallback: cpu`` gives
    ``cpu`` with a logged warning, and without it a :class:`ModelError` is raised."""
    if not is_cuda(spec.device) or missing is None:
        return spec.device
    message = f"device {spec.device!r} asked for, but {missing}"
    if spec.fallback == "cpu":
        log.warning("agent %s: %s; running on the CPU as the model's 'fallback: cpu' allows",
                    agent or "-", message)
        return "cpu"
    raise ModelError(f"{message}; add 'fallback: cpu' to the model to run it on the CPU "
                     "instead", agent=agent, model=str(spec.path or spec.entrypoint))


def engine_cache_dir(spec: ModelSpec) -> Path:
    """Where TensorRT keeps the engines it builds for a model: ``$STREAMCOMPOSE_ENGINE_CACHE``
    when set, else the model file's folder.

    >>> engine_cache_dir(ModelSpec(runtime="onnx", path=Path("/m/encoder.onnx")))
    PosixPath('/m')
    """
    folder = os.environ.get(ENGINE_CACHE_ENV)
    if folder:
        return Path(folder)
    return spec.path.parent if spec.path is not None else Path.cwd()
