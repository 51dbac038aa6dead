"""Drawing a topology :class:`~streamcompose.topology.graph_model.Graph` with Pillow.

The boxes come from :func:`~streamcompose.topology.graph_layout.layout`: models are
rounded boxes, joiners double-edged green boxes, routers purple hexagons, topics pills.
Data arrows are dark, a fallback target's results going back to its router green, shadow
copies grey and dashed; the dead-letter topic is a bar under the agents that every
agent's dashed red arrow runs down to (a shadow's go to its own dead-letter topic).

>>> from streamcompose.topology.graph_model import graph_of
>>> from streamcompose.topology.model import INPUT, AgentSpec, ModelSpec, Topology
>>> t = Topology(name="demo", agents=(
...     AgentSpec(name="inc", inputs=(INPUT,), model=ModelSpec(runtime="python")),))
>>> draw_png(graph_of(t)).mode
'RGB'
"""

from __future__ import annotations

import math
from itertools import pairwise

from PIL import Image, ImageDraw

from streamcompose.topology.graph_layout import (
    HEX_INSET,
    LINE_GAP,
    MARGIN,
    Box,
    Chain,
    font,
    layout,
    line_font,
    text_size,
)
from streamcompose.topology.graph_model import DLQ_ID, Graph

INK, MUTED, DLQ_INK = (40, 40, 48), (95, 95, 110), (180, 74, 74)
BLUE = ((227, 238, 251), (61, 111, 180))
SHAPES = {"input": BLUE, "output": BLUE, "topic": ((236, 236, 236), (122, 122, 122)),
          "dlq": ((251, 228, 228), DLQ_INK), "model": ((255, 246, 216), (138, 109, 29)),
          "join": ((226, 243, 224), (59, 122, 53)), "router": ((236, 228, 247), (106, 74, 156))}
GROUP_FILL = (248, 248, 250)
EDGE_INK = {"return": (59, 122, 53), "copy": (122, 122, 122), "dlq": DLQ_INK}
Rect = tuple[float, float, float, float]
Point = tuple[float, float]


def _dashed(d: ImageDraw.ImageDraw, points: list[Point], fill: tuple, dash: float = 6,
            gap: float = 4) -> None:
    for (x0, y0), (x1, y1) in pairwise(points):
        length = math.hypot(x1 - x0, y1 - y0)
        t = 0.0
        while t < length:
            t1 = min(t + dash, length)
            d.line([(x0 + (x1 - x0) * t / length, y0 + (y1 - y0) * t / length),
                    (x0 + (x1 - x0) * t1 / length, y0 + (y1 - y0) * t1 / length)],
                   fill=fill, width=2)
            t = t1 + gap


def _arrowhead(d: ImageDraw.ImageDraw, tail: Point, tip: Point, fill: tuple) -> None:
    angle = math.atan2(tip[1] - tail[1], tip[0] - tail[0])
    wing = [(tip[0] - 10 * math.cos(angle + s * 0.4), tip[1] - 10 * math.sin(angle + s * 0.4))
            for s in (-1, 1)]
    d.polygon([tip, *wing], fill=fill)


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _points(c: Chain) -> list[Point]:
    src, dst, back = c.boxes[0], c.boxes[-1], c.back
    points = [(src.side_x(src.ports[id(c), "out"], right=not back), src.ports[id(c), "out"])]
    for dummy in c.boxes[1:-1]:
        points += [(dummy.x, dummy.cy), (dummy.x + 1, dummy.cy)][::-1 if back else 1]
    return [*points, (dst.side_x(dst.ports[id(c), "in"], right=back), dst.ports[id(c), "in"])]


def _labelled(chains: list[Chain], paths: dict[int, list[Point]]) -> set[int]:
    """The chains whose label is drawn: not dead letters (their box names the topic); of
    a wide fan-out of one topic from one box, only its most horizontal edge."""
    groups: dict[tuple[str, str], list[Chain]] = {}
    for c in chains:
        if c.edge.kind != "dlq":
            key = (c.boxes[0].key, c.edge.label if c.edge.kind == "data" else str(id(c)))
            groups.setdefault(key, []).append(c)
    chosen = set()
    for group in groups.values():
        if len(group) > 2:
            group = [min(group, key=lambda c: abs(paths[id(c)][0][1] - paths[id(c)][1][1]))]
        chosen.update(id(c) for c in group)
    return chosen


