"""``switch``: the first of ``cases`` whose condition holds, else ``default``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamcompose.conditions.expr import ExpressionError, parse
from streamcompose.topology.parse_specs import Reader
from streamcompose.topology.routers.base import RouterKind, shorten
from streamcompose.topology.specs import AgentSpec, Case, RouterSpec
from streamcompose.topology.yamlsource import YamlDocument

if TYPE_CHECKING:
    from streamcompose.topology.model import Topology


class Switch(RouterKind):
    name = "switch"

    def parse(self, r: Reader, raw: Any, key: str, base_dir: Path) -> RouterSpec:
        s = r.mapping(raw, key, {"cases", "default"})
        cases = s.get("cases") or []
        if not isinstance(cases, list):
            raise r.doc.error("must be a list of {when: CONDITION, to: AGENT}", f"{key}.cases")
        parsed = []
        for i, case in enumerate(cases):
            c = r.mapping(case, f"{key}.cases.{i}", {"when", "to"})
            parsed.append(Case(when=r.string(c.get("when"), f"{key}.cases.{i}.when"),
                               to=r.string(c.get("to"), f"{key}.cases.{i}.to")))
        default = r.string(s["default"], f"{key}.default") if s.get("default") else None
        if not parsed and default is None:
            raise r.doc.error("a switch needs cases or a default", key)
        targets = (*(c.to for c in parsed), *((default,) if default else ()))
        return RouterSpec(kind=self.name, targets=tuple(dict.fromkeys(targets)),
                          cases=tuple(parsed), default=default)

    def target_keys(self, spec: RouterSpec) -> dict[str, str]:
        keys = {c.to: f"cases.{i}.to" for i, c in reversed(list(enumerate(spec.cases)))}
        return {**keys, **({spec.default: "default"} if spec.default else {})}

    def check(self, t: Topology, doc: YamlDocument, agent: AgentSpec) -> None:
        assert agent.router is not None
        for i, case in enumerate(agent.router.cases):
            try:
                parse(case.when)
            except ExpressionError as exc:
                raise doc.error(f"condition does not parse: {exc}",
                                f"agents.{agent.name}.switch.cases.{i}.when") from exc

    def label(self, spec: RouterSpec, target: str) -> str:
        parts = [shorten(c.when) for c in spec.cases if c.to == target]
        return " | ".join(parts + (["default"] if spec.default == target else []))
