"""``shadow``: the ``primary`` gets each request as usual, each of ``shadows`` a copy
whose results never reach the output."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamcompose.topology.parse_specs import Reader
from streamcompose.topology.routers.base import RouterKind, only_from
from streamcompose.topology.specs import AgentSpec, RouterSpec
from streamcompose.topology.yamlsource import YamlDocument

if TYPE_CHECKING:
    from streamcompose.topology.model import Topology


class Shadow(RouterKind):
    name = "shadow"

    def parse(self, r: Reader, raw: Any, key: str, base_dir: Path) -> RouterSpec:
        s = r.mapping(raw, key, {"primary", "shadows"})
        primary = r.string(s.get("primary"), f"{key}.primary")
        shadows = r.strings(s.get("shadows"), f"{key}.shadows")
        if primary in shadows:
            raise r.doc.error(f"{primary!r} cannot be both the primary and a shadow",
                              f"{key}.shadows")
        return RouterSpec(kind=self.name, targets=(primary, *shadows), primary=primary,
                          shadows=shadows)

    def target_keys(self, spec: RouterSpec) -> dict[str, str]:
        return {spec.primary or "": "primary",
                **{s: f"shadows.{i}" for i, s in enumerate(spec.shadows)}}

    def check(self, t: Topology, doc: YamlDocument, agent: AgentSpec) -> None:
        assert agent.router is not None
        only_from(t, doc, agent, agent.router.shadows, "a shadow")

    def label(self, spec: RouterSpec, target: str) -> str:
        return "primary" if target == spec.primary else "copy"
