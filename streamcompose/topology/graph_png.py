"""Drawing a topology :class:`~streamcompose.topology.graph.Graph` with Pillow.

A small layered layout: one column per depth (input topic, agents by topological depth,
output topic), edges that skip columns routed through invisible waypoints, node order in
each column improved by barycenter sweeps, and the dead-letter topic as a bar under the
agents that every agent's dashed arrow runs down to.

>>> from streamcompose.topology.graph import graph_of
>>> from streamcompose.topology.model import INPUT, AgentSpec, ModelSpec, Topology
>>> t = Topology(name="demo", agents=(
...     AgentSpec(name="inc", inputs=(INPUT,), model=ModelSpec(runtime="python")),))
>>> draw_png(graph_of(t)).mode
'RGB'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from itertools import pairwise

from PIL import Image, ImageDraw, ImageFont

from streamcompose.topology.graph import DLQ_ID, Graph

MARGIN, PAD_X, PAD_Y, V_GAP, LINE_GAP, DUMMY_H = 30, 16, 10, 36, 4, 18
INK, MUTED, DLQ_INK = (40, 40, 48), (95, 95, 110), (180, 74, 74)
FILL = {"input": (227, 238, 251), "output": (227, 238, 251), "agent": (255, 246, 216)}
STROKE = {"input": (61, 111, 180), "output": (61, 111, 180), "agent": (138, 109, 29)}
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@cache
def _font(size: int, bold: bool = False) -> Font:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(name, size)
    except OSError:
        return ImageFont.load_default(size=size)


def _text_size(text: str, font: Font) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return int(right - left), int(bottom - top)


def _fonts(kind: str, index: int) -> Font:
    return _font(15, bold=True) if index == 0 and kind == "agent" else _font(13)


@dataclass
class _Box:
    key: str
    layer: int
    w: int
    h: int
    x: float = 0.0
    y: float = 0.0
    dummy: bool = False


def _layout(g: Graph) -> tuple[list[list[_Box]], list[tuple[list[_Box], str]]]:
    """Columns of boxes (positioned) and each data edge as its chain of boxes + label."""
    boxes: dict[str, _Box] = {}
    for n in g.nodes:
        if n.id == DLQ_ID:
            continue
        sizes = [_text_size(line, _fonts(n.kind, i)) for i, line in enumerate(n.lines)]
        w = max(s[0] for s in sizes) + 2 * PAD_X
        h = sum(_font(15).size + LINE_GAP for _ in sizes) - LINE_GAP + 2 * PAD_Y
        boxes[n.id] = _Box(n.id, n.depth, max(w, 70), h)
    chains: list[tuple[list[_Box], str]] = []
    for i, e in enumerate(x for x in g.edges if not x.dashed):
        src, dst = boxes[e.source], boxes[e.target]
        chain = [src]
        for layer in range(src.layer + 1, dst.layer):
            dummy = _Box(f"~{i}.{layer}", layer, 0, DUMMY_H, dummy=True)
            boxes[dummy.key] = dummy
            chain.append(dummy)
        chains.append(([*chain, dst], e.label))
    columns: list[list[_Box]] = [[] for _ in range(max(b.layer for b in boxes.values()) + 1)]
    for b in boxes.values():
        columns[b.layer].append(b)
    _order(columns, chains)
    label_w = [0] * len(columns)
    for chain, label in chains:
        label_w[chain[0].layer] = max(label_w[chain[0].layer], _text_size(label, _font(12))[0])
    height = max(sum(b.h for b in col) + V_GAP * (len(col) - 1) for col in columns)
    x = float(MARGIN)
    for i, col in enumerate(columns):
        col_w = max(b.w for b in col)
        y = MARGIN + 28 + (height - sum(b.h for b in col) - V_GAP * (len(col) - 1)) / 2
        for b in col:
            b.x, b.y = x + (col_w - b.w) / 2, y
            y += b.h + V_GAP
        x += col_w + max(label_w[i] + 60, 80)
    return columns, chains


def _order(columns: list[list[_Box]], chains: list[tuple[list[_Box], str]]) -> None:
    """Reorder each column by the mean position of its neighbours (fewer crossings)."""
    nbrs: dict[str, tuple[list[_Box], list[_Box]]] = {}
    for chain, _ in chains:
        for a, b in pairwise(chain):
            nbrs.setdefault(a.key, ([], []))[1].append(b)
            nbrs.setdefault(b.key, ([], []))[0].append(a)
    for sweep in range(4):
        side = sweep % 2  # 0: look upstream, 1: look downstream
        layers = range(1, len(columns)) if side == 0 else range(len(columns) - 2, -1, -1)
        for i in layers:
            pos = {b.key: k for col in columns for k, b in enumerate(col)}

            def center(b: _Box, side: int = side, pos: dict[str, int] = pos) -> float:
                linked = nbrs.get(b.key, ([], []))[side]
                return sum(pos[n.key] for n in linked) / len(linked) if linked else pos[b.key]

            columns[i].sort(key=center)


def _dashed(d: ImageDraw.ImageDraw, points: list[tuple[float, float]], fill: tuple,
            dash: float = 6, gap: float = 4) -> None:
    for (x0, y0), (x1, y1) in pairwise(points):
        length = math.hypot(x1 - x0, y1 - y0)
        t = 0.0
        while t < length:
            t1 = min(t + dash, length)
            d.line([(x0 + (x1 - x0) * t / length, y0 + (y1 - y0) * t / length),
                    (x0 + (x1 - x0) * t1 / length, y0 + (y1 - y0) * t1 / length)],
                   fill=fill, width=2)
            t = t1 + gap


def _arrowhead(d: ImageDraw.ImageDraw, tail: tuple[float, float], tip: tuple[float, float],
               fill: tuple) -> None:
    angle = math.atan2(tip[1] - tail[1], tip[0] - tail[0])
    wing = [(tip[0] - 10 * math.cos(angle + s * 0.4), tip[1] - 10 * math.sin(angle + s * 0.4))
            for s in (-1, 1)]
    d.polygon([tip, *wing], fill=fill)


def _ports(box: _Box, others: list[_Box]) -> dict[str, float]:
    """Spread the ends of a box's edges along its side, in the order of the far ends."""
    ranked = sorted(dict.fromkeys(o.key for o in others),
                    key=lambda k: next(o.y + o.h / 2 for o in others if o.key == k))
    return {k: box.y + box.h * (i + 1) / (len(ranked) + 1) for i, k in enumerate(ranked)}


