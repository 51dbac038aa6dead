"""Checks of router agents: their targets exist and name them in ``inputs``, weights and
``top_k`` make sense, switch conditions parse, shadows and fallback agents stay off the
main path.
"""

from __future__ import annotations

from streamcompose.topology.model import AgentSpec, Topology
from streamcompose.topology.routers import ROUTERS
from streamcompose.topology.yamlsource import YamlDocument


def _targets(t: Topology, doc: YamlDocument, agent: AgentSpec) -> None:
    names = set(t.agent_names)
    assert agent.router is not None
    kind = ROUTERS[agent.router.kind]
    base = f"agents.{agent.name}.{kind.name}"
    for target, key in ((x, f"{base}.{k}") for x, k in kind.target_keys(agent.router).items()):
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
                and not kind.stateful:
            raise doc.error(f"agent {other.name!r} reads router {agent.name!r}, which never "
                            f"routes to it (targets: {', '.join(agent.router.targets)})",
                            f"agents.{other.name}.inputs")


def validate_routers(t: Topology, doc: YamlDocument) -> None:
    """Every router check; the first problem found is raised."""
    for agent in t.agents:
        if agent.router is not None:
            _targets(t, doc, agent)
            ROUTERS[agent.router.kind].check(t, doc, agent)
        join = agent.join
        if join is not None and join.strategy == "gate_weighted":
            gates = [a for a in t.agents if a.router is not None
                     and "gate_weights" in (ROUTERS[a.router.kind].gives or ())
                     and set(agent.inputs) <= set(a.router.targets)]
            if not gates:
                raise doc.error("gate_weighted combines the experts of one mixture-of-experts "
                                "router: every input must be an expert of the same router",
                                f"agents.{agent.name}.inputs")
