"""The joiner's fusion step for a batch of completed requests: a built-in strategy, a
stacking meta-model (any runtime) or a Python aggregator entrypoint.

>>> from streamcompose.topology.model import JoinSpec
>>> agg = Aggregator(JoinSpec(strategy="weighted_average", field="y"), ".")
>>> float(agg([[("a", {"y": 1.0}), ("b", {"y": 3.0})]])[0]["y"])
2.0
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from streamcompose.join.strategies import (
    Branches,
    StrategyError,
    combine,
    combine_many,
    stacking_features,
)
from streamcompose.runtimes import RecordError, load_runtime
from streamcompose.runtimes.base import import_entrypoint
from streamcompose.topology.model import JoinSpec

Fused = dict[str, Any] | StrategyError

STACKING_FIELD = "features"


class Aggregator:
    """Fuses the branch results of many requests at once (one model call for stacking)."""

    def __init__(self, spec: JoinSpec, base_dir: str | Path, agent: str | None = None) -> None:
        self.spec = spec
        self.runtime = (load_runtime(spec.model, base_dir, agent)
                        if spec.strategy == "stacking" and spec.model is not None else None)
        self.python = None
        if spec.strategy == "python" and spec.entrypoint:
            target = import_entrypoint(spec.entrypoint, Path(base_dir))
            self.python = target(**spec.options) if inspect.isclass(target) else target

    def warmup(self) -> None:
        if self.runtime is not None:
            self.runtime.warmup()

    def __call__(self, requests: list[Branches]) -> list[Fused]:
        if self.runtime is not None:
            return self._stack(requests)
        fused = combine_many(requests, self.spec)  # None for a python aggregator
        return fused if fused is not None else [self._one(branches) for branches in requests]

    def _one(self, branches: Branches) -> Fused:
        try:
            if self.python is not None:
                out = self.python(dict(branches), self.spec)
                if not isinstance(out, dict):
                    raise StrategyError(f"aggregator {self.spec.entrypoint!r} returned "
                                        f"{type(out).__name__}, not a dict")
                return out
            return combine(branches, self.spec)
        except StrategyError as exc:
            return exc
        except Exception as exc:
            return StrategyError(f"{type(exc).__name__}: {exc}")

    def _stack(self, requests: list[Branches]) -> list[Fused]:
        assert self.runtime is not None
        results: list[Fused | None] = [None] * len(requests)
        features: list[tuple[int, dict[str, Any]]] = []
        for i, branches in enumerate(requests):
            try:
                features.append((i, {STACKING_FIELD: stacking_features(branches, self.spec)}))
            except StrategyError as exc:
                results[i] = exc
        outputs = self.runtime.infer([payload for _, payload in features])
        for (i, _), out in zip(features, outputs, strict=True):
            if isinstance(out, RecordError):
                results[i] = StrategyError(f"the stacking model failed: {out.message}")
            else:
                if self.spec.keep_branches:
                    out["branches"] = {n: p.get(self.spec.field) for n, p in requests[i]}
                results[i] = out
        return results  # type: ignore[return-value]
