"""Plain Python models: ``module:callable`` taking a list of payloads.

The callable returns a list of dicts, one per payload, holding the fields it produced.
When the entrypoint is a class it is instantiated once at load with ``options`` as
keyword arguments, and the instance is called with each batch; a ``warmup()`` method,
if it has one, runs before consuming. The callable may declare ``inputs`` and
``outputs`` attributes (field names) so that validation can check the field flow.

Example entrypoint::

    def inc(batch):
        return [{"x": p["x"] + 1} for p in batch]
"""

from __future__ import annotations

import inspect
from pathlib import Path

from streamcompose.errors import ModelError
from streamcompose.runtimes.base import Payload, Result, Runtime, import_entrypoint, rename_outputs
from streamcompose.topology.model import ModelSpec


class PythonRuntime(Runtime):
    """Calls a Python entrypoint with each batch of payloads."""

    def __init__(self, spec: ModelSpec, base_dir: Path, agent: str | None = None) -> None:
        super().__init__(spec, agent)
        target = import_entrypoint(spec.entrypoint or "", base_dir)
        try:
            self.fn = target(**spec.options) if inspect.isclass(target) else target
        except Exception as exc:
            raise ModelError(f"{spec.entrypoint!r}({', '.join(spec.options)}) raised "
                             f"{type(exc).__name__}: {exc}", agent=agent) from exc
        self.input_fields = _names(getattr(self.fn, "inputs", None))
        declared = _names(getattr(self.fn, "outputs", None))
        self.output_fields = (None if declared is None else
                              tuple(spec.output_map.get(n, n) for n in declared))

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
    return None if value is None else tuple(value)  # type: ignore[arg-type]
