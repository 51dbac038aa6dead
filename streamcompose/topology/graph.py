"""Pictures of a topology's inference graph: Mermaid, Graphviz DOT and PNG.

The graph has one node per topic end (the input, output and dead-letter topics) and one
per agent. A solid edge carries data and is labelled with the topic it travels on; a
dashed edge runs from every agent to the dead-letter topic, where rejected records go.

>>> from streamcompose.topology.model import INPUT, AgentSpec, ModelSpec, Topology
>>> t = Topology(name="demo", agents=(
...     AgentSpec(name="inc", inputs=(INPUT,), model=ModelSpec(runtime="python")),))
>>> [(e.source, e.target, e.label) for e in graph_of(t).edges]
[('topic_in', 'a0_inc', 'demo.in'), ('a0_inc', 'topic_out', 'demo.out'), \
('a0_inc', 'topic_dlq', 'demo.dlq')]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from streamcompose.topology.model import INPUT, AgentSpec, Topology

__all__ = ["Edge", "Graph", "Node", "agent_lines", "graph_of", "to_dot", "to_mermaid",
           "to_png"]

IN_ID, OUT_ID, DLQ_ID = "topic_in", "topic_out", "topic_dlq"


@dataclass(frozen=True)
class Node:
    """A box of the picture; ``kind`` is ``input``, ``agent``, ``output`` or ``dlq``."""

    id: str
    kind: str
    lines: tuple[str, ...]
    depth: int


@dataclass(frozen=True)
class Edge:
    """An arrow; ``dashed`` marks the dead-letter edges."""

    source: str
    target: str
    label: str
    dashed: bool = False


@dataclass(frozen=True)
class Graph:
    """The nodes (input first, then agents upstream first, output, dlq) and edges."""

    name: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)


def agent_lines(agent: AgentSpec) -> tuple[str, ...]:
    """The text of an agent's box: name, runtime, then batching and replicas if used.

    >>> from streamcompose.topology.model import BatchSpec, ModelSpec
    >>> agent_lines(AgentSpec(name="ocr", inputs=("det",), replicas=2,
    ...     batch=BatchSpec(max_size=8, max_wait_ms=5), model=ModelSpec(runtime="onnx")))
    ('ocr', 'onnx', 'batch 8 / 5 ms', 'replicas 2')
    """
    runtime = agent.model.runtime if agent.model else "?"
    if agent.model and agent.model.device != "cpu":
        runtime += f" on {agent.model.device}"
    lines = [agent.name, runtime]
    if agent.batch.max_size > 1:
        lines.append(f"batch {agent.batch.max_size} / {agent.batch.max_wait_ms:g} ms")
    if agent.replicas > 1:
        lines.append(f"replicas {agent.replicas}")
    return tuple(lines)


def graph_of(t: Topology) -> Graph:
    """The nodes and edges every rendering draws, with each node's layer (``depth``)."""
    order = t.order()
    ids = {INPUT: IN_ID, **{name: f"a{i}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"
                            for i, name in enumerate(order)}}
    depth = {INPUT: 0}
    for name in order:
        depth[name] = 1 + max(depth[src] for src in t.agent(name).inputs)
    last = max(depth.values()) + 1
    nodes = [Node(IN_ID, "input", (t.input_topic,), 0)]
    nodes += [Node(ids[n], "agent", agent_lines(t.agent(n)), depth[n]) for n in order]
    nodes += [Node(OUT_ID, "output", (t.output_topic,), last),
              Node(DLQ_ID, "dlq", (t.dlq_topic,), last)]
    edges: list[Edge] = []
    for name in order:
        for src in dict.fromkeys(t.agent(name).inputs):
            edges.append(Edge(ids[src], ids[name], t.topic_of(src)))
        if t.is_sink(name):
            edges.append(Edge(ids[name], OUT_ID, t.output_topic))
    edges += [Edge(ids[name], DLQ_ID, t.dlq_topic, dashed=True) for name in order]
    return Graph(t.name, tuple(nodes), tuple(edges))


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;")


