"""What ``streamcompose top`` shows: per agent, rates, latency, batch size, lag and
errors, from two scrapes of its workers' metrics some seconds apart.

>>> from streamcompose.observe.scrape import parse_metrics
>>> def scrape(n):
...     return parse_metrics(f'''streamcompose_records_out_total{{agent="a"}} {n}
... streamcompose_inference_duration_seconds_bucket{{agent="a",le="0.01"}} {n}
... streamcompose_inference_duration_seconds_bucket{{agent="a",le="+Inf"}} {n}
... streamcompose_lag{{agent="a"}} 7
... ''')
>>> row = summarize({"a": [scrape(10)]}, {"a": [scrape(30)]}, 2.0)[0]
>>> row.out_per_s, row.lag, round(row.p50_ms, 1)
(10.0, 7.0, 5.0)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from streamcompose.observe.scrape import Sample, value

P = "streamcompose_"


@dataclass(frozen=True)
class AgentRow:
    """One agent's line: rates per second over the interval, latency in milliseconds."""

    agent: str
    workers: int
    up: int
    in_per_s: float
    out_per_s: float
    p50_ms: float | None
    p95_ms: float | None
    batch: float | None
    queue_p95_ms: float | None
    lag: float
    errors: float
    errors_per_s: float
    restarts: float
    drift: float | None
    drift_alert: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _total(scrapes: list[list[Sample]], name: str, **labels: str) -> float:
    return sum(value(s, name, **labels) for s in scrapes)


def _buckets(scrapes: list[list[Sample]], name: str) -> dict[float, float]:
    out: dict[float, float] = {}
    for samples in scrapes:
        for s in samples:
            if s.name == f"{name}_bucket":
                le = float(s.labels["le"])
                out[le] = out.get(le, 0.0) + s.value
    return out


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile of a cumulative histogram ``{upper bound: count}``, interpolated
    within its bucket as Prometheus's ``histogram_quantile`` does.

    >>> round(quantile(0.5, {0.1: 0, 0.2: 10, math.inf: 10}), 6)
    0.15
    """
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank, lower, below = q * buckets[bounds[-1]], 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


def _delta_quantile(q: float, before: list[list[Sample]], after: list[list[Sample]],
                    name: str) -> float | None:
    """The quantile over the interval; over the worker's life when nothing came in it."""
    old, new = _buckets(before, name), _buckets(after, name)
    delta = {le: n - old.get(le, 0.0) for le, n in new.items()}
    found = quantile(q, delta)
    if found is None:
        found = quantile(q, new)
    return None if found is None else found * 1000


def _row(agent: str, before: list[list[Sample]], after: list[list[Sample]], seconds: float,
         workers: int) -> AgentRow:
    def rate(name: str) -> float:
        return max(0.0, _total(after, name) - _total(before, name)) / seconds

    count = _total(after, f"{P}batch_size_count") - _total(before, f"{P}batch_size_count")
    size = _total(after, f"{P}batch_size_sum") - _total(before, f"{P}batch_size_sum")
    if count <= 0:
        count, size = _total(after, f"{P}batch_size_count"), _total(after, f"{P}batch_size_sum")
    drift = [s.value for samples in after for s in samples if s.name == f"{P}drift_score"]
    return AgentRow(
        agent=agent, workers=workers, up=sum(1 for s in after if s),
        in_per_s=rate(f"{P}records_in_total"), out_per_s=rate(f"{P}records_out_total"),
        p50_ms=_delta_quantile(0.5, before, after, f"{P}inference_duration_seconds"),
        p95_ms=_delta_quantile(0.95, before, after, f"{P}inference_duration_seconds"),
        batch=size / count if count > 0 else None,
        queue_p95_ms=_delta_quantile(0.95, before, after, f"{P}queue_duration_seconds"),
        lag=_total(after, f"{P}lag"), errors=_total(after, f"{P}errors_total"),
        errors_per_s=rate(f"{P}errors_total"), restarts=_total(after, f"{P}restarts_total"),
        drift=max(drift) if drift else None,
        drift_alert=_total(after, f"{P}drift_alert") > 0)


def summarize(before: dict[str, list[list[Sample]]], after: dict[str, list[list[Sample]]],
              seconds: float) -> list[AgentRow]:
    """One row per agent from two scrapes (agent -> one sample list per worker; an
    empty list for a worker that could not be read) ``seconds`` apart."""
    return [_row(agent, before.get(agent, []), scrapes, max(seconds, 1e-9), len(scrapes))
            for agent, scrapes in after.items()]


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def table(name: str, rows: list[AgentRow]) -> str:
    """The rows as the text table ``top`` prints."""
    head = (f"{'agent':<16}{'up':>6}{'in/s':>9}{'out/s':>9}{'p50 ms':>9}{'p95 ms':>9}"
            f"{'batch':>7}{'queue95':>9}{'lag':>8}{'errors':>8}{'err/s':>7}{'restarts':>9}"
            f"{'drift':>7}")
    lines = [f"streamcompose top: {name}", head]
    for r in rows:
        drift = _fmt(r.drift, 2) + ("!" if r.drift_alert else "")
        lines.append(f"{r.agent:<16}{f'{r.up}/{r.workers}':>6}{r.in_per_s:>9.1f}"
                     f"{r.out_per_s:>9.1f}{_fmt(r.p50_ms, 2):>9}{_fmt(r.p95_ms, 2):>9}"
                     f"{_fmt(r.batch):>7}{_fmt(r.queue_p95_ms, 2):>9}{r.lag:>8.0f}"
                     f"{r.errors:>8.0f}{r.errors_per_s:>7.1f}{r.restarts:>9.0f}{drift:>7}")
    return "\n".join(lines)
