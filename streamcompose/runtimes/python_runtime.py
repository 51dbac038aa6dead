"""Plain Python models: ``module:callable`` taking a list of payloads.

The callable returns a list of dicts, one per payload, holding the fields it produced.
When the entrypoint is a class it is instantiated once at load with ``options`` as
keyword arguments, and the instance is called with each batch; a ``warmup()`` method,
if it has one, runs before consuming. The callable may declare ``inputs`` and
``outputs`` attributes (field names) so that validation can check the field flow; on a
class they are class attributes, since validation (:func:`describe`) only imports the
entrypoint and never instantiates or calls it.

Example entrypoint::

    def inc(batch):
        return [{"x": p["x"] + 1} for p in batch]
"""

from __future__ import annotations

import inspect
from pathlib import Path

from streamcompose.errors import ModelError
from streamcompose.runtimes.base import Payload, Result, Runtime, import_callable, rename_outputs
from streamcompose.topology.fieldflow import ModelInfo
from streamcompose.topology.model import ModelSpec


class PythonRuntime(Runtime):
    """Calls a Python entrypoint with each batch of payloads."""

    def __init__(self, spec: ModelSpec, base_dir: Path, agent: str | None = None) -> None:
        super().__init__(spec, agent)
        target = import_callable(spec.entrypoint or "", base_dir)
        try:
            self.fn = target(**spec.options) if inspect.isclass(target) else target
        except Exception as exc:
            raise ModelError(f"{spec.entrypoint!r}({', '.join(spec.options)}) raised "
                             f"{type(exc).__name__}: {exc}", agent=agent) from exc
        self.input_fields, self.output_fields = _declared_fields(self.fn, spec)

    def _infer_batch(self, payloads: list[Payload]) -> list[Result]:
        if self.input_fields:
            for p in payloads:
                missing = [f for f in self.input_fields if f not in p]
                if missing:
                    raise KeyError(f"missing field(s) {', '.join(missing)}")
        out = self.fn([dict(p) for p in payloads])
        if not isinstance(out, list) or len(out) != len(payloads):
            raise TypeError(f"entrypoint {self.spec.entrypoint!r} must return a list of "
                            f"{len(payloads)} dicts, got {type(out).__name__}"
                            + (f" of {len(out)}" if isinstance(out, list) else ""))
        for item in out:
            if not isinstance(item, dict):
                raise TypeError(f"entrypoint {self.spec.entrypoint!r} returned a "
                                f"{type(item).__name__} where a dict was expected")
        return [rename_outputs(self.spec, item) for item in out]

    def warmup(self) -> None:
        if hasattr(self.fn, "warmup"):
            self.fn.warmup()


def _names(value: object) -> tuple[str, ...] | None:
    """Declared field names: a list or tuple of strings (a property read from a class,
    or anything else, declares nothing)."""
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return None


def _declared_fields(fn: object, spec: ModelSpec) -> tuple[tuple[str, ...] | None,
                                                           tuple[str, ...] | None]:
    """The fields a callable (or class) declares it reads and writes, ``output_map``
    applied; ``None`` where it declares nothing."""
    declared = _names(getattr(fn, "outputs", None))
    return (_names(getattr(fn, "inputs", None)),
            None if declared is None else tuple(spec.output_map.get(n, n) for n in declared))


def describe(spec: ModelSpec, base_dir: Path) -> ModelInfo:
    """The fields a python entrypoint declares, read from the function or the class
    itself: the entrypoint is imported, never instantiated nor called."""
    return ModelInfo(*_declared_fields(import_callable(spec.entrypoint or "", base_dir), spec))


def load(spec: ModelSpec, base_dir: Path, agent: str | None) -> PythonRuntime:
    """The runtime of an agent's python model: the entrypoint, instantiated if a class."""
    return PythonRuntime(spec, base_dir, agent)
