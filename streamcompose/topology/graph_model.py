"""The one description of a topology's picture that every format draws: nodes and edges.

Nodes are the topic ends (the input, output and dead-letter topics, and each shadow's
results and dead letters) and the agents: models, joiners and routers. Edges carry data
labelled with their topic, or (from a router) with what decides the route; dashed edges
are shadow copies and dead letters.

>>> from streamcompose.topology.model import INPUT, AgentSpec, ModelSpec, Topology
>>> t = Topology(name="demo", agents=(
...     AgentSpec(name="inc", inputs=(INPUT,), model=ModelSpec(runtime="python")),))
>>> [(e.source, e.target, e.label) for e in graph_of(t).edges]
[('topic_in', 'a0_inc', 'demo.in'), ('a0_inc', 'topic_out', 'demo.out'), \
('a0_inc', 'topic_dlq', 'demo.dlq')]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from streamcompose.topology.colocate import internal_topics
from streamcompose.topology.model import INPUT, AgentSpec, RouterSpec, Topology
from streamcompose.topology.routers import ROUTERS

__all__ = ["DLQ_ID", "EDGE_KINDS", "IN_ID", "IN_MEMORY", "NODE_KINDS", "OUT_ID", "Edge", "Graph",
           "Group", "Node",
           "agent_lines", "graph_of", "route_label"]

IN_ID, OUT_ID, DLQ_ID = "topic_in", "topic_out", "topic_dlq"
NODE_KINDS = ("input", "output", "topic", "dlq", "model", "join", "router")
EDGE_KINDS = ("data", "route", "copy", "return", "dlq")
IN_MEMORY = "in memory"  # the label of an edge inside a co-located group


@dataclass(frozen=True)
class Node:
    """A box of the picture; ``kind`` is one of :data:`NODE_KINDS` (``topic``: a shadow's
    results; ``dlq``: the dead-letter topic or a shadow's own)."""

    id: str
    kind: str
    lines: tuple[str, ...]
    depth: int

    @property
    def is_agent(self) -> bool:
        return self.kind in ("model", "join", "router")


@dataclass(frozen=True)
class Edge:
    """An arrow; ``kind`` is one of :data:`EDGE_KINDS`: ``data`` (results on ``topic``),
    ``route`` (a router's requests to a target), ``copy`` (a shadow's copy of them),
    ``return`` (a fallback target's results back to its router), ``dlq``."""

    source: str
    target: str
    label: str
    kind: str = "data"
    topic: str = ""

    @property
    def dashed(self) -> bool:
        return self.kind in ("copy", "dlq")


@dataclass(frozen=True)
class Group:
    """A box around the agents of a co-located group (one worker process)."""

    id: str
    label: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class Graph:
    """The nodes (input, agents upstream first, output, dlq, shadow topics), edges and
    co-located groups."""

    name: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    groups: tuple[Group, ...] = ()

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)


def agent_lines(agent: AgentSpec) -> tuple[str, ...]:
    """The text of an agent's box: name, what it is (a model's runtime, a joiner's
    strategy and mode, a router's kind), then batching and replicas if used.

    >>> from streamcompose.topology.model import BatchSpec, JoinSpec, ModelSpec
    >>> agent_lines(AgentSpec(name="ocr", inputs=("det",), replicas=2,
    ...     batch=BatchSpec(max_size=8, max_wait_ms=5), model=ModelSpec(runtime="onnx")))
    ('ocr', 'onnx', 'batch 8 / 5 ms', 'replicas 2')
    >>> agent_lines(AgentSpec(name="vote", inputs=("a", "b"),
    ...     join=JoinSpec(strategy="soft_vote", mode="quorum", quorum=2)))
    ('vote', 'join: soft_vote (quorum 2)')
    """
    model = agent.router.model if agent.router is not None else agent.model
    runtime = model.runtime if model else "?"
    if model and model.device != "cpu":
        runtime += f" on {model.device}"
    if agent.join is not None:
        mode = agent.join.mode + (f" {agent.join.quorum}" if agent.join.mode == "quorum"
                                  and agent.join.quorum else "")
        lines = [agent.name, f"join: {agent.join.strategy} ({mode})"]
    elif agent.router is not None:
        lines = [agent.name, ROUTERS[agent.router.kind].title(agent.router)] + (
            [runtime] if model else [])
    else:
        lines = [agent.name, runtime]
    if agent.batch.max_size > 1:
        wait = f"{agent.batch.max_wait_ms:g} ms"
        lines.append(f"batch {agent.batch.max_size} / "
                     + (f"auto ≤ {wait}" if agent.batch.auto_wait else wait))
    if agent.replicas > 1:
        lines.append(f"replicas {agent.replicas}")
    return tuple(lines)


