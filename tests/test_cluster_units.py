"""The cluster pieces that need no broker: the ``autoscale:`` and ``resources:`` keys,
autoscaling decisions, the worker's probes and JSON logs, the supervisor scaling its
workers."""

from __future__ import annotations

import json
import logging
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from streamcompose.agent.foreground import JsonFormatter
from streamcompose.agent.probes import Probes, serve
from streamcompose.deploy.autoscaler import AgentScaler
from streamcompose.errors import TopologyError
from streamcompose.topology import load_topology_text
from streamcompose.topology.scaling import AutoscaleSpec

AGENT = "a: {inputs: [$input], model: {runtime: python, entrypoint: 'math:floor'}"


def _load(extra: str, partitions: int = 3):
    return load_topology_text(f"name: d\npartitions: {partitions}\nagents:\n  {AGENT}, "
                              f"{extra}}}\n")


def test_autoscale_and_resources_are_read():
    t = _load("autoscale: {min: 2, max: 3, lag_per_replica: 10, cooldown_s: 5, to_zero: true}, "
              "resources: {requests: {cpu: 250m, memory: 1Gi}, limits: {cpu: 2}}")
    a = t.agent("a")
    assert a.autoscale == AutoscaleSpec(min=2, max=3, lag_per_replica=10, cooldown_s=5.0,
                                        to_zero=True)
    assert a.replicas == 2  # the workers it starts with
    assert dict(a.resources.requests) == {"cpu": "250m", "memory": "1Gi"}
    assert dict(a.resources.limits) == {"cpu": "2"}


@pytest.mark.parametrize(("extra", "key", "message"), [
    ("autoscale: {max: 4}", "agents.a.autoscale.max", "max 4 > partitions 3"),
    ("autoscale: {min: 3, max: 2}", "agents.a.autoscale.min", "min 3 > max 2"),
    ("autoscale: {lag_per_replica: 0}", "agents.a.autoscale.lag_per_replica", ">= 1"),
    ("autoscale: {to_zero: 1}", "agents.a.autoscale.to_zero", "true or false"),
    ("autoscale: {mx: 2}", "agents.a.autoscale.mx", "unknown key 'mx'"),
    ("autoscale: {max: 2}, replicas: 2", "agents.a.replicas", "remove replicas"),
    ("resources: {requests: {cpu: lots}}", "agents.a.resources.requests.cpu",
     "must be a quantity"),
    ("resources: {limit: {cpu: 1}}", "agents.a.resources.limit", "unknown key 'limit'"),
    ("resources: {limits: {'CPU!': 1}}", "agents.a.resources.limits.CPU!",
     "not a resource name"),
])
def test_bad_scaling_keys_name_key_and_line(extra: str, key: str, message: str):
    with pytest.raises(TopologyError) as info:
        _load(extra)
    assert info.value.key == key
    assert message in str(info.value)
    assert info.value.line == 4


def test_wanted_workers_follow_lag_within_bounds():
    spec = AutoscaleSpec(min=1, max=4, lag_per_replica=500)
    assert [spec.wanted(lag, 4) for lag in (0, 1, 500, 501, 1999, 10**6)] == [1, 1, 1, 2, 4, 4]
    assert spec.wanted(10**6, 2) == 2  # never above the partitions
    zero = AutoscaleSpec(min=1, max=2, lag_per_replica=10, to_zero=True)
    assert (zero.wanted(0, 3), zero.wanted(1, 3)) == (0, 1)


def test_scaling_down_waits_for_the_cooldown_scaling_up_does_not():
    s = AgentScaler("a", AutoscaleSpec(min=1, max=3, lag_per_replica=10, cooldown_s=30),
                    "g", ["t"], partitions=3)
    assert s.decide(100, 1, now=0) == 3
    assert s.decide(0, 3, now=29) is None
    assert s.decide(15, 3, now=31) == 2
    assert s.decide(100, 2, now=32) == 3  # up again at once
    assert s.decide(30, 3, now=33) is None  # no change wanted


def test_probes_answer_beside_the_metrics():
    state: dict[str, Any] = {"status": "loading", "joined": False}
    probes = Probes(lambda: state)
    registry = CollectorRegistry()
    port = serve(probes, registry, 0)

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    assert get("/healthz") == (200, "alive\n")
    assert get("/readyz") == (503, "status loading, not in its consumer group\n")
    state.update(status="running", joined=True)
    assert get("/readyz") == (200, "ready\n")
    assert get("/metrics")[0] == 200
    probes.last_beat -= 60  # an event loop that stopped turning
    status, text = get("/healthz")
    assert status == 503 and "silent" in text
    probes.beat()
    state.update(status="failed", error="output refused")
    assert get("/healthz") == (503, "failed: output refused\n")


def test_json_logs_carry_the_exception():
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, "f.py", 1, "failed %d", (3,),
                                   exc_info=sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "ERROR" and entry["message"] == "failed 3"
    assert entry["time"].endswith("Z")
    assert "ValueError: bad" in entry["exception"]
