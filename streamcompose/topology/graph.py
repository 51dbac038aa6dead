"""Pictures of a topology's inference graph: Mermaid, Graphviz DOT and PNG.

All three draw the one :func:`~streamcompose.topology.graph_model.graph_of` description:
a node per topic end (input, output, dead letters, each shadow's results) and per agent,
each kind in its own shape (models rounded boxes, joiners double-edged boxes, routers
hexagons); data edges labelled with their topic, a router's edges with what decides the
route, dashed edges for shadow copies and dead letters.

>>> from streamcompose.topology.model import INPUT, AgentSpec, ModelSpec, Topology
>>> t = Topology(name="demo", agents=(
...     AgentSpec(name="inc", inputs=(INPUT,), model=ModelSpec(runtime="python")),))
>>> [(e.source, e.target, e.label) for e in graph_of(t).edges]
[('topic_in', 'a0_inc', 'demo.in'), ('a0_inc', 'topic_out', 'demo.out'), \
('a0_inc', 'topic_dlq', 'demo.dlq')]
"""

from __future__ import annotations

from pathlib import Path

from streamcompose.topology.graph_model import (
    DLQ_ID,
    IN_ID,
    OUT_ID,
    Edge,
    Graph,
    Node,
    agent_lines,
    graph_of,
)
from streamcompose.topology.model import Topology

__all__ = ["DLQ_ID", "IN_ID", "OUT_ID", "Edge", "Graph", "Node", "agent_lines", "graph_of",
           "to_dot", "to_mermaid", "to_png"]

#: fill and stroke colour of each node kind (shared by the DOT and Mermaid pictures)
COLOURS = {"topic": ("#e3eefb", "#3d6fb4"), "shadow": ("#ececec", "#7a7a7a"),
           "dlq": ("#fbe4e4", "#b44a4a"), "model": ("#fff6d8", "#8a6d1d"),
           "join": ("#e2f3e0", "#3b7a35"), "router": ("#ece4f7", "#6a4a9c")}
EDGE_COLOURS = {"dlq": "#b44a4a", "return": "#3b7a35", "copy": "#7a7a7a"}
_MERMAID_SHAPES = {"model": '("{}")', "join": '[["{}"]]', "router": '{{{{"{}"}}}}'}
_MERMAID_ESCAPES = {'"': "#quot;", "<": "#lt;", ">": "#gt;", "|": "#124;"}


def _style(node: Node) -> str:
    """The colour class of a node: topic, shadow, dlq, model, join or router."""
    return {"input": "topic", "output": "topic", "topic": "shadow"}.get(node.kind, node.kind)


def _mermaid_text(text: str) -> str:
    return "".join(_MERMAID_ESCAPES.get(c, c) for c in text)


