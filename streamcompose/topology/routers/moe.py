"""``route``: a mixture of experts. The gate ``model`` scores each request (its output
``scores``, by default its first); the ``top_k`` experts get it with the gate weights
renormalised over them; ``capacity`` caps one expert's share of a batch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamcompose.topology.parse_specs import Reader, parse_model
from streamcompose.topology.routers.base import RouterKind
from streamcompose.topology.specs import AgentSpec, RouterSpec
from streamcompose.topology.yamlsource import YamlDocument

if TYPE_CHECKING:
    from streamcompose.topology.model import Topology


class MixtureOfExperts(RouterKind):
    name = "route"
    gives = ("gate_weights",)

    def parse(self, r: Reader, raw: Any, key: str, base_dir: Path) -> RouterSpec:
        g = r.mapping(raw, key, {"model", "experts", "top_k", "capacity", "scores"})
        if "model" not in g:
            raise r.doc.error("a mixture-of-experts router needs a gate 'model'", key)
        capacity = g.get("capacity")
        if capacity is not None and (isinstance(capacity, bool) or not (
                isinstance(capacity, int | float) and 0 < capacity <= 1)):
            raise r.doc.error(f"capacity is the largest share of a batch one expert may "
                              f"take, in (0, 1]; got {capacity!r}", f"{key}.capacity")
        return RouterSpec(
            kind=self.name, targets=r.strings(g.get("experts"), f"{key}.experts"),
            model=parse_model(r, g["model"], f"{key}.model", base_dir),
            scores=r.string(g["scores"], f"{key}.scores") if "scores" in g else None,
            top_k=r.number(g.get("top_k", 1), f"{key}.top_k", integer=True, minimum=1),
            capacity=float(capacity) if capacity is not None else None)

    def target_keys(self, spec: RouterSpec) -> dict[str, str]:
        return {t: f"experts.{i}" for i, t in enumerate(spec.targets)}

    def check(self, t: Topology, doc: YamlDocument, agent: AgentSpec) -> None:
        r = agent.router
        assert r is not None
        if r.top_k > len(r.targets):
            raise doc.error(f"top_k {r.top_k} > {len(r.targets)} experts",
                            f"agents.{agent.name}.route.top_k")

    def label(self, spec: RouterSpec, target: str) -> str:
        return "expert"

    def title(self, spec: RouterSpec) -> str:
        return f"moe gate (top-{spec.top_k})"