def to_mermaid(t: Topology) -> str:
    """The graph as a Mermaid ``flowchart LR`` (paste it into Markdown or mermaid.live).

    >>> from streamcompose.topology.model import INPUT, AgentSpec, ModelSpec
    >>> t = Topology(name="demo", agents=(
    ...     AgentSpec(name="inc", inputs=(INPUT,), model=ModelSpec(runtime="python")),))
    >>> print(to_mermaid(t))
    flowchart LR
        topic_in[("demo.in")]:::topic
        a0_inc("inc<br/>python"):::agent
        topic_out[("demo.out")]:::topic
        topic_dlq[("demo.dlq")]:::dlq
        topic_in -->|"demo.in"| a0_inc
        a0_inc -->|"demo.out"| topic_out
        a0_inc -.->|"demo.dlq"| topic_dlq
        classDef topic fill:#e3eefb,stroke:#3d6fb4
        classDef agent fill:#fff6d8,stroke:#8a6d1d
        classDef dlq fill:#fbe4e4,stroke:#b44a4a,stroke-dasharray:4 3
    """
    g = graph_of(t)
    out = ["flowchart LR"]
    for n in g.nodes:
        text = _mermaid_text("<br/>".join(n.lines))
        if n.kind == "agent":
            out.append(f'    {n.id}("{text}"):::agent')
        else:
            out.append(f'    {n.id}[("{text}")]:::{"dlq" if n.kind == "dlq" else "topic"}')
    for e in g.edges:
        arrow = "-.->" if e.dashed else "-->"
        out.append(f'    {e.source} {arrow}|"{_mermaid_text(e.label)}"| {e.target}')
    out += ["    classDef topic fill:#e3eefb,stroke:#3d6fb4",
            "    classDef agent fill:#fff6d8,stroke:#8a6d1d",
            "    classDef dlq fill:#fbe4e4,stroke:#b44a4a,stroke-dasharray:4 3"]
    return "\n".join(out)


def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(t: Topology) -> str:
    """The graph as Graphviz DOT text (``dot -Tsvg`` renders it).

    >>> from streamcompose.topology.model import INPUT, AgentSpec, ModelSpec
    >>> t = Topology(name="demo", agents=(
    ...     AgentSpec(name="inc", inputs=(INPUT,), model=ModelSpec(runtime="python")),))
    >>> print(to_dot(t))  # doctest: +ELLIPSIS
    digraph "demo" {
        rankdir=LR;
    ...
        a0_inc [label="inc\\npython", shape=box, style="rounded,filled", fillcolor="#fff6d8"];
    ...
        a0_inc -> topic_dlq [label="demo.dlq", style=dashed, color="#b44a4a"];
    }
    """
    g = graph_of(t)
    out = [f"digraph {_dot_text(g.name)} {{", "    rankdir=LR;",
           '    node [fontname="Helvetica"];', '    edge [fontname="Helvetica", fontsize=10];']
    for n in g.nodes:
        label = _dot_text("\n".join(n.lines)).replace("\n", "\\n")
        if n.kind == "agent":
            style = 'shape=box, style="rounded,filled", fillcolor="#fff6d8"'
        elif n.kind == "dlq":
            style = 'shape=cylinder, style="dashed,filled", fillcolor="#fbe4e4"'
        else:
            style = 'shape=cylinder, style=filled, fillcolor="#e3eefb"'
        out.append(f"    {n.id} [label={label}, {style}];")
    out.append(f"    {{ rank=same; {OUT_ID}; {DLQ_ID}; }}")
    for e in g.edges:
        extra = ', style=dashed, color="#b44a4a"' if e.dashed else ""
        out.append(f"    {e.source} -> {e.target} [label={_dot_text(e.label)}{extra}];")
    out.append("}")
    return "\n".join(out)


def to_png(t: Topology, path: str | Path) -> Path:
    """Draw the graph into a PNG file with Pillow (no Graphviz needed); returns the path.

    >>> import tempfile
    >>> from streamcompose.topology.model import INPUT, AgentSpec, ModelSpec
    >>> t = Topology(name="demo", agents=(
    ...     AgentSpec(name="inc", inputs=(INPUT,), model=ModelSpec(runtime="python")),))
    >>> png = to_png(t, Path(tempfile.mkdtemp()) / "demo.png")
    >>> png.read_bytes()[1:4]
    b'PNG'
    """
    from streamcompose.topology.graph_png import draw_png

    path = Path(path)
    draw_png(graph_of(t)).save(path, format="PNG")
    return path
