"""Model runtimes: ONNX Runtime, PyTorch and plain Python, and the model check of a
topology.

Each runtime is one module offering ``load(spec, base_dir, agent)``, the runtime an
agent's worker runs, and ``describe(spec, base_dir)``, what validation needs to know of
the model (:class:`ModelInfo`) without running any user code. A runtime module is
imported only when a model of its kind is loaded or described, so an ONNX or python
agent never imports torch.

:func:`check_models` is what :func:`~streamcompose.topology.load_topology` leaves out
because it needs the models; ``streamcompose validate``, ``graph`` and ``deploy`` run
it on the loaded topology: ``topology = check_models(load_topology(path))``.

>>> from streamcompose.topology.model import RUNTIMES, ModelSpec
>>> rt = load_runtime(ModelSpec(runtime="python", entrypoint="copy:copy"), ".")
>>> rt.infer([{"x": 1}, {"x": 2}])
[{'x': 1}, {'x': 2}]
>>> sorted(RUNTIME_MODULES) == sorted(RUNTIMES)
True
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from streamcompose.errors import ModelError, StreamComposeError
from streamcompose.runtimes.base import Payload, RecordError, Result, Runtime, import_callable
from streamcompose.topology.fieldflow import ModelInfo, check_field_flow, model_specs
from streamcompose.topology.model import ModelSpec, Topology

__all__ = ["RUNTIME_MODULES", "ModelInfo", "Payload", "RecordError", "Result", "Runtime",
           "check_models", "describe_model", "load_runtime"]

#: the module implementing each runtime
RUNTIME_MODULES = {"onnx": "streamcompose.runtimes.onnx_runtime",
                   "torch": "streamcompose.runtimes.torch_runtime",
                   "python": "streamcompose.runtimes.python_runtime"}


def _module(spec: ModelSpec) -> ModuleType:
    name = RUNTIME_MODULES.get(spec.runtime)
    if name is None:
        raise ModelError(f"unknown runtime {spec.runtime!r} (expected one of: "
                         f"{', '.join(RUNTIME_MODULES)})", model=str(spec.path or
                                                                    spec.entrypoint))
    return importlib.import_module(name)


def load_runtime(spec: ModelSpec, base_dir: str | Path, agent: str | None = None) -> Runtime:
    """Load the model an agent runs. Python entrypoints import from ``base_dir``."""
    return _module(spec).load(spec, Path(base_dir), agent)


def describe_model(spec: ModelSpec, base_dir: str | Path) -> ModelInfo:
    """What a model reads and writes, checking that its file loads or its entrypoint
    imports, without instantiating or calling any user code (an entrypoint's module is
    imported, which runs its module-level code)."""
    return _module(spec).describe(spec, Path(base_dir))


def _describe_all(t: Topology) -> dict[str, ModelInfo]:
    described = {}
    for name, spec, key in model_specs(t):
        if spec.path is not None and not spec.path.exists():
            raise t.error(f"model file not found: {spec.path}", f"{key}.path")
        try:
            described[name] = describe_model(spec, t.base_dir)
        except Exception as exc:  # a user module may raise anything on import
            message = (str(exc) if isinstance(exc, StreamComposeError)
                       else f"cannot load the model: {type(exc).__name__}: {exc}")
            raise t.error(message, f"{key}.entrypoint" if spec.entrypoint
                          else f"{key}.path") from exc
    return described


def _aggregators(t: Topology) -> None:
    """Python join aggregators import and can be called (they are not called here)."""
    for agent in t.agents:
        join = agent.join
        if join is not None and join.strategy == "python" and join.entrypoint:
            try:
                import_callable(join.entrypoint, t.base_dir)
            except StreamComposeError as exc:
                raise t.error(str(exc), f"agents.{agent.name}.join.entrypoint") from exc


def check_models(t: Topology) -> Topology:
    """Check the models a loaded topology names and the fields flowing between them;
    returns the topology, or raises the first problem found as a
    :class:`~streamcompose.errors.TopologyError` naming the file, line and key.

    Every model (agents' models, stacking meta-models, router gate models) is described
    by its runtime: ONNX files are opened by a CPU ONNX Runtime session, TorchScript
    files are read as archives (torch is not imported), python entrypoints and torch
    module factories are imported but never instantiated nor called, and so are python
    join aggregators.
    """
    described = _describe_all(t)
    _aggregators(t)
    check_field_flow(t, described)
    return t
