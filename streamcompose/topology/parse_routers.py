"""Reading router agents (``route``, ``switch``, ``split``, ``shadow``, ``fallback``).

>>> from streamcompose.topology.yamlsource import read_yaml_text
>>> doc = read_yaml_text("split: {v1: 95, v2: 5}")
>>> parse_router(Reader(doc), "split", doc.data["split"], "split", Path(".")).targets
('v1', 'v2')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamcompose.topology.parse_specs import Reader, parse_model
from streamcompose.topology.specs import Case, RouterSpec

ROUTER_KEYS = ("route", "switch", "split", "shadow", "fallback")


def _route(r: Reader, raw: Any, key: str, base_dir: Path) -> RouterSpec:
    g = r.mapping(raw, key, {"model", "experts", "top_k", "capacity", "scores"})
    if "model" not in g:
        raise r.doc.error("a mixture-of-experts router needs a gate 'model'", key)
    experts = r.strings(g.get("experts"), f"{key}.experts")
    capacity = g.get("capacity")
    if capacity is not None and (isinstance(capacity, bool) or not (
            isinstance(capacity, int | float) and 0 < capacity <= 1)):
        raise r.doc.error(f"capacity is the largest share of a batch one expert may take, "
                          f"in (0, 1]; got {capacity!r}", f"{key}.capacity")
    return RouterSpec(
        kind="route", targets=experts,
        model=parse_model(r, g["model"], f"{key}.model", base_dir),
        scores=r.string(g["scores"], f"{key}.scores") if "scores" in g else None,
        top_k=r.number(g.get("top_k", 1), f"{key}.top_k", integer=True, minimum=1),
        capacity=float(capacity) if capacity is not None else None)


def _switch(r: Reader, raw: Any, key: str) -> RouterSpec:
    s = r.mapping(raw, key, {"cases", "default"})
    cases = s.get("cases") or []
    if not isinstance(cases, list):
        raise r.doc.error("must be a list of {when: CONDITION, to: AGENT}", f"{key}.cases")
    parsed = []
    for i, case in enumerate(cases):
        c = r.mapping(case, f"{key}.cases.{i}", {"when", "to"})
        parsed.append(Case(when=r.string(c.get("when"), f"{key}.cases.{i}.when"),
                           to=r.string(c.get("to"), f"{key}.cases.{i}.to")))
    default = r.string(s["default"], f"{key}.default") if s.get("default") else None
    if not parsed and default is None:
        raise r.doc.error("a switch needs cases or a default", key)
    targets = (*(c.to for c in parsed), *((default,) if default else ()))
    return RouterSpec(kind="switch", targets=tuple(dict.fromkeys(targets)), cases=tuple(parsed),
                      default=default)


def _split(r: Reader, raw: Any, key: str) -> RouterSpec:
    weights = r.mapping(raw, key, set(raw) if isinstance(raw, dict) else set())
    checked = {v: float(r.number(w, f"{key}.{v}", integer=False, minimum=0))
               for v, w in weights.items()}
    if not checked or sum(checked.values()) <= 0:
        raise r.doc.error("the variants' weights must sum to a positive number", key)
    return RouterSpec(kind="split", targets=tuple(checked), weights=checked)


def _shadow(r: Reader, raw: Any, key: str) -> RouterSpec:
    s = r.mapping(raw, key, {"primary", "shadows"})
    primary = r.string(s.get("primary"), f"{key}.primary")
    shadows = r.strings(s.get("shadows"), f"{key}.shadows")
    if primary in shadows:
        raise r.doc.error(f"{primary!r} cannot be both the primary and a shadow",
                          f"{key}.shadows")
    return RouterSpec(kind="shadow", targets=(primary, *shadows), primary=primary,
                      shadows=shadows)


def _fallback(r: Reader, raw: Any, key: str) -> RouterSpec:
    f = r.mapping(raw, key, {"primary", "backup", "deadline_ms"})
    primary = r.string(f.get("primary"), f"{key}.primary")
    backup = r.string(f.get("backup"), f"{key}.backup")
    if primary == backup:
        raise r.doc.error("the backup must be another agent than the primary", f"{key}.backup")
    return RouterSpec(kind="fallback", targets=(primary, backup), primary=primary,
                      backup=backup, deadline_ms=float(r.number(
                          f.get("deadline_ms", 1000), f"{key}.deadline_ms", integer=False,
                          minimum=1)))


def parse_router(r: Reader, kind: str, raw: Any, key: str, base_dir: Path) -> RouterSpec:
    """The router of kind ``kind`` (one of :data:`ROUTER_KEYS`) written at ``key``."""
    if kind == "route":
        return _route(r, raw, key, base_dir)
    return {"switch": _switch, "split": _split, "shadow": _shadow,
            "fallback": _fallback}[kind](r, raw, key)
