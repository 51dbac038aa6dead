"""A layered layout of a topology :class:`~streamcompose.topology.graph_model.Graph` for
the PNG picture.

One column per depth (input topic, agents by topological depth, output topic); edges that
skip columns run through invisible waypoints (dummies); each column's order is improved
by barycenter sweeps. A fallback target's results run right to left, back into its router
(a *back* chain); each edge end gets its own port on its box's side, ordered so that edges
between two boxes do not cross. The dead-letter topic is left out: the drawing puts it in
a bar under the agents.

>>> from streamcompose.topology.graph_model import graph_of
>>> from streamcompose.topology.model import INPUT, AgentSpec, ModelSpec, Topology
>>> t = Topology(name="demo", agents=(
...     AgentSpec(name="inc", inputs=(INPUT,), model=ModelSpec(runtime="python")),))
>>> columns, chains = layout(graph_of(t))
>>> [[b.key for b in col] for col in columns], [c.edge.label for c in chains]
([['topic_in'], ['a0_inc'], ['topic_out']], ['demo.in', 'demo.out'])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from itertools import pairwise

from PIL import ImageFont

from streamcompose.topology.graph_model import DLQ_ID, Edge, Graph

__all__ = ["DUMMY_H", "HEX_INSET", "LINE_GAP", "MARGIN", "PAD_Y", "Box", "Chain", "font",
           "layout", "line_font", "text_size"]

MARGIN, PAD_X, PAD_Y, V_GAP, LINE_GAP, DUMMY_H = 30, 16, 10, 36, 4, 18
HEX_INSET, PORT_GAP, TITLE_H = 16, 13, 28
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@cache
def font(size: int, bold: bool = False) -> Font:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(name, size)
    except OSError:
        return ImageFont.load_default(size=size)


def text_size(text: str, f: Font) -> tuple[int, int]:
    left, top, right, bottom = f.getbbox(text)
    return int(right - left), int(bottom - top)


def line_font(kind: str, index: int) -> Font:
    """The font of a box's ``index``-th line: agents' names in bold."""
    return font(15, bold=True) if index == 0 and kind in ("model", "join", "router") \
        else font(13)


@dataclass(eq=False)
class Box:
    key: str
    layer: int
    w: int
    h: int
    kind: str = ""
    x: float = 0.0
    y: float = 0.0
    ports: dict[tuple[int, str], float] = field(default_factory=dict)

    @property
    def dummy(self) -> bool:
        return not self.kind

    @property
    def cy(self) -> float:
        return self.y + self.h / 2

    def side_x(self, y: float, right: bool) -> float:
        """Where a horizontal line at ``y`` meets the box's left or right outline."""
        inset = HEX_INSET * min(1.0, abs(y - self.cy) / (self.h / 2)) \
            if self.kind == "router" else 0.0
        return self.x + self.w - inset if right else self.x + inset


@dataclass(eq=False)
class Chain:
    """An edge as the boxes it passes (source first); ``back`` runs right to left."""

    boxes: list[Box]
    edge: Edge

    @property
    def back(self) -> bool:
        return self.boxes[0].layer > self.boxes[-1].layer

    @property
    def gap(self) -> int:
        """The column gap its first segment (where its label goes) spans."""
        return min(self.boxes[0].layer, self.boxes[1].layer)


def _box(g: Graph, node_id: str) -> Box:
    n = g.node(node_id)
    sizes = [text_size(line, line_font(n.kind, i)) for i, line in enumerate(n.lines)]
    w = max(s[0] for s in sizes) + 2 * PAD_X + (2 * HEX_INSET if n.kind == "router" else 0)
    h = (font(15).size + LINE_GAP) * len(sizes) - LINE_GAP + 2 * PAD_Y
    return Box(n.id, n.depth, max(w, 70), h, n.kind)


