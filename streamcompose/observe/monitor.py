"""The drift monitor of a model agent (its ``monitor:`` settings): the distribution of
its predicted labels, its confidence and chosen input fields, exported as Prometheus
metrics, and a drift score per watched value against a reference.

Metrics, beside the agent's own (same ``topology``, ``agent``, ``replica`` labels):
``streamcompose_predictions_total{label}``, ``streamcompose_confidence`` (a histogram),
``streamcompose_input_mean{field}`` and ``streamcompose_input_quantile{field,quantile}``
over the window, ``streamcompose_drift_score{feature}`` (the population stability index
of the window against the reference) and ``streamcompose_drift_alert`` (1 while a score
is above the threshold; its rise and fall are logged).

The reference is the first ``reference`` requests the worker sees (saved as JSON, to be
given as ``reference: FILE`` later) or the values in a file: ``{"features": {"output:
label": ["3", ...], "output:confidence": [0.98, ...], "input:pixels": [4.2, ...]}}``.

>>> from streamcompose.metrics import AgentMetrics
>>> from streamcompose.topology.monitor_spec import MonitorSpec
>>> m = Monitor(MonitorSpec(label="label", inputs=("x",), window=10, reference_size=10),
...             AgentMetrics("demo", "clf", 0))
>>> m.observe([{"x": [1, 2]}] * 10, [{"label": 1}] * 10)
>>> m.observe([{"x": [9, 9]}] * 10, [{"label": 2}] * 10)
>>> m.scores["input:x"] > 1, m.alert
(True, True)
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from streamcompose.errors import AgentError
from streamcompose.metrics import LABELS, AgentMetrics
from streamcompose.observe.drift import CategoryReference, NumericReference
from streamcompose.topology.monitor_spec import MonitorSpec

log = logging.getLogger("streamcompose.drift")
QUANTILES = (0.05, 0.5, 0.95)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
MAX_LABELS = 100  # distinct predicted labels counted by name; the rest as "other"


def _number(value: Any) -> float | None:
    """A number, or an array's mean; None for what is neither (or not finite)."""
    try:
        x = float(np.mean(np.asarray(value, dtype=np.float64)))
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _confidence(value: Any) -> float | None:
    try:
        values = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    return float(values.max()) if values.size and np.isfinite(values).all() else None


def _label(value: Any) -> str | None:
    if isinstance(value, np.generic | np.ndarray) and np.size(value) == 1:
        value = np.asarray(value).item()
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


