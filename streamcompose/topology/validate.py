"""Graph-level checks of a topology: references, cycles, routers, topics, replicas and
joiners' static rules.

Each check raises a :class:`~streamcompose.errors.TopologyError` that names the key (and
line, when the topology came from a file) of the offending value. Nothing here opens a
model file or imports an entrypoint: what needs the models (their files, entrypoints and
the field flow between them) is checked by
:func:`streamcompose.runtimes.check.check_models`.
"""

from __future__ import annotations

from streamcompose.errors import TopologyError
from streamcompose.topology.model import INPUT, Topology
from streamcompose.topology.validate_routes import validate_routers
from streamcompose.topology.validate_serving import validate_serving
from streamcompose.topology.yamlsource import YamlDocument


def _references(t: Topology, doc: YamlDocument) -> None:
    names = set(t.agent_names)
    for agent in t.agents:
        for i, src in enumerate(agent.inputs):
            key = f"agents.{agent.name}.inputs.{i}"
            if src == agent.name:
                raise doc.error(f"agent {agent.name!r} cannot consume its own results", key)
            if src != INPUT and src not in names:
                raise doc.error(f"unknown agent {src!r} (agents: {', '.join(sorted(names))}; "
                                f"use {INPUT} for the topology's input)", key)


def _cycles(t: Topology, doc: YamlDocument) -> None:
    try:
        t.order()
    except ValueError:
        graph = {a.name: [i for i in a.inputs if i != INPUT] for a in t.agents}
        state: dict[str, int] = {}
        path: list[str] = []

        def visit(node: str) -> list[str] | None:
            state[node] = 1
            path.append(node)
            for nxt in graph[node]:
                if state.get(nxt) == 1:
                    return [*path[path.index(nxt):], nxt]
                if nxt not in state and (found := visit(nxt)):
                    return found
            state[node] = 2
            path.pop()
            return None

        cycle = next(c for name in graph if name not in state and (c := visit(name)))
        raise doc.error("cycle between agents: " + " <- ".join(cycle),
                        f"agents.{cycle[0]}.inputs") from None


def _topics(t: Topology, doc: YamlDocument) -> None:
    """Two roles must never share a topic (e.g. a non-sink agent named ``out``)."""
    roles = {t.dlq_topic: "dlq"}
    for role, topic, key in [("output", t.output_topic, "output"),
                             ("input", t.input_topic, "input"),
                             *((f"agent {a.name!r}", t.topic_of(a.name), f"agents.{a.name}")
                               for a in t.agents if not t.is_sink(a.name))]:
        if topic in roles:
            raise doc.error(f"the {role} topic {topic!r} is also the {roles[topic]} topic; "
                            "rename the agent or set other input/output topics", key)
        roles[topic] = role


def _replicas(t: Topology, doc: YamlDocument) -> None:
    for agent in t.agents:
        if agent.autoscale is not None and agent.autoscale.max > t.partitions:
            raise doc.error(f"max {agent.autoscale.max} > partitions {t.partitions}: the extra "
                            "workers would get no partition", f"agents.{agent.name}.autoscale.max")
        if agent.replicas > t.partitions:
            raise doc.error(f"replicas {agent.replicas} > partitions {t.partitions}: the extra "
                            "workers would get no partition", f"agents.{agent.name}.replicas")


def _joins(t: Topology, doc: YamlDocument) -> None:
    for agent in t.agents:
        join = agent.join
        if join is None:
            continue
        key = f"agents.{agent.name}"
        if INPUT in agent.inputs:
            raise doc.error("a joiner combines agents' results; $input cannot be a branch",
                            f"{key}.inputs")
        for branch in join.weights:
            if branch not in agent.inputs:
                raise doc.error(f"weight for {branch!r}, which is not a branch of this joiner "
                                f"(branches: {', '.join(agent.inputs)})",
                                f"{key}.join.weights.{branch}")
        if join.quorum is not None and join.quorum > len(agent.inputs):
            raise doc.error(f"quorum {join.quorum} > {len(agent.inputs)} branches",
                            f"{key}.join.mode")
        if join.strategy == "stacking" and join.mode != "all":
            raise doc.error("stacking needs every branch (mode: all): the meta-model takes a "
                            "fixed-size input", f"{key}.join.mode")


def validate_topology(t: Topology, doc: YamlDocument) -> None:
    """Run every graph-level check; the first problem found is raised."""
    if not t.agents:
        raise TopologyError("a topology needs at least one agent", file=doc.file, key="agents")
    _references(t, doc)
    _cycles(t, doc)
    validate_routers(t, doc)
    _topics(t, doc)
    _replicas(t, doc)
    _joins(t, doc)
    validate_serving(t, doc)