def layout(g: Graph) -> tuple[list[list[Box]], list[Chain]]:
    """Columns of positioned boxes (dummies included) and the edges as chains of boxes;
    every chain end has its port: ``box.ports[(id(chain), end)]`` is its ``y``."""
    boxes = {n.id: _box(g, n.id) for n in g.nodes if n.id != DLQ_ID}
    chains: list[Chain] = []
    for i, e in enumerate(x for x in g.edges if x.target != DLQ_ID):
        src, dst = boxes[e.source], boxes[e.target]
        step = 1 if dst.layer > src.layer else -1
        dummies = [Box(f"~{i}.{layer}", layer, 0, DUMMY_H)
                   for layer in range(src.layer + step, dst.layer, step)]
        boxes.update((d.key, d) for d in dummies)
        chains.append(Chain([src, *dummies, dst], e))
    ends: dict[str, dict[bool, int]] = {}
    for c in chains:  # room for one port per edge end on each side
        for box, right in ((c.boxes[0], not c.back), (c.boxes[-1], c.back)):
            sides = ends.setdefault(box.key, {True: 0, False: 0})
            sides[right] += 1
    for key, sides in ends.items():
        if not boxes[key].dummy:
            boxes[key].h = max(boxes[key].h, (max(sides.values()) + 1) * PORT_GAP)
    columns: list[list[Box]] = [[] for _ in range(max(b.layer for b in boxes.values()) + 1)]
    for b in boxes.values():
        columns[b.layer].append(b)
    _order(columns, [c for c in chains if not c.back])
    _place(columns, chains)
    _straighten(columns, chains)
    _ports(chains)
    return columns, chains


def _place(columns: list[list[Box]], chains: list[Chain]) -> None:
    label_w = [0] * len(columns)
    for c in chains:
        label_w[c.gap] = max(label_w[c.gap], text_size(c.edge.label, font(12))[0])
    height = max(sum(b.h for b in col) + V_GAP * (len(col) - 1) for col in columns)
    x = float(MARGIN)
    for i, col in enumerate(columns):
        col_w = max(b.w for b in col)
        y = MARGIN + TITLE_H + (height - sum(b.h for b in col) - V_GAP * (len(col) - 1)) / 2
        for b in col:
            b.x, b.y = x + (col_w - b.w) / 2, y
            y += b.h + V_GAP
        x += col_w + max(label_w[i] + 60, 80)


def _straighten(columns: list[list[Box]], chains: list[Chain]) -> None:
    """Move a long edge's waypoints to the free place in their column nearest to the
    straight line between the edge's ends."""
    top = MARGIN + TITLE_H
    for c in chains:
        src, dst = c.boxes[0], c.boxes[-1]
        for dummy in c.boxes[1:-1]:
            t = (dummy.x - src.x) / (dst.x - src.x)
            ideal = src.cy + t * (dst.cy - src.cy) - DUMMY_H / 2
            for y in sorted((ideal + 6 * k for k in range(-60, 61)),
                            key=lambda y: abs(y - ideal)):
                if y >= top and not any(o is not dummy and y - 12 < o.y + o.h
                                        and o.y < y + DUMMY_H + 12 for o in columns[dummy.layer]):
                    dummy.y = y
                    break


def _order(columns: list[list[Box]], chains: list[Chain]) -> None:
    """Reorder each column by the mean position of its neighbours (fewer crossings)."""
    nbrs: dict[str, tuple[list[Box], list[Box]]] = {}
    for c in chains:
        for a, b in pairwise(c.boxes):
            nbrs.setdefault(a.key, ([], []))[1].append(b)
            nbrs.setdefault(b.key, ([], []))[0].append(a)
    for sweep in range(8):
        side = sweep % 2  # 0: look upstream, 1: look downstream
        layers = range(1, len(columns)) if side == 0 else range(len(columns) - 2, -1, -1)
        for i in layers:
            pos = {b.key: k for col in columns for k, b in enumerate(col)}

            def center(b: Box, side: int = side, pos: dict[str, int] = pos) -> float:
                near = nbrs.get(b.key, ([], []))
                linked = near[side] or near[1 - side]  # none that side: the other side's
                return sum(pos[n.key] for n in linked) / len(linked) if linked else pos[b.key]

            columns[i].sort(key=center)


def _ports(chains: list[Chain]) -> None:
    """Spread the edge ends along each side of a box in the order of their far ends (a
    request before the results coming back from the same box)."""
    sides: dict[tuple[str, bool], list[tuple[float, int, Box, tuple[int, str]]]] = {}
    for c in chains:
        for end, box, far, right in ((0, c.boxes[0], c.boxes[1], not c.back),
                                     (-1, c.boxes[-1], c.boxes[-2], c.back)):
            sides.setdefault((box.key, right), []).append(
                (far.cy, int(c.back), box, (id(c), "out" if end == 0 else "in")))
    for entries in sides.values():
        entries.sort(key=lambda e: e[:2])
        for k, (_, _, box, port) in enumerate(entries):
            box.ports[port] = box.y + box.h * (k + 1) / (len(entries) + 1)