def to_mermaid(t: Topology) -> str:
    """The graph as a Mermaid ``flowchart LR`` (paste it into Markdown or mermaid.live).

    >>> from streamcompose.topology.model import INPUT, AgentSpec, ModelSpec
    >>> t = Topology(name="demo", agents=(
    ...     AgentSpec(name="inc", inputs=(INPUT,), model=ModelSpec(runtime="python")),))
    >>> print(to_mermaid(t))
    flowchart LR
        topic_in[("demo.in")]:::topic
        a0_inc("inc<br/>python"):::model
        topic_out[("demo.out")]:::topic
        topic_dlq[("demo.dlq")]:::dlq
        topic_in -->|"demo.in"| a0_inc
        a0_inc -->|"demo.out"| topic_out
        a0_inc -.->|"demo.dlq"| topic_dlq
        linkStyle 2 stroke:#b44a4a
        classDef topic fill:#e3eefb,stroke:#3d6fb4
        classDef dlq fill:#fbe4e4,stroke:#b44a4a,stroke-dasharray:4 3
        classDef model fill:#fff6d8,stroke:#8a6d1d
    """
    g = graph_of(t)
    out = ["flowchart LR"]
    for n in g.nodes:
        text = "<br/>".join(_mermaid_text(line) for line in n.lines)
        shape = _MERMAID_SHAPES.get(n.kind, '[("{}")]')
        out.append(f"    {n.id}{shape.format(text)}:::{_style(n)}")
    for group in g.groups:
        out.append(f'    subgraph {group.id}["{_mermaid_text(group.label)}"]')
        out += [f"        {member}" for member in group.members]
        out.append("    end")
    for e in g.edges:
        arrow = "-.->" if e.dashed else "-->"
        out.append(f'    {e.source} {arrow}|"{_mermaid_text(e.label)}"| {e.target}')
    for kind, colour in EDGE_COLOURS.items():
        links = [str(i) for i, e in enumerate(g.edges) if e.kind == kind]
        if links:
            out.append(f"    linkStyle {','.join(links)} stroke:{colour}")
    used = {_style(n) for n in g.nodes}
    for style in (s for s in COLOURS if s in used):
        fill, stroke = COLOURS[style]
        dashes = ",stroke-dasharray:4 3" if style in ("dlq", "shadow") else ""
        out.append(f"    classDef {style} fill:{fill},stroke:{stroke}{dashes}")
    return "\n".join(out)


def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_DOT_SHAPES = {"model": 'shape=box, style="rounded,filled"', "join": "shape=box, peripheries=2, "
               'style=filled', "router": "shape=hexagon, style=filled",
               "dlq": 'shape=cylinder, style="dashed,filled"'}


def _dot_edge(e: Edge) -> str:
    attrs = [f"label={_dot_text(e.label)}"]
    if e.kind in ("route", "copy"):
        attrs.append(f"tooltip={_dot_text(e.topic)}")
    if e.dashed:
        attrs.append("style=dashed")
    if e.kind in EDGE_COLOURS:
        attrs.append(f'color="{EDGE_COLOURS[e.kind]}"')
    if e.kind == "return":  # results flow back to the router: keep the targets after it
        attrs.append("constraint=false")
    return f"    {e.source} -> {e.target} [{', '.join(attrs)}];"


def to_dot(t: Topology) -> str:
    """The graph as Graphviz DOT text (``dot -Tsvg`` renders it).

    >>> from streamcompose.topology.model import INPUT, AgentSpec, ModelSpec
    >>> t = Topology(name="demo", agents=(
    ...     AgentSpec(name="inc", inputs=(INPUT,), model=ModelSpec(runtime="python")),))
    >>> print(to_dot(t))  # doctest: +ELLIPSIS
    digraph "demo" {
        rankdir=LR;
    ...
        a0_inc [label="inc\\npython", shape=box, style="rounded,filled", fillcolor="#fff6d8", \
color="#8a6d1d"];
    ...
        a0_inc -> topic_dlq [label="demo.dlq", style=dashed, color="#b44a4a"];
    }
    """
    g = graph_of(t)
    out = [f"digraph {_dot_text(g.name)} {{", "    rankdir=LR;",
           '    node [fontname="Helvetica"];', '    edge [fontname="Helvetica", fontsize=10];']
    for n in g.nodes:
        label = _dot_text("\n".join(n.lines)).replace("\n", "\\n")
        shape = _DOT_SHAPES.get(n.kind, "shape=cylinder, style=filled")
        fill, stroke = COLOURS[_style(n)]
        out.append(f'    {n.id} [label={label}, {shape}, fillcolor="{fill}", color="{stroke}"];')
    for group in g.groups:
        out += [f"    subgraph cluster_{group.id} {{",
                f'        label={_dot_text(group.label)}; style="rounded,dashed"; '
                'color="#555555";',
                *(f"        {member};" for member in group.members), "    }"]
    out.append(f"    {{ rank=same; {OUT_ID}; {DLQ_ID}; }}")
    out += [_dot_edge(e) for e in g.edges]
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