def route_label(r: RouterSpec, target: str) -> str:
    """What sends a router's requests to ``target``.

    >>> split = RouterSpec(kind="split", targets=("v1", "v2"), weights={"v1": 2, "v2": 1})
    >>> route_label(split, "v1"), route_label(split, "v2")
    ('66.7%', '33.3%')
    >>> fb = RouterSpec(kind="fallback", targets=("a", "b"), primary="a", backup="b")
    >>> route_label(fb, "b")
    'backup (after 1000 ms / error)'
    """
    return ROUTERS[r.kind].label(r, target)


def _depths(t: Topology, order: tuple[str, ...]) -> dict[str, int]:
    depth = {INPUT: 0}
    for name in order:
        depth[name] = 1 + max(depth[src] for src in t.agent(name).inputs)
    return depth


def graph_of(t: Topology) -> Graph:
    """The nodes and edges every rendering draws, with each node's layer (``depth``)."""
    order = t.order()
    ids = {INPUT: IN_ID, **{name: f"a{i}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"
                            for i, name in enumerate(order)}}
    depth = _depths(t, order)
    last = max(depth.values()) + 1
    kinds = {"model": "model", "join": "join"}
    nodes = [Node(IN_ID, "input", (t.input_topic,), 0)]
    nodes += [Node(ids[n], kinds.get(t.agent(n).kind, "router"), agent_lines(t.agent(n)),
                   depth[n]) for n in order]
    nodes += [Node(OUT_ID, "output", (t.output_topic,), last),
              Node(DLQ_ID, "dlq", (t.dlq_topic,), last)]
    edges: list[Edge] = []
    dlq_edges: list[Edge] = []
    hidden = {x for g in t.colocate if not g.inspect for x in internal_topics(t, g)}
    for name in order:
        agent = t.agent(name)
        for src in dict.fromkeys(agent.inputs):
            router = t.agent(src).router if src != INPUT else None
            if router is not None and name in router.targets:
                kind = "copy" if name in router.shadows else "route"
                edges.append(Edge(ids[src], ids[name], route_label(router, name), kind,
                                  t.edge_topic(src, name)))
            else:
                edges.append(Edge(ids[src], ids[name], t.topic_of(src), topic=t.topic_of(src)))
            if edges[-1].topic in hidden:  # passed in memory inside a co-located group
                edges[-1] = replace(edges[-1], label=f"{IN_MEMORY} ({edges[-1].label})"
                                    if edges[-1].kind != "data" else IN_MEMORY)
        for router in t.returns_to(name):  # a fallback's primary or backup answers it
            edges.append(Edge(ids[name], ids[router], t.topic_of(name), "return",
                              t.topic_of(name)))
        dlq_id = DLQ_ID
        if t.is_shadow(name):
            topic_id, dlq_id = f"{ids[name]}_shadow", f"{ids[name]}_shadow_dlq"
            nodes += [Node(topic_id, "topic", (t.topic_of(name),), depth[name] + 1),
                      Node(dlq_id, "dlq", (t.dlq_of(name),), depth[name] + 1)]
            edges.append(Edge(ids[name], topic_id, t.topic_of(name), topic=t.topic_of(name)))
        elif t.emits_results(name) and t.is_sink(name):
            edges.append(Edge(ids[name], OUT_ID, t.output_topic, topic=t.output_topic))
        dlq_edges.append(Edge(ids[name], dlq_id, t.dlq_of(name), "dlq", t.dlq_of(name)))
    groups = tuple(Group(f"group_{re.sub(r'[^A-Za-z0-9_]', '_', g.name)}",
                         f"{g.name}: one process", tuple(ids[m] for m in g.members))
                   for g in t.colocate)
    return Graph(t.name, tuple(nodes), tuple(edges + dlq_edges), groups)