def _draw_labels(d: ImageDraw.ImageDraw, chains: list[Chain], paths: dict[int, list[Point]],
                 boxes: list[Box]) -> None:
    """Each label on its edge's first segment, slid along it to stay clear of the others
    and of the boxes."""
    taken: list[Rect] = [(b.x, b.y, b.x + b.w, b.y + b.h) for b in boxes if not b.dummy]
    chosen = _labelled(chains, paths)
    for c in chains:
        if id(c) not in chosen:
            continue
        (x0, y0), (x1, y1) = paths[id(c)][:2]
        tw, th = text_size(c.edge.label, font(12))
        spots = []
        for t in (0.5, 0.35, 0.65, 0.2, 0.8):
            mx, my = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
            spots.append((mx, my, (mx - tw / 2 - 3, my - th / 2 - 4, mx + tw / 2 + 3,
                                   my + th / 2 + 4)))
        mx, my, rect = next((s for s in spots if not any(_overlaps(s[2], r) for r in taken)),
                            spots[0])
        taken.append(rect)
        d.rounded_rectangle(rect, radius=4, fill="white")
        d.text((mx, my), c.edge.label, font=font(12), anchor="mm",
               fill=EDGE_INK.get(c.edge.kind, MUTED))


def _draw_dlq_bar(d: ImageDraw.ImageDraw, g: Graph, columns: list[list[Box]],
                  bar: Rect) -> None:
    """The dead-letter bar and the dashed arrows of the agents above it: the lowest box
    of a column straight down, the others through a bus right of their column."""
    senders = {e.source for e in g.edges if e.target == DLQ_ID}
    bar_left, bar_top, bar_right, bar_bottom = bar
    for col in columns:
        real = [b for b in col if b.key in senders]
        bus_x, bus_top = max((b.x + b.w for b in col), default=0) + 14, bar_top
        lowest = max((b for b in col if not b.dummy), key=lambda b: b.y, default=None)
        for b in real:
            cx, bottom = b.x + b.w / 2, b.y + b.h
            if b is lowest:
                _dashed(d, [(cx, bottom), (cx, bar_top)], DLQ_INK)
                _arrowhead(d, (cx, bottom), (cx, bar_top), DLQ_INK)
            else:
                _dashed(d, [(cx, bottom), (cx, bottom + 14), (bus_x, bottom + 14)], DLQ_INK)
                bus_top = min(bus_top, bottom + 14)
        if bus_top < bar_top:
            _dashed(d, [(bus_x, bus_top), (bus_x, bar_top)], DLQ_INK)
            _arrowhead(d, (bus_x, bus_top), (bus_x, bar_top), DLQ_INK)
    d.rectangle(bar, fill=SHAPES["dlq"][0])
    _dashed(d, [(bar_left, bar_top), (bar_right, bar_top), (bar_right, bar_bottom),
                (bar_left, bar_bottom), (bar_left, bar_top)], DLQ_INK)
    d.text((bar_left + 16, (bar_top + bar_bottom) / 2),
           f"{g.node(DLQ_ID).lines[0]}   (dead letters)", font=font(13), fill=DLQ_INK,
           anchor="lm")


def _pill(x0: float, y0: float, x1: float, y1: float, r: float) -> list[Point]:
    """The outline of a rounded rectangle as a closed polyline."""
    corners = ((x1 - r, y0 + r, -90), (x1 - r, y1 - r, 0), (x0 + r, y1 - r, 90),
               (x0 + r, y0 + r, 180))
    points = [(cx + r * math.cos(math.radians(a0 + 15 * k)),
               cy + r * math.sin(math.radians(a0 + 15 * k)))
              for cx, cy, a0 in corners for k in range(7)]
    return [*points, points[0]]


