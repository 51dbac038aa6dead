"""``split``: one of ``weights``' variants per request, sticky per request key; the
weights change at run time through the control topic (``streamcompose set-weights``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamcompose.topology.parse_specs import Reader
from streamcompose.topology.routers.base import RouterKind
from streamcompose.topology.specs import RouterSpec


class Split(RouterKind):
    name = "split"
    control = True
    gives = ("variant",)

    def parse(self, r: Reader, raw: Any, key: str, base_dir: Path) -> RouterSpec:
        weights = r.mapping(raw, key, set(raw) if isinstance(raw, dict) else set())
        checked = {v: float(r.number(w, f"{key}.{v}", integer=False, minimum=0))
                   for v, w in weights.items()}
        if not checked or sum(checked.values()) <= 0:
            raise r.doc.error("the variants' weights must sum to a positive number", key)
        return RouterSpec(kind=self.name, targets=tuple(checked), weights=checked)

    def target_keys(self, spec: RouterSpec) -> dict[str, str]:
        return {t: t for t in spec.targets}

    def label(self, spec: RouterSpec, target: str) -> str:
        return f"{round(100 * spec.weights[target] / sum(spec.weights.values()), 1):g}%"
