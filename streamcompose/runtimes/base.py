"""What every model runtime offers the agent worker.

A runtime is loaded once per worker, warmed up, then called with batches of payloads.
:meth:`Runtime.infer` returns one entry per payload: the fields the model produced
(already renamed by ``output_map``), or a :class:`RecordError` saying why that one
payload failed. One bad payload never fails its neighbours in the batch.
"""

from __future__ import annotations

import importlib
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from streamcompose.codec.reasons import exception_text
from streamcompose.errors import ModelError
from streamcompose.topology.model import ModelSpec

Payload = dict[str, Any]


class RecordError(ModelError):
    """One payload of a batch was rejected by, or failed in, the model."""


Result = Payload | RecordError


class Runtime(ABC):
    """A loaded model. Subclasses implement :meth:`_infer_batch`."""

    #: payload fields the model reads, when they can be known before running it
    input_fields: tuple[str, ...] | None = None
    #: payload fields the model writes, when they can be known before running it
    output_fields: tuple[str, ...] | None = None

    def __init__(self, spec: ModelSpec, agent: str | None = None) -> None:
        self.spec = spec
        self.agent = agent

    def error(self, message: str) -> RecordError:
        return RecordError(message, agent=self.agent, model=str(self.spec.path or
                                                               self.spec.entrypoint))

    def infer(self, payloads: list[Payload]) -> list[Result]:
        """Run the model on a batch. When the batch as a whole raises, each payload is
        retried alone so that only the payloads that fail by themselves are rejected."""
        if not payloads:
            return []
        try:
            return self._infer_batch(payloads)
        except Exception as exc:
            if len(payloads) == 1:
                return [self.error(exception_text(exc, typed=True))]
        return [self.infer([p])[0] for p in payloads]

    @abstractmethod
    def _infer_batch(self, payloads: list[Payload]) -> list[Result]:
        """Run the model; may raise, in which case :meth:`infer` isolates the culprit."""

    def bind(self, payloads: list[Payload]) -> Any | None:
        """The model's inputs for a whole batch, made ahead (on the worker's event loop,
        while the model thread runs the batch before) so that the model thread runs only
        the model (:meth:`run_bound`) and :meth:`unbind` splits its outputs back on the
        loop; None to leave the whole batch to :meth:`infer` (the default)."""
        return None

    def run_bound(self, bound: Any) -> Any:
        """The model's outputs for what :meth:`bind` made; raises, like a batch of
        :meth:`infer`, when the model fails or its outputs cannot be split."""
        raise NotImplementedError(f"{type(self).__name__} binds no batch ahead")

    def unbind(self, outputs: Any, size: int) -> list[Result]:
        """One result per payload of a bound batch of ``size`` from :meth:`run_bound`'s
        ``outputs``; never raises."""
        raise NotImplementedError(f"{type(self).__name__} binds no batch ahead")

    def warmup(self) -> None:  # noqa: B027 - most runtimes need no warm-up
        """Run the model once before consuming, so the first request is not slow."""


def import_entrypoint(entrypoint: str, base_dir: Path) -> Any:
    """Import ``module:attribute`` with ``base_dir`` on the import path.

    >>> import_entrypoint("math:sqrt", Path("."))(4.0)
    2.0
    """
    module_name, _, attr = entrypoint.partition(":")
    if str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"cannot import module {module_name!r} for entrypoint "
                         f"{entrypoint!r} (looked in {base_dir} and the installed "
                         f"packages): {exc}") from exc
    except Exception as exc:  # the user's module failed while importing
        raise ModelError(f"module {module_name!r} raised {type(exc).__name__} while being "
                         f"imported for entrypoint {entrypoint!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ModelError(f"module {module_name!r} has no attribute {attr!r} "
                             f"(entrypoint {entrypoint!r})") from None
    return obj


def import_callable(entrypoint: str, base_dir: Path) -> Any:
    """Import an entrypoint and check that it can be called (a function or a class),
    without calling it.

    >>> import_callable("math:pi", Path("."))
    Traceback (most recent call last):
      ...
    streamcompose.errors.ModelError: entrypoint 'math:pi' is a float, not a callable or a \
class
    """
    target = import_entrypoint(entrypoint, base_dir)
    if not callable(target):
        raise ModelError(f"entrypoint {entrypoint!r} is a {type(target).__name__}, not a "
                         "callable or a class")
    return target


def rename_outputs(spec: ModelSpec, outputs: dict[str, Any]) -> Payload:
    """Keep the selected outputs and rename them by ``output_map``."""
    keep = spec.outputs
    return {spec.output_map.get(k, k): v for k, v in outputs.items()
            if keep is None or k in keep}