def draw_png(g: Graph) -> Image.Image:
    """Lay out and draw the graph; returns an RGB image."""
    columns, chains = _layout(g)
    boxes = {b.key: b for col in columns for b in col}
    agents = [b for b in boxes.values() if not b.dummy and g.node(b.key).kind == "agent"]
    agent_cols = [c for c in columns if any(b in agents for b in c)]
    bar_top = max(b.y + b.h for b in boxes.values()) + 46
    bar_left = min(b.x for b in agent_cols[0])
    last = agent_cols[-1]
    bar_right = max(b.x + b.w for b in last) + 24
    dlq_text = f"{g.node(DLQ_ID).lines[0]}   (dead letters)"
    bar_right = max(bar_right, bar_left + _text_size(dlq_text, _font(13))[0] + 2 * PAD_X)
    width = int(max(max(b.x + b.w for b in boxes.values()), bar_right) + MARGIN)
    img = Image.new("RGB", (width, int(bar_top + 34 + MARGIN)), "white")
    d = ImageDraw.Draw(img)
    d.text((MARGIN, MARGIN - 6), f"topology {g.name}", font=_font(16, bold=True), fill=INK)

    outs = {b.key: [] for b in boxes.values()}
    ins = {b.key: [] for b in boxes.values()}
    for chain, _ in chains:
        outs[chain[0].key].append(chain[1])
        ins[chain[-1].key].append(chain[-2])
    out_ports = {k: _ports(boxes[k], v) for k, v in outs.items()}
    in_ports = {k: _ports(boxes[k], v) for k, v in ins.items()}

    # dead-letter edges first, so that boxes and data arrows are drawn over them; boxes
    # with others below them join a bus to the right of their column
    for col in columns:
        real = [b for b in col if b in agents]
        bus_x, bus_top = max((b.x + b.w for b in col), default=0) + 14, bar_top
        for b in real:
            cx, bottom = b.x + b.w / 2, b.y + b.h
            if b is real[-1]:
                _dashed(d, [(cx, bottom), (cx, bar_top)], DLQ_INK)
                _arrowhead(d, (cx, bottom), (cx, bar_top), DLQ_INK)
            else:
                _dashed(d, [(cx, bottom), (cx, bottom + 14), (bus_x, bottom + 14)], DLQ_INK)
                bus_top = min(bus_top, bottom + 14)
        if bus_top < bar_top:
            _dashed(d, [(bus_x, bus_top), (bus_x, bar_top)], DLQ_INK)
            _arrowhead(d, (bus_x, bus_top), (bus_x, bar_top), DLQ_INK)
    d.rectangle([bar_left, bar_top, bar_right, bar_top + 30], fill=(251, 228, 228))
    _dashed(d, [(bar_left, bar_top), (bar_right, bar_top), (bar_right, bar_top + 30),
                (bar_left, bar_top + 30), (bar_left, bar_top)], DLQ_INK)
    d.text((bar_left + PAD_X, bar_top + 15), dlq_text, font=_font(13), fill=DLQ_INK,
           anchor="lm")

    # a wide fan-out carries one topic: label only its most horizontal edge
    labelled = {}
    for chain, _ in chains:
        src, first = chain[0], chain[1]
        slope = abs(out_ports[src.key][first.key] - (first.y + first.h / 2))
        if len(outs[src.key]) <= 2 or slope < labelled.get(src.key, (math.inf,))[0]:
            labelled[src.key] = (slope, id(chain))
    drawn_labels: list[tuple[str, tuple[float, float, float, float]]] = []
    for chain, label in chains:
        src, dst = chain[0], chain[-1]
        points = [(src.x + src.w, out_ports[src.key][chain[1].key])]
        for dummy in chain[1:-1]:
            points += [(dummy.x, dummy.y + DUMMY_H / 2), (dummy.x + 1, dummy.y + DUMMY_H / 2)]
        points.append((dst.x, in_ports[dst.key][chain[-2].key]))
        d.line(points, fill=INK, width=2, joint="curve")
        _arrowhead(d, points[-2], points[-1], INK)
        mx, my = (points[0][0] + points[1][0]) / 2, (points[0][1] + points[1][1]) / 2
        tw, th = _text_size(label, _font(12))
        rect = (mx - tw / 2 - 3, my - th / 2 - 3, mx + tw / 2 + 3, my + th / 2 + 3)
        if len(outs[src.key]) > 2 and labelled[src.key][1] != id(chain):
            continue
        if any(text == label and rect[0] < r[2] and r[0] < rect[2] and rect[1] < r[3]
               and r[1] < rect[3] for text, r in drawn_labels):
            continue
        drawn_labels.append((label, rect))
        d.rounded_rectangle(rect, radius=4, fill="white")
        d.text((mx, my), label, font=_font(12), fill=MUTED, anchor="mm")

    for b in boxes.values():
        if b.dummy:
            continue
        node = g.node(b.key)
        radius = b.h // 2 if node.kind != "agent" else 8
        d.rounded_rectangle([b.x, b.y, b.x + b.w, b.y + b.h], radius=radius,
                            fill=FILL[node.kind], outline=STROKE[node.kind], width=2)
        y = b.y + PAD_Y
        for i, line in enumerate(node.lines):
            font = _fonts(node.kind, i)
            d.text((b.x + b.w / 2, y), line, font=font, anchor="mt",
                   fill=INK if i == 0 else MUTED)
            y += _font(15).size + LINE_GAP
    return img
