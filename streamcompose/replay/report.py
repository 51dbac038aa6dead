"""The diff report of ``replay`` and ``shadow-report``: per-request differences summed up
(agreement, flips by label and a confusion table for classifiers, numeric differences,
latency of both sides, requests only one side answered), as text or JSON.

>>> from streamcompose.replay.diff import Answer, compare
>>> diffs = [compare(f"r{i}", {}, Answer({"label": i % 2}, latency_ms=4),
...                  Answer({"label": 1}, latency_ms=6)) for i in range(4)]
>>> r = summarize(diffs, live="live", candidate="v2")
>>> r.compared, r.agreed, r.fields["label"].flips
(4, 2, {(0, 1): 2})
>>> print(r.render().splitlines()[1])
requests: 4   both answered: 4   agreement: 50.0% (2/4)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamcompose.replay.diff import RequestDiff

MAX_CONFUSION_LABELS = 20
MAX_FLIPS_SHOWN = 10
STATUSES = ("both", "only_live", "only_candidate", "neither")


@dataclass
class FieldSummary:
    """One compared field over every request both sides answered."""

    kind: str
    compared: int = 0
    agreed: int = 0
    pairs: Counter = field(default_factory=Counter)  # (live label, candidate label) -> n
    abs_diffs: list[float] = field(default_factory=list)

    @property
    def flips(self) -> dict[tuple[Any, Any], int]:
        """Labels that changed, (live, candidate) -> count, most frequent first."""
        return dict(sorted(((k, n) for k, n in self.pairs.items() if k[0] != k[1]),
                           key=lambda kn: (-kn[1], str(kn[0]))))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "compared": self.compared,
                               "agreed": self.agreed, "agreement": _rate(self.agreed,
                                                                         self.compared)}
        if self.pairs:
            out["flips"] = [{"live": a, "candidate": b, "count": n}
                            for (a, b), n in self.flips.items()]
            out["confusion"] = [{"live": a, "candidate": b, "count": n}
                                for (a, b), n in sorted(self.pairs.items(), key=str)]
        if self.abs_diffs:
            out["abs_diff"] = _spread(self.abs_diffs)
        return out


@dataclass
class Report:
    """The comparison of two sides (``live`` and ``candidate`` name them) over requests."""

    live: str
    candidate: str
    requests: int = 0
    compared: int = 0
    agreed: int = 0
    statuses: Counter = field(default_factory=Counter)
    failed: dict[str, int] = field(default_factory=lambda: {"live": 0, "candidate": 0})
    fields: dict[str, FieldSummary] = field(default_factory=dict)
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: {"live": [],
                                                                         "candidate": []})
    differences: list[RequestDiff] = field(default_factory=list)
    title: str = ""
    keyless: int = 0  # records left out: without a key, so without a request id to match

    def add(self, d: RequestDiff) -> None:
        self.requests += 1
        self.statuses[d.status] += 1
        for side, answer in (("live", d.live), ("candidate", d.candidate)):
            if answer is not None and not answer.ok:
                self.failed[side] += 1
            if answer is not None and answer.ok and answer.latency_ms is not None:
                self.latency_ms[side].append(answer.latency_ms)
        if d.status == "both":
            self.compared += 1
            self.agreed += bool(d.agree)
            for f in d.fields:
                s = self.fields.setdefault(f.field, FieldSummary(f.kind))
                s.compared += 1
                s.agreed += f.agree
                if f.kind in ("label", "proba"):
                    s.pairs[(f.live, f.candidate)] += 1
                if f.abs_diff is not None:
                    s.abs_diffs.append(f.abs_diff)
        if d.agree is not True:
            self.differences.append(d)

    @property
    def agreement(self) -> float | None:
        return _rate(self.agreed, self.compared)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready values, the per-request differences included."""
        return {"title": self.title, "live": self.live, "candidate": self.candidate,
                "requests": self.requests, "keyless": self.keyless,
                "compared": self.compared, "agreed": self.agreed,
                "agreement": self.agreement,
                "outcomes": {s: self.statuses.get(s, 0) for s in STATUSES},
                "failed": dict(self.failed),
                "only_live": [d.id for d in self.differences if d.status == "only_live"],
                "only_candidate": [d.id for d in self.differences
                                   if d.status == "only_candidate"],
                "fields": {n: s.to_json() for n, s in self.fields.items()},
                "latency_ms": {side: _spread(v) if v else None
                               for side, v in self.latency_ms.items()},
                "differences": [d.to_json() for d in self.differences]}

    def render(self) -> str:
        """The report as a text table."""
        lines = [self.title or f"{self.candidate} against {self.live}",
                 f"requests: {self.requests}   both answered: {self.compared}   agreement: "
                 f"{_percent(self.agreed, self.compared)}"]
        for name, s in self.fields.items():
            lines += ["", *_render_field(name, s)]
        lines += ["", f"{'latency ms':<22}{'n':>7}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}"]
        for side, label in (("live", self.live), ("candidate", self.candidate)):
            v = self.latency_ms[side]
            spread = _spread(v) if v else None
            lines.append(f"  {label[:20]:<20}{len(v):>7}" + "".join(
                f"{spread[k]:>9.1f}" if spread else f"{'-':>9}"
                for k in ("p50", "p95", "p99", "max")))
        s = self.statuses
        lines += ["", f"answered by both: {s['both']}   only {self.live}: {s['only_live']}   "
                      f"only {self.candidate}: {s['only_candidate']}   neither: {s['neither']}",
                  f"dead-lettered: {self.live} {self.failed['live']}, {self.candidate} "
                  f"{self.failed['candidate']}"]
        if self.keyless:
            lines.append(f"left out: {self.keyless} records without a key (no request id to "
                         "match)")
        return "\n".join(lines)


