"""Graph-level checks of a topology: references, cycles, replicas, models, field flow.

Each check raises a :class:`~streamcompose.errors.TopologyError` that names the key (and
line, when the topology came from a file) of the offending value.
"""

from __future__ import annotations

from streamcompose.errors import StreamComposeError, TopologyError
from streamcompose.topology.model import INPUT, Topology
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
        if agent.replicas > t.partitions:
            raise doc.error(f"replicas {agent.replicas} > partitions {t.partitions}: the extra "
                            "workers would get no partition", f"agents.{agent.name}.replicas")


def _models(t: Topology, doc: YamlDocument) -> dict[str, tuple[tuple[str, ...] | None,
                                                              tuple[str, ...] | None]]:
    from streamcompose.runtimes import describe_model

    described = {}
    for agent in t.agents:
        if agent.model is None:
            continue
        key = f"agents.{agent.name}.model"
        if agent.model.path is not None and not agent.model.path.exists():
            raise doc.error(f"model file not found: {agent.model.path}", f"{key}.path")
        try:
            described[agent.name] = describe_model(agent.model, t.base_dir)
        except Exception as exc:  # a user module may raise anything on import or init
            message = (str(exc) if isinstance(exc, StreamComposeError)
                       else f"cannot load the model: {type(exc).__name__}: {exc}")
            raise doc.error(message, f"{key}.entrypoint" if agent.model.entrypoint
                            else f"{key}.path") from exc
    return described


def _field_flow(t: Topology, doc: YamlDocument, described: dict) -> None:
    """Each model's inputs must be produced upstream, where every upstream is known."""
    out: dict[str, frozenset[str] | None] = {
        INPUT: frozenset(t.fields) if t.fields is not None else None}
    for name in t.order():
        agent = t.agent(name)
        sources = [out[src] for src in agent.inputs]
        available = (None if any(s is None for s in sources)
                     else frozenset.intersection(*sources))
        needs, gives = described.get(name, (None, None))
        if available is not None and needs is not None:
            missing = [f for f in needs if f not in available]
            if missing:
                raise doc.error(
                    f"agent {name!r} needs field(s) {', '.join(missing)} that no upstream "
                    f"produces (available: {', '.join(sorted(available)) or 'none'})",
                    f"agents.{name}.inputs")
        out[name] = (None if available is None or gives is None
                     else (available | set(gives)) - set(agent.drop))


def validate_topology(t: Topology, doc: YamlDocument) -> None:
    """Run every graph-level check; the first problem found is raised."""
    if not t.agents:
        raise TopologyError("a topology needs at least one agent", file=doc.file, key="agents")
    _references(t, doc)
    _cycles(t, doc)
    _topics(t, doc)
    _replicas(t, doc)
    _field_flow(t, doc, _models(t, doc))
