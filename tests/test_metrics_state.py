"""Worker metrics, the worker state file, and the deployment registry's paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamcompose.agent.state import WorkerState
from streamcompose.deploy import registry
from streamcompose.deploy.registry import Deployment, home, list_deployments, pid_alive
from streamcompose.errors import DeploymentError
from streamcompose.metrics import AgentMetrics

LABELS = {"topology": "demo", "agent": "inc", "replica": "2"}


def sample(m: AgentMetrics, name: str, **extra: str) -> float | None:
    return m.registry.get_sample_value(name, {**LABELS, **extra})


# ------------------------------------------------------------------------------ metrics


def test_counters_and_gauge() -> None:
    m = AgentMetrics("demo", "inc", 2)
    assert sample(m, "streamcompose_records_in_total") == 0.0
    m.records_in.inc(3)
    m.records_in.inc()
    m.records_out.inc(2)
    assert sample(m, "streamcompose_records_in_total") == 4.0
    assert sample(m, "streamcompose_records_out_total") == 2.0
    m.in_flight.inc(5)
    m.in_flight.dec(2)
    assert sample(m, "streamcompose_in_flight") == 3.0
    # other label values have no series
    assert m.registry.get_sample_value("streamcompose_records_in_total",
                                       {**LABELS, "replica": "0"}) is None


def test_errors_are_counted_by_reason() -> None:
    m = AgentMetrics("demo", "inc", 2)
    assert sample(m, "streamcompose_errors_total", reason="codec") is None
    m.error("codec")
    m.error("codec")
    m.error("model")
    assert sample(m, "streamcompose_errors_total", reason="codec") == 2.0
    assert sample(m, "streamcompose_errors_total", reason="model") == 1.0


def test_histograms_use_their_buckets() -> None:
    m = AgentMetrics("demo", "inc", 2)
    for size in (1, 3, 3, 64, 1000):
        m.batch_size.observe(size)
    assert sample(m, "streamcompose_batch_size_count") == 5.0
    assert sample(m, "streamcompose_batch_size_sum") == 1071.0
    assert sample(m, "streamcompose_batch_size_bucket", le="1.0") == 1.0
    assert sample(m, "streamcompose_batch_size_bucket", le="4.0") == 3.0
    assert sample(m, "streamcompose_batch_size_bucket", le="64.0") == 4.0
    assert sample(m, "streamcompose_batch_size_bucket", le="512.0") == 4.0
    assert sample(m, "streamcompose_batch_size_bucket", le="+Inf") == 5.0

    m.queue_seconds.observe(0.003)
    m.inference_seconds.observe(0.2)
    m.inference_seconds.observe(7.0)
    assert sample(m, "streamcompose_queue_duration_seconds_bucket", le="0.0025") == 0.0
    assert sample(m, "streamcompose_queue_duration_seconds_bucket", le="0.005") == 1.0
    assert sample(m, "streamcompose_inference_duration_seconds_count") == 2.0
    assert sample(m, "streamcompose_inference_duration_seconds_bucket", le="0.25") == 1.0
    assert sample(m, "streamcompose_inference_duration_seconds_bucket", le="5.0") == 1.0
    assert sample(m, "streamcompose_inference_duration_seconds_sum") == pytest.approx(7.2)


def test_each_worker_has_its_own_registry() -> None:
    a = AgentMetrics("demo", "inc", 2)
    b = AgentMetrics("demo", "inc", 2)  # same names: no "duplicated timeseries" error
    a.records_in.inc()
    assert sample(a, "streamcompose_records_in_total") == 1.0
    assert sample(b, "streamcompose_records_in_total") == 0.0


def test_serve_exposes_the_series_over_http() -> None:
    m = AgentMetrics("demo", "inc", 2)
    m.records_in.inc(7)
    m.error("timeout")
    m.batch_size.observe(4)
    port = m.serve(0)
    assert isinstance(port, int) and port > 0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}

    def value(name: str, **extra: str) -> float | None:
        return samples.get((name, tuple(sorted({**LABELS, **extra}.items()))))

    assert value("streamcompose_records_in_total") == 7.0
    assert value("streamcompose_records_out_total") == 0.0
    assert value("streamcompose_errors_total", reason="timeout") == 1.0
    assert value("streamcompose_batch_size_bucket", le="4.0") == 1.0
    assert value("streamcompose_batch_size_bucket", le="2.0") == 0.0
    assert value("streamcompose_in_flight") == 0.0
    for name in ("streamcompose_queue_duration_seconds_bucket",
                 "streamcompose_inference_duration_seconds_count",
                 "# HELP streamcompose_records_in_total Records consumed."):
        assert name in text
    # only this worker's registry: no default process/platform collectors
    assert "python_info" not in text
    assert "process_cpu_seconds_total" not in text


# -------------------------------------------------------------------------- worker state


def test_worker_state_writes_atomically_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "workers" / "inc-0.json"
    s = WorkerState(path)
    assert s.data["pid"] == os.getpid()
    assert (s.data["status"], s.data["joined"]) == ("starting", False)
    assert not path.exists()  # nothing written before the first update
    s.update(status="running", joined=True, partitions=[0, 2], metrics_port=9100)
    data = WorkerState.read(path)
    assert data["status"] == "running"
    assert data["joined"] is True
    assert data["partitions"] == [0, 2]
    assert data["metrics_port"] == 9100
    assert data["pid"] == os.getpid()
    assert data["updated"] >= data["started"]
    assert list(path.parent.iterdir()) == [path]  # the temporary file was renamed away
    first = data["updated"]
    s.update(status="stopping")
    again = WorkerState.read(path)
    assert again["status"] == "stopping"
    assert again["partitions"] == [0, 2]  # earlier fields are kept
    assert again["updated"] >= first


def test_worker_state_read_missing_or_corrupt(tmp_path: Path) -> None:
    assert WorkerState.read(tmp_path / "absent.json") == {}
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert WorkerState.read(bad) == {}
    assert WorkerState.read(tmp_path) == {}  # a directory


def test_disabled_worker_state_stays_in_memory(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = WorkerState.disabled()
    assert s.path is None
    s.update(status="running")
    assert s.data["status"] == "running"
    assert "updated" in s.data
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------ registry


def test_pid_alive_for_own_pid_and_nothing() -> None:
    assert pid_alive(os.getpid()) is True
    assert pid_alive(None) is False
    assert pid_alive(0) is False


def test_pid_alive_false_for_a_reaped_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    assert child.wait(timeout=30) == 0
    assert pid_alive(child.pid) is False


def test_pid_alive_false_for_a_zombie_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # wait for it to exit without reaping it: /proc shows it as a zombie
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        assert pid_alive(child.pid) is False
    finally:
        child.wait(timeout=30)


def test_pid_alive_true_for_a_running_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pid_alive(child.pid) is True
    finally:
        child.kill()
        child.wait(timeout=30)
    assert pid_alive(child.pid) is False


def test_home_follows_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMCOMPOSE_HOME", str(tmp_path / "sc"))
    assert home() == tmp_path / "sc"
    monkeypatch.setenv("STREAMCOMPOSE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert home() == tmp_path / "user" / ".streamcompose"
    monkeypatch.delenv("STREAMCOMPOSE_HOME")
    assert home() == tmp_path / "user" / ".streamcompose"


def test_deployment_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMCOMPOSE_HOME", str(tmp_path))
    d = Deployment("demo")
    root = tmp_path / "deployments" / "demo"
    assert d.dir == root
    assert d.manifest_file == root / "deployment.json"
    assert d.supervisor_file == root / "supervisor.json"
    assert d.worker_state_file("inc", 3) == root / "workers" / "inc-3.json"
    assert d.log_file("inc-3") == root / "logs" / "inc-3.log"
    assert d.log_file("supervisor") == root / "logs" / "supervisor.log"


def test_deployment_manifest_lifecycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMCOMPOSE_HOME", str(tmp_path))
    assert list_deployments() == []
    d = Deployment("demo")
    assert not d.exists()
    with pytest.raises(DeploymentError, match=r"no deployment named 'demo' \(deployed: none\)"):
        d.manifest()
    d.write_manifest({"topology": "t.yaml", "supervisor_pid": 123})
    assert d.exists()
    assert d.manifest() == {"topology": "t.yaml", "supervisor_pid": 123}
    assert json.loads(d.manifest_file.read_text())["supervisor_pid"] == 123
    assert not d.manifest_file.with_suffix(".tmp").exists()
    Deployment("other").write_manifest({"x": 1})
    Deployment("empty-dir").dir.mkdir(parents=True)  # no manifest: not listed
    assert list_deployments() == ["demo", "other"]
    with pytest.raises(DeploymentError, match=r"\(deployed: demo, other\)") as info:
        Deployment("missing").manifest()
    assert info.value.topology == "missing"

    assert d.supervisor() == {}
    d.write_supervisor({"workers": {"inc-0": {"pid": 5, "restarts": 1}}})
    assert d.supervisor()["workers"]["inc-0"]["restarts"] == 1

    assert d.worker_state("inc", 0) == {}
    WorkerState(d.worker_state_file("inc", 0)).update(status="running")
    WorkerState(d.worker_state_file("inc", 1)).update(status="starting")
    assert d.worker_state("inc", 0)["status"] == "running"
    d.clear_workers()
    assert d.worker_state("inc", 0) == {}
    assert list((d.dir / "workers").iterdir()) == []

    d.remove_manifest()
    d.remove_manifest()  # twice is fine
    assert not d.exists()
    assert list_deployments() == ["other"]


def test_corrupt_manifest_counts_as_missing(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMCOMPOSE_HOME", str(tmp_path))
    d = Deployment("demo")
    d.manifest_file.parent.mkdir(parents=True)
    d.manifest_file.write_text("{truncated")
    with pytest.raises(DeploymentError, match="no deployment named 'demo'"):
        d.manifest()
    assert registry._read_json(d.manifest_file) == {}