def summarize(diffs: Iterable[RequestDiff], live: str = "live", candidate: str = "candidate",
              title: str = "") -> Report:
    """Sum up per-request differences into a :class:`Report`."""
    report = Report(live, candidate, title=title)
    for d in diffs:
        report.add(d)
    return report


def _rate(n: int, total: int) -> float | None:
    return n / total if total else None


def _percent(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}% ({n}/{total})" if total else "- (nothing to compare)"


def _spread(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    p50, p95, p99 = np.percentile(v, [50, 95, 99])
    return {"mean": float(v.mean()), "p50": float(p50), "p95": float(p95), "p99": float(p99),
            "max": float(v.max())}


def _render_field(name: str, s: FieldSummary) -> list[str]:
    what = {"label": "labels", "proba": "class probabilities, label = argmax",
            "number": "numbers", "other": "values"}[s.kind]
    lines = [f"field {name} ({what}): agreement {_percent(s.agreed, s.compared)}"]
    if s.abs_diffs:
        d = _spread(s.abs_diffs)
        lines.append(f"  largest |difference| per request: mean {d['mean']:.4g}   p95 "
                     f"{d['p95']:.4g}   max {d['max']:.4g}")
    flips = s.flips
    if s.pairs:
        shown = ", ".join(f"{a}→{b} ×{n}" for (a, b), n in list(flips.items())[:MAX_FLIPS_SHOWN])
        more = f" (+{len(flips) - MAX_FLIPS_SHOWN} more)" if len(flips) > MAX_FLIPS_SHOWN else ""
        lines.append(f"  flips (live → candidate): {shown or 'none'}{more}")
        lines += _confusion(s.pairs)
    return lines


def _confusion(pairs: Counter) -> list[str]:
    labels = sorted({x for pair in pairs for x in pair}, key=lambda x: (str(type(x)), x))
    if len(labels) > MAX_CONFUSION_LABELS:
        return [f"  ({len(labels)} labels: the confusion table is in --json)"]
    width = max(5, *(len(str(x)) + 2 for x in labels))
    head = "  live\\cand".ljust(12) + "".join(str(x).rjust(width) for x in labels)
    rows = ["  " + str(a).ljust(10) + "".join(
        (str(pairs[(a, b)]) if pairs[(a, b)] else ".").rjust(width) for b in labels)
        for a in labels]
    return [head, *rows]
