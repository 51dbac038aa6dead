"""Checks of router agents: their targets exist and name them in ``inputs``, weights and
``top_k`` make sense, switch conditions parse, shadows and fallback agents stay off the
main path.
"""

from __future__ import annotations

from streamcompose.topology.model import AgentSpec, Topology
from streamcompose.topology.yamlsource import YamlDocument


def _target_keys(agent: AgentSpec) -> dict[str, str]:
    """Where, in the file, each target of a router is named."""
    r = agent.router
    assert r is not None
    base = f"agents.{agent.name}.{r.kind}"
    if r.kind == "route":
        return {t: f"{base}.experts.{i}" for i, t in enumerate(r.targets)}
    if r.kind == "switch":
        keys = {c.to: f"{base}.cases.{i}.to" for i, c in reversed(list(enumerate(r.cases)))}
        return {**keys, **({r.default: f"{base}.default"} if r.default else {})}
    if r.kind == "split":
        return {t: f"{base}.{t}" for t in r.targets}
    if r.kind == "shadow":
        return {r.primary or "": f"{base}.primary",
                **{s: f"{base}.shadows.{i}" for i, s in enumerate(r.shadows)}}
    return {r.primary or "": f"{base}.primary", r.backup or "": f"{base}.backup"}


def _targets(t: Topology, doc: YamlDocument, agent: AgentSpec) -> None:
    names = set(t.agent_names)
    for target, key in _target_keys(agent).items():
        if target not in names:
            raise doc.error(f"unknown agent {target!r} (agents: {', '.join(sorted(names))})",
                            key)
        if target == agent.name:
            raise doc.error(f"router {agent.name!r} cannot route to itself", key)
        if agent.name not in t.agent(target).inputs:
            raise doc.error(f"agent {target!r} must name {agent.name!r} in its inputs to "
                            f"receive the requests it routes", key)
    for other in t.agents:
        if agent.name in other.inputs and other.name not in agent.router.targets \
                and agent.kind != "fallback":
            raise doc.error(f"agent {other.name!r} reads router {agent.name!r}, which never "
                            f"routes to it (targets: {', '.join(agent.router.targets)})",
                            f"agents.{other.name}.inputs")


def _kind_rules(t: Topology, doc: YamlDocument, agent: AgentSpec) -> None:
    from streamcompose.conditions.expr import ExpressionError, parse

    r = agent.router
    assert r is not None
    base = f"agents.{agent.name}.{r.kind}"
    if r.kind == "route" and r.top_k > len(r.targets):
        raise doc.error(f"top_k {r.top_k} > {len(r.targets)} experts", f"{base}.top_k")
    for i, case in enumerate(r.cases):
        try:
            parse(case.when)
        except ExpressionError as exc:
            raise doc.error(f"condition does not parse: {exc}", f"{base}.cases.{i}.when") \
                from exc
    off_path = [*r.shadows] if r.kind == "shadow" else (
        [r.primary, r.backup] if r.kind == "fallback" else [])
    for name in off_path:
        spec = t.agent(name or "")
        others = [a.name for a in t.agents if name in a.inputs]
        if others:
            role = "a shadow" if r.kind == "shadow" else "the primary or backup of a fallback"
            raise doc.error(f"agent {name!r} is {role}; its results cannot feed other agents "
                            f"({', '.join(others)})", f"agents.{others[0]}.inputs")
        if spec.inputs != (agent.name,):
            raise doc.error(f"agent {name!r} takes its requests from router {agent.name!r} "
                            f"only; its inputs must be [{agent.name}]", f"agents.{name}.inputs")


def validate_routers(t: Topology, doc: YamlDocument) -> None:
    """Every router check; the first problem found is raised."""
    for agent in t.agents:
        if agent.router is not None:
            _targets(t, doc, agent)
            _kind_rules(t, doc, agent)
        join = agent.join
        if join is not None and join.strategy == "gate_weighted":
            gates = [a for a in t.agents if a.kind == "route"
                     and set(agent.inputs) <= set(a.router.targets)]
            if not gates:
                raise doc.error("gate_weighted combines the experts of one mixture-of-experts "
                                "router: every input must be an expert of the same router",
                                f"agents.{agent.name}.inputs")
