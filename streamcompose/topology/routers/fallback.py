"""``fallback``: the ``primary`` gets each request; its failure or its silence past
``deadline_ms`` sends the request to ``backup``. The router answers itself, once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamcompose.topology.parse_specs import Reader
from streamcompose.topology.routers.base import RouterKind, only_from
from streamcompose.topology.specs import AgentSpec, RouterSpec
from streamcompose.topology.yamlsource import YamlDocument

if TYPE_CHECKING:
    from streamcompose.topology.model import Topology


class Fallback(RouterKind):
    name = "fallback"
    stateful = True
    gives = None  # served_by, over whatever the agent that answered gives

    def parse(self, r: Reader, raw: Any, key: str, base_dir: Path) -> RouterSpec:
        f = r.mapping(raw, key, {"primary", "backup", "deadline_ms"})
        primary = r.string(f.get("primary"), f"{key}.primary")
        backup = r.string(f.get("backup"), f"{key}.backup")
        if primary == backup:
            raise r.doc.error("the backup must be another agent than the primary",
                              f"{key}.backup")
        return RouterSpec(kind=self.name, targets=(primary, backup), primary=primary,
                          backup=backup, deadline_ms=float(r.number(
                              f.get("deadline_ms", 1000), f"{key}.deadline_ms",
                              integer=False, minimum=1)))

    def target_keys(self, spec: RouterSpec) -> dict[str, str]:
        return {spec.primary or "": "primary", spec.backup or "": "backup"}

    def check(self, t: Topology, doc: YamlDocument, agent: AgentSpec) -> None:
        only_from(t, doc, agent, agent.router.targets if agent.router else (),
                  "the primary or backup of a fallback")

    def label(self, spec: RouterSpec, target: str) -> str:
        if target == spec.primary:
            return "primary"
        return f"backup (after {spec.deadline_ms:g} ms / error)"