class Monitor:
    """Watches one worker's requests; :meth:`observe` takes each processed batch."""

    def __init__(self, spec: MonitorSpec, metrics: AgentMetrics, agent: str = "",
                 save_to: Path | None = None) -> None:
        self.spec, self.agent, self.save_to = spec, agent, save_to
        self.recent: dict[str, deque] = {f: deque(maxlen=spec.window) for f in spec.features()}
        self.reference: dict[str, list] = {f: [] for f in spec.features()}
        self.captured = False
        self._binned: dict[str, CategoryReference | NumericReference] = {}
        if spec.reference_file is not None:
            self._load(spec.reference_file)
        self.scores: dict[str, float] = {}
        self.alert = False
        self._since_score = self._requests = 0
        self._labels: set[str] = set()
        registry, values = metrics.registry, metrics.labels

        def make(kind: Any, name: str, doc: str, *extra: str, **kw: Any) -> Any:
            return kind(name, doc, [*LABELS, *extra], registry=registry, **kw)

        self._predictions = make(Counter, "streamcompose_predictions", "Predicted labels.",
                                 "label")
        self._confidence = make(Histogram, "streamcompose_confidence",
                                "Confidence of the predictions (largest probability).",
                                buckets=CONFIDENCE_BUCKETS).labels(*values)
        self._mean = make(Gauge, "streamcompose_input_mean",
                          "Mean of an input field over the drift window.", "field")
        self._quantile = make(Gauge, "streamcompose_input_quantile",
                              "Quantiles of an input field over the drift window.", "field",
                              "quantile")
        self._score = make(Gauge, "streamcompose_drift_score",
                           "Population stability index of the window against the reference.",
                           "feature")
        self._alert = make(Gauge, "streamcompose_drift_alert",
                           "1 while a drift score is above the monitor's threshold."
                           ).labels(*values)
        self._values = values
        self._alert.set(0)
        for feature in spec.features():
            self._score.labels(*values, feature).set(0)

    def _load(self, path: Path) -> None:
        try:
            stored = json.loads(path.read_text())["features"]
            for feature in self.reference:
                self.reference[feature] = list(stored[feature])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AgentError(f"drift reference {path}: expected a JSON object with the values "
                             f"of {', '.join(self.reference)} under 'features': "
                             f"{type(exc).__name__}: {exc}", agent=self.agent) from None
        self._bin()

    def _bin(self) -> None:
        """The reference is complete: bin (or count) it once."""
        self.captured = True
        self._binned = {f: CategoryReference(v) if f == "output:label" else
                        NumericReference(v, self.spec.bins) for f, v in self.reference.items()}

    def observe(self, payloads: Sequence[dict[str, Any]],
                results: Sequence[dict[str, Any]]) -> None:
        """Take a processed batch: each request's payload and the fields its model gave."""
        spec = self.spec
        for payload, result in zip(payloads, results, strict=True):
            seen: dict[str, Any] = {}
            if spec.label and (label := _label(result.get(spec.label))) is not None:
                seen["output:label"] = label
                self._count(label)
            if spec.confidence and (c := _confidence(result.get(spec.confidence))) is not None:
                seen["output:confidence"] = c
                self._confidence.observe(c)
            for name in spec.inputs:
                if (x := _number(payload.get(name))) is not None:
                    seen[f"input:{name}"] = x
            for feature, value in seen.items():
                self.recent[feature].append(value)
                if not self.captured:
                    self.reference[feature].append(value)
            self._requests += 1
            if not self.captured and self._requests >= spec.reference_size:
                self._captured()
        self._since_score += len(payloads)
        if self._since_score >= max(1, spec.window // 20):
            self._since_score = 0
            self._update()

    def _count(self, label: str) -> None:
        if label not in self._labels and len(self._labels) < MAX_LABELS:
            self._labels.add(label)
        self._predictions.labels(*self._values, label if label in self._labels
                                 else "other").inc()

    def _captured(self) -> None:
        self._bin()
        for window in self.recent.values():
            window.clear()  # compare later traffic only
        log.info("agent %s: drift reference captured (%d requests)%s", self.agent,
                 self.spec.reference_size, f"; saved to {self.save_to}" if self.save_to else "")
        for feature, values in self.reference.items():
            if not values:
                log.warning("agent %s: drift: no request had %s; it gets no score",
                            self.agent, feature)
        if self.save_to is not None:
            self.save_to.parent.mkdir(parents=True, exist_ok=True)
            self.save_to.write_text(json.dumps({"features": self.reference}))

    def _update(self) -> None:
        for name in self.spec.inputs:
            values = self.recent[f"input:{name}"]
            if values:
                self._mean.labels(*self._values, name).set(float(np.mean(values)))
                for q, v in zip(QUANTILES, np.quantile(values, QUANTILES), strict=True):
                    self._quantile.labels(*self._values, name, str(q)).set(float(v))
        if not self.captured:
            return
        for feature, window in self.recent.items():
            if not self.reference[feature] or \
                    len(window) < min(self.spec.window, len(self.reference[feature])):
                continue  # nothing to compare with, or too few requests since
            score = self._binned[feature].psi(list(window))
            self.scores[feature] = score
            self._score.labels(*self._values, feature).set(score)
        self._raise(max(self.scores.items(), key=lambda kv: kv[1], default=("", 0.0)))

    def _raise(self, worst: tuple[str, float]) -> None:
        feature, score = worst
        alert = score > self.spec.threshold
        if alert != self.alert:
            if alert:
                log.warning("agent %s: DRIFT: %s has PSI %.3f > threshold %.3f over the last "
                            "%d requests", self.agent, feature, score, self.spec.threshold,
                            len(self.recent[feature]))
            else:
                log.info("agent %s: drift cleared: every PSI <= threshold %.3f (largest: %s "
                         "%.3f)", self.agent, self.spec.threshold, feature, score)
        self.alert = alert
        self._alert.set(int(alert))


def build_monitor(spec: MonitorSpec | None, metrics: AgentMetrics, agent: str,
                  state_file: Path | None) -> Monitor | None:
    """The monitor of an agent with ``monitor:`` settings, else None. A deployed
    worker (one with a state file) saves the reference it captures in the deployment's
    ``drift/`` folder, as ``<agent>-<replica>.json``."""
    if spec is None:
        return None
    save_to = None
    if state_file is not None and spec.reference_file is None:
        save_to = state_file.parent.parent / "drift" / state_file.name
    return Monitor(spec, metrics, agent, save_to)