def _draw_box(d: ImageDraw.ImageDraw, g: Graph, b: Box) -> None:
    node = g.node(b.key)
    fill, stroke = SHAPES[node.kind]
    x0, y0, x1, y1 = b.x, b.y, b.x + b.w, b.y + b.h
    if node.kind == "router":
        d.polygon([(x0 + HEX_INSET, y0), (x1 - HEX_INSET, y0), (x1, b.cy),
                   (x1 - HEX_INSET, y1), (x0 + HEX_INSET, y1), (x0, b.cy)],
                  fill=fill, outline=stroke, width=2)
    else:
        radius = 8 if node.is_agent else min(b.h // 2, 18)
        d.rounded_rectangle([x0, y0, x1, y1], radius=radius, fill=fill,
                            outline=None if node.kind == "dlq" else stroke, width=2)
        if node.kind == "dlq":
            _dashed(d, _pill(x0, y0, x1, y1, radius), stroke)
        if node.kind == "join":
            d.rounded_rectangle([x0 + 4, y0 + 4, x1 - 4, y1 - 4], radius=5, outline=stroke)
    text_h = (font(15).size + LINE_GAP) * len(node.lines) - LINE_GAP
    y = b.cy - text_h / 2
    for i, line in enumerate(node.lines):
        d.text((b.x + b.w / 2, y), line, font=line_font(node.kind, i), anchor="ma",
               fill=INK if i == 0 else MUTED)
        y += font(15).size + LINE_GAP


def _draw_groups(d: ImageDraw.ImageDraw, g: Graph, boxes: list[Box]) -> None:
    """A dashed frame, labelled, around the agents of each co-located group."""
    for group in g.groups:
        inside = [b for b in boxes if b.key in group.members]
        x0, y0 = min(b.x for b in inside) - 12, min(b.y for b in inside) - 26
        x1, y1 = max(b.x + b.w for b in inside) + 12, max(b.y + b.h for b in inside) + 12
        d.rounded_rectangle((x0, y0, x1, y1), radius=10, fill=GROUP_FILL)
        _dashed(d, [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)], MUTED)
        d.text((x0 + 10, y0 + 5), group.label, font=font(12, bold=True), fill=MUTED)


def draw_png(g: Graph) -> Image.Image:
    """Lay out and draw the graph; returns an RGB image."""
    columns, chains = layout(g)
    boxes = [b for col in columns for b in col]
    senders = {e.source for e in g.edges if e.target == DLQ_ID}
    agent_cols = [c for c in columns if any(b.key in senders for b in c)] or columns
    bar_top = max(b.y + b.h for b in boxes) + 46
    bar_left = min(b.x for b in agent_cols[0])
    dlq_w = text_size(f"{g.node(DLQ_ID).lines[0]}   (dead letters)", font(13))[0] + 2 * 16
    bar_right = max(max(b.x + b.w for b in agent_cols[-1]) + 24, bar_left + dlq_w)
    width = int(max(max(b.x + b.w for b in boxes), bar_right) + MARGIN)
    img = Image.new("RGB", (width, int(bar_top + 30 + MARGIN)), "white")
    d = ImageDraw.Draw(img)
    d.text((MARGIN, MARGIN - 6), f"topology {g.name}", font=font(16, bold=True), fill=INK)
    # groups and dead letters first, so that boxes and data arrows are drawn over them
    _draw_groups(d, g, boxes)
    _draw_dlq_bar(d, g, columns, (bar_left, bar_top, bar_right, bar_top + 30))
    paths = {id(c): _points(c) for c in chains}
    for c in chains:
        ink = EDGE_INK.get(c.edge.kind, INK)
        points = paths[id(c)]
        if c.edge.dashed:
            _dashed(d, points, ink)
        else:
            d.line(points, fill=ink, width=2, joint="curve")
        _arrowhead(d, points[-2], points[-1], ink)
    _draw_labels(d, chains, paths, boxes)
    for b in boxes:
        if not b.dummy:
            _draw_box(d, g, b)
    return img
