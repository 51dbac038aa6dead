"""The Grafana dashboard of deployed topologies: every panel and its PromQL queries,
written once here; ``dashboards/streamcompose.json`` is :func:`grafana_dashboard` of no
topology (a ``topology`` variable picks one) and ``streamcompose render grafana NAME``
gives one whose variable starts at NAME.

>>> [p.title for p in PANELS][:2]
['Throughput (results/s)', 'Consumed (records/s)']
>>> queries("digits")[0][1]
'sum by (agent) (rate(streamcompose_records_out_total{topology="digits"}[1m]))'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SEL = '{topology="$topology"}'
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Panel:
    """A time-series panel: its title, unit and queries (legend, PromQL)."""

    title: str
    unit: str
    targets: tuple[tuple[str, str], ...]
    description: str = ""


def _rate(metric: str, by: str = "agent", match: str = "") -> str:
    selector = SEL[:-1] + match + "}"
    return f"sum by ({by}) (rate({metric}{selector}[{RATE}]))"


def _quantile(q: float, metric: str) -> tuple[str, str]:
    return (f"{{{{agent}}}} p{round(q * 100)}",
            f"histogram_quantile({q}, sum by (agent, le) (rate({metric}_bucket{SEL}[{RATE}])))")


PANELS: tuple[Panel, ...] = (
    Panel("Throughput (results/s)", "ops",
          (("{{agent}}", _rate("streamcompose_records_out_total")),)),
    Panel("Consumed (records/s)", "ops",
          (("{{agent}}", _rate("streamcompose_records_in_total")),)),
    Panel("Inference latency (model call per batch)", "s",
          tuple(_quantile(q, "streamcompose_inference_duration_seconds")
                for q in (0.5, 0.95, 0.99))),
    Panel("Queue time (first record of a batch)", "s",
          tuple(_quantile(q, "streamcompose_queue_duration_seconds") for q in (0.5, 0.95))),
    Panel("Batch size (mean records per model call)", "none",
          (("{{agent}}", f"{_rate('streamcompose_batch_size_sum')} / "
                         f"{_rate('streamcompose_batch_size_count')}"),)),
    Panel("Errors (dead letters/s) by reason", "ops",
          (("{{agent}} {{reason}}", _rate("streamcompose_errors_total", "agent, reason")),)),
    Panel("Dead letters by reason (dashboard range)", "none",
          (("{{reason}}", f"sum by (reason) (increase(streamcompose_errors_total{SEL}"
                          "[$__range]))"),)),
    Panel("Consumer lag (records)", "none",
          (("{{agent}}", f"sum by (agent) (streamcompose_lag{SEL})"),)),
    Panel("In flight", "none",
          (("{{agent}}", f"sum by (agent) (streamcompose_in_flight{SEL})"),)),
    Panel("Workers up and restarts", "none",
          (("{{agent}} up", f"sum by (agent) (up{SEL[:-1]}, agent!=\"\"}})"),
           ("{{agent}} restarts", f"sum by (agent) (streamcompose_restarts_total{SEL})"))),
    Panel("Cache hit rate", "percentunit",
          (("{{agent}}", _rate("streamcompose_cache_requests_total", match=', result="hit"')
            + " / " + _rate("streamcompose_cache_requests_total")),)),
    Panel("Expired requests (/s)", "ops",
          (("{{agent}}", _rate("streamcompose_expired_total")),),
          "Requests whose deadline passed before a model saw them (dead-lettered)."),
    Panel("Drift score (PSI against the reference)", "none",
          (("{{agent}} {{feature}}",
            f"max by (agent, feature) (streamcompose_drift_score{SEL})"),
           ("{{agent}} alert", f"max by (agent) (streamcompose_drift_alert{SEL})"))),
    Panel("Predicted labels (/s)", "ops",
          (("{{agent}} {{label}}", _rate("streamcompose_predictions_total", "agent, label")),)),
    Panel("Autoscale decisions", "none",
          (("{{agent}} {{direction}}",
            f"sum by (agent, direction) (increase(streamcompose_autoscale_decisions_total{SEL}"
            "[$__range]))"),)),
)


def queries(topology: str, rate_window: str = "1m", time_range: str = "5m"
            ) -> list[tuple[str, str]]:
    """Every (panel title, PromQL) of the dashboard, for ``topology``, with Grafana's
    ``$__rate_interval`` and ``$__range`` replaced: what Prometheus itself can run."""
    return [(p.title, expr.replace("$topology", topology).replace(RATE, rate_window)
             .replace("$__range", time_range))
            for p in PANELS for _, expr in p.targets]


def grafana_dashboard(topology: str | None = None) -> dict[str, Any]:
    """The dashboard as Grafana imports it (a ``datasource`` variable picks the
    Prometheus data source; ``topology`` the deployment, starting at ``topology``)."""
    ds = {"type": "prometheus", "uid": "${datasource}"}
    panels = []
    for i, p in enumerate(PANELS):
        panels.append({
            "id": i + 1, "type": "timeseries", "title": p.title, "description": p.description,
            "datasource": ds, "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
            "targets": [{"refId": chr(ord("A") + j), "expr": expr, "legendFormat": legend,
                         "datasource": ds} for j, (legend, expr) in enumerate(p.targets)]})
    current = ({"text": topology, "value": topology} if topology else {})
    return {
        "title": f"streamcompose: {topology}" if topology else "streamcompose",
        "uid": f"streamcompose-{topology}" if topology else "streamcompose",
        "tags": ["streamcompose"], "timezone": "browser", "schemaVersion": 39,
        "refresh": "10s", "time": {"from": "now-30m", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus",
             "label": "Prometheus"},
            {"name": "topology", "type": "query", "datasource": ds, "label": "Topology",
             "query": "label_values(streamcompose_records_in_total, topology)",
             "definition": "label_values(streamcompose_records_in_total, topology)",
             "refresh": 2, "current": current}]},
        "panels": panels,
    }


def dashboard_json(topology: str | None = None) -> str:
    """:func:`grafana_dashboard` as the JSON text the repository keeps."""
    return json.dumps(grafana_dashboard(topology), indent=1) + "\n"
