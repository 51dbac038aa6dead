"""Drift monitoring: the digits cascade's ``postprocess`` agent watches its predicted
labels, confidence and the mean pixel of its input against the first 500 requests.
Through Kafka, unshifted digits keep every score below the threshold; inverted digits
push the input's score over it, which raises ``streamcompose_drift_alert`` and logs."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures import TOPOLOGIES, trained

from streamcompose.client import Client
from streamcompose.errors import TopologyError
from streamcompose.observe.monitor import Monitor
from streamcompose.observe.scrape import read_metrics, value
from streamcompose.topology import load_topology, load_topology_text
from streamcompose.topology.monitor_spec import MonitorSpec

CASCADE = TOPOLOGIES / "digits_cascade.yaml"
THRESHOLD = 0.25


def _digits() -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().data


def _publish(bootstrap: str, name: str, pixels: np.ndarray) -> None:
    async def run() -> None:
        async with Client(bootstrap) as client:
            await client.publish(name, [{"pixels": p.tolist()} for p in pixels])

    asyncio.run(run())


def _wait_for(port: int, answered: int, timeout_s: float = 60) -> list:
    deadline = time.monotonic() + timeout_s
    while True:
        samples = read_metrics(port)
        if value(samples, "streamcompose_records_out_total") >= answered:
            return samples
        assert time.monotonic() < deadline, f"postprocess answered fewer than {answered}"
        time.sleep(0.2)


@pytest.mark.integration
def test_inverted_digits_cross_the_threshold_unshifted_stay_below(cli, deploy, bootstrap):
    trained("digits")
    m = deploy(CASCADE)
    status = json.loads(cli("status", m["name"], "--json", "--no-lag").stdout)
    worker = next(a for a in status["agents"] if a["name"] == "postprocess")["workers"][0]
    digits = _digits()

    _publish(bootstrap, m["name"], digits[:1000])  # the reference, then like it
    samples = _wait_for(worker["metrics_port"], 1000)
    scores = {s.labels["feature"]: s.value for s in samples
              if s.name == "streamcompose_drift_score"}
    assert set(scores) == {"output:label", "output:confidence", "input:pixels"}
    assert all(0 < v < THRESHOLD for v in scores.values()), scores
    assert value(samples, "streamcompose_drift_alert") == 0
    assert value(samples, "streamcompose_predictions_total") == 1000
    assert value(samples, "streamcompose_confidence_count") == 1000
    mean = value(samples, "streamcompose_input_mean", field="pixels")
    assert abs(mean - digits[500:1000].mean()) < 0.3

    _publish(bootstrap, m["name"], 16 - digits[1000:1500])  # inverted
    samples = _wait_for(worker["metrics_port"], 1500)
    shifted = {s.labels["feature"]: s.value for s in samples
               if s.name == "streamcompose_drift_score"}
    assert shifted["input:pixels"] > THRESHOLD, shifted
    assert value(samples, "streamcompose_drift_alert") == 1
    log = Path(worker["log"]).read_text()
    assert "DRIFT: input:pixels has PSI" in log
    saved = json.loads((Path(status["snapshot"]).parent / "drift" /
                        "postprocess-0.json").read_text())["features"]
    assert len(saved["input:pixels"]) == 500  # the captured reference, saved for reuse


def test_a_saved_reference_is_loaded(tmp_path):
    from streamcompose.metrics import AgentMetrics

    spec = MonitorSpec(inputs=("x",), window=10, reference_size=10)
    first = Monitor(spec, AgentMetrics("d", "a", 0), "a", tmp_path / "ref.json")
    first.observe([{"x": float(i)} for i in range(10)], [{}] * 10)
    loaded = Monitor(MonitorSpec(inputs=("x",), window=10, reference_file=tmp_path / "ref.json"),
                     AgentMetrics("d", "a", 0), "a")
    assert loaded.captured and loaded.reference == first.reference
    loaded.observe([{"x": float(i)} for i in range(10)], [{}] * 10)
    assert loaded.scores == {"input:x": 0.0} and not loaded.alert


def test_the_example_monitors_postprocess():
    spec = load_topology(CASCADE).agent("postprocess").monitor
    assert spec is not None and spec.threshold == THRESHOLD
    assert spec.features() == ("output:label", "output:confidence", "input:pixels")


@pytest.mark.parametrize(("monitor", "message"), [
    ("{}", "at least one of: label, confidence, inputs"),
    ("{label: y, window: 3}", "window: must be an integer >= 10"),
    ("{label: y, threshold: 0}", "threshold: must be a number > 0"),
    ("{label: y, bins: 500}", "bins: must be at most 100"),
    ("{label: y, reference: nowhere.json}", "reference: no reference file"),
    ("{label: y, lable: z}", "monitor.lable: unknown key 'lable'"),
    ("{inputs: pixels}", "inputs: must be a non-empty list"),
])
def test_monitor_settings_are_validated_with_their_line(monitor, message, tmp_path):
    text = ("name: demo\nagents:\n  same:\n    inputs: [$input]\n"
            "    model: {runtime: python, entrypoint: \"copy:copy\"}\n"
            f"    monitor: {monitor}\n")
    with pytest.raises(TopologyError, match=re.escape(message)) as caught:
        load_topology_text(text, tmp_path)
    assert caught.value.line == 6


def test_monitor_is_for_model_agents(tmp_path):
    text = ("name: demo\nagents:\n  a: {inputs: [$input], model: {runtime: python, "
            "entrypoint: \"copy:copy\"}}\n  b: {inputs: [$input], model: {runtime: python, "
            "entrypoint: \"copy:copy\"}}\n  j:\n    inputs: [a, b]\n"
            "    join: {strategy: merge}\n    monitor: {label: y}\n")
    with pytest.raises(TopologyError, match=r"agents\.j\.monitor: monitor watches a model"):
        load_topology_text(text, tmp_path)


class _Consumer:
    """What consumer_lag reads of an aiokafka consumer."""

    def __init__(self, ends: dict, positions: dict, stable: dict) -> None:
        self.ends, self.positions, self.stable = ends, positions, stable

    def assignment(self) -> set:
        return set(self.positions)

    def highwater(self, tp):
        return self.ends.get(tp)

    def last_stable_offset(self, tp):
        return self.stable.get(tp)

    async def position(self, tp) -> int:
        return self.positions[tp]


def test_lag_counts_what_the_replica_has_not_consumed():
    from streamcompose.observe.lag import consumer_lag

    consumer = _Consumer(ends={"a": 100, "b": 50, "c": None},
                         positions={"a": 90, "b": 50, "c": 0}, stable={"a": 95})
    # a: up to its last stable offset (read_committed); b: caught up; c: not fetched yet
    assert asyncio.run(consumer_lag(consumer)) == 5


def test_a_field_no_request_has_gets_no_score(caplog):
    from streamcompose.metrics import AgentMetrics

    m = Monitor(MonitorSpec(label="y", inputs=("missing",), window=10, reference_size=10),
                AgentMetrics("d", "a", 0), "a")
    m.observe([{"x": 1}] * 20, [{"y": 1}] * 20)
    assert m.captured and m.scores == {"output:label": 0.0}
    assert "no request had input:missing" in caplog.text
