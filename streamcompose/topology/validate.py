"""Graph-level checks of a topology: references, cycles, replicas, models, field flow.

Each check raises a :class:`~streamcompose.errors.TopologyError` that names the key (and
line, when the topology came from a file) of the offending value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamcompose.errors import StreamComposeError, TopologyError
from streamcompose.topology.model import INPUT, AgentSpec, Topology
from streamcompose.topology.validate_routes import validate_routers
from streamcompose.topology.yamlsource import YamlDocument

if TYPE_CHECKING:
    from streamcompose.runtimes import ModelInfo


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


def _models(t: Topology, doc: YamlDocument) -> dict[str, ModelInfo]:
    from streamcompose.runtimes import describe_model

    described = {}
    models = [(a.name, a.model, f"agents.{a.name}.model") for a in t.agents if a.model] + [
        (a.name, a.join.model, f"agents.{a.name}.join.model") for a in t.agents
        if a.join is not None and a.join.model is not None] + [
        (a.name, a.router.model, f"agents.{a.name}.route.model") for a in t.agents
        if a.router is not None and a.router.model is not None]
    for name, model, key in models:
        if model.path is not None and not model.path.exists():
            raise doc.error(f"model file not found: {model.path}", f"{key}.path")
        try:
            described[name] = describe_model(model, t.base_dir)
        except Exception as exc:  # a user module may raise anything on import or init
            message = (str(exc) if isinstance(exc, StreamComposeError)
                       else f"cannot load the model: {type(exc).__name__}: {exc}")
            raise doc.error(message, f"{key}.entrypoint" if model.entrypoint
                            else f"{key}.path") from exc
    return described


ROUTER_GIVES = {"route": ("gate_weights",), "switch": (), "split": ("variant",), "shadow": ()}
JOIN_OUTPUTS = {"soft_vote": ("label",), "majority_vote": ("label", "votes"),
                "weighted_average": (), "max_confidence": ("label", "chosen"),
                "entropy_weighted": ("label", "branch_weights"),
                "gate_weighted": ("label",)}


def _join_gives(agent: AgentSpec, described: dict[str, ModelInfo]) -> tuple[str, ...] | None:
    join = agent.join
    assert join is not None
    if join.strategy == "merge":
        return agent.inputs
    if join.strategy == "stacking":
        return described[agent.name].outputs
    if join.strategy == "python":
        return None
    extra = ("branches",) if join.keep_branches else ()
    field = () if join.strategy == "majority_vote" else (join.field,)
    return (*field, *JOIN_OUTPUTS[join.strategy], "missing", *extra)


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
        if join.strategy == "python" and join.entrypoint:
            from streamcompose.runtimes.base import import_entrypoint

            try:
                import_entrypoint(join.entrypoint, t.base_dir)
            except StreamComposeError as exc:
                raise doc.error(str(exc), f"{key}.join.entrypoint") from exc


def _check_joined_field(t: Topology, doc: YamlDocument, agent: AgentSpec,
                        out: dict[str, frozenset[str] | None],
                        described: dict[str, ModelInfo]) -> None:
    join = agent.join
    if join is None or join.strategy in ("merge", "python"):
        return
    shapes: dict[str, tuple] = {}
    for branch in agent.inputs:
        fields = out.get(branch)
        if fields is not None and join.field not in fields:
            raise doc.error(f"branch {branch!r} does not produce field {join.field!r} "
                            f"(it gives: {', '.join(sorted(fields))})",
                            f"agents.{agent.name}.join.field")
        shape = described[branch].shapes.get(join.field) if branch in described else None
        if shape is not None:
            shapes[branch] = shape
    if len(set(shapes.values())) > 1:
        first, *others = shapes.items()
        odd = next(b for b, s in others if s != first[1])
        raise doc.error(f"branch {odd!r} gives {join.field!r} with shape {shapes[odd]}, "
                        f"branch {first[0]!r} with {first[1]}", f"agents.{agent.name}.join.field")


def _field_flow(t: Topology, doc: YamlDocument, described: dict[str, ModelInfo]) -> None:
    """Each model's inputs must be produced upstream, where every upstream is known; each
    joiner's field must be given by every branch, with one shape."""
    out: dict[str, frozenset[str] | None] = {
        INPUT: frozenset(t.fields) if t.fields is not None else None}
    for name in t.order():
        agent = t.agent(name)
        sources = [out[src] for src in agent.inputs]
        available = (None if any(s is None for s in sources)
                     else frozenset.intersection(*sources))
        if agent.join is not None:
            _check_joined_field(t, doc, agent, out, described)
            needs, gives = None, _join_gives(agent, described)
        elif agent.router is not None:
            needs = described[name].inputs if name in described else None
            gives = ROUTER_GIVES.get(agent.router.kind)
        else:
            info = described.get(name)
            needs, gives = (info.inputs, info.outputs) if info else (None, None)
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
    validate_routers(t, doc)
    _topics(t, doc)
    _replicas(t, doc)
    _joins(t, doc)
    _field_flow(t, doc, _models(t, doc))
