"""The dashboard against a real Prometheus, ``streamcompose top``, and traces exported by
real workers.

A Prometheus server (Debian's ``prometheus`` package; ``.ci/run`` installs it) is started
with the configuration ``streamcompose render prometheus`` writes, scrapes a deployed
two-agent cascade under traffic (the first with a result cache, a deadline and
autoscaling, so that the supervisor is scraped too; the second with a drift monitor),
with a few bad requests so that errors exist and a few whose deadline passes, and every
query of the dashboard is evaluated through its HTTP API: each must return data."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from fixtures import ROOT

from streamcompose.client import Client
from streamcompose.observe.dashboard import PANELS, dashboard_json, queries
from streamcompose.observe.scrape import parse_metrics
from streamcompose.observe.top import summarize, table

STEPS = '''
def inc(batch):
    return [{"x": p["x"] + 1, "label": p["x"] % 3, "proba": [0.3, 0.7]} for p in batch]

inc.inputs = ("x",)
inc.outputs = ("x", "label", "proba")
'''

TWO_HOPS = '''
name: traced
fields: [x]
agents:
  first:
    inputs: [$input]
    model: {runtime: python, entrypoint: "STEPS:inc"}
    batch: {max_size: 8, max_wait_ms: 5}
  second:
    inputs: [first]
    model: {runtime: python, entrypoint: "STEPS:inc"}
    monitor: {label: label, confidence: proba, inputs: [x], reference: 50, window: 50}
'''

#: TWO_HOPS with a cache, a deadline and autoscaling (never beyond one worker here: the
#: lag never reaches the threshold) on the first agent
SERVED = TWO_HOPS.replace(
    "    batch: {max_size: 8, max_wait_ms: 5}\n",
    "    batch: {max_size: 8, max_wait_ms: 5}\n    cache: {key: [x], ttl_s: 60}\n"
    "    deadline_ms: 30000\n"
    "    autoscale: {min: 1, max: 2, lag_per_replica: 1000000, cooldown_s: 60}\n")
EXPIRED = 3  # requests published with a 1 ms deadline: expired when the first agent reads them


def test_the_dashboard_file_is_the_generated_one():
    assert (ROOT / "dashboards" / "streamcompose.json").read_text() == dashboard_json(), \
        "regenerate it: streamcompose render grafana -o dashboards/streamcompose.json"


def test_the_dashboard_covers_what_the_issue_asks():
    text = " ".join(expr for p in PANELS for _, expr in p.targets)
    for metric in ("records_out_total", "inference_duration_seconds_bucket", "batch_size_sum",
                   "queue_duration_seconds_bucket", "errors_total", "lag", "restarts_total",
                   "cache_requests_total", "expired_total", "drift_score", "drift_alert"):
        assert f"streamcompose_{metric}" in text, metric
    board = json.loads(dashboard_json("digits"))
    assert board["templating"]["list"][1]["current"]["value"] == "digits"
    assert len(board["panels"]) == len(PANELS)


def test_top_table_and_a_worker_that_cannot_be_read():
    before = {"cnn": [parse_metrics(_CNN.format(n=0)), []]}
    after = {"cnn": [parse_metrics(_CNN.format(n=40)), []]}
    (row,) = summarize(before, after, 2.0)
    assert (row.workers, row.up, row.in_per_s, row.batch, row.errors) == (2, 1, 20.0, 4.0, 3)
    assert row.drift == 0.4 and row.drift_alert
    text = table("digits", [row])
    assert "p95 ms" in text.splitlines()[1] and text.splitlines()[2].split()[:2] == ["cnn",
                                                                                    "1/2"]
    assert text.endswith("0.40!")


_CNN = """streamcompose_records_in_total{{agent="cnn"}} {n}
streamcompose_batch_size_sum{{agent="cnn"}} {n}
streamcompose_batch_size_count{{agent="cnn"}} 10
streamcompose_errors_total{{agent="cnn",reason="CodecError"}} 3
streamcompose_drift_score{{agent="cnn",feature="input:x"}} 0.4
streamcompose_drift_alert{{agent="cnn"}} 1
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _traffic(bootstrap: str, name: str, stop: threading.Event) -> None:
    async def run() -> None:
        async with Client(bootstrap) as client:
            await client.publish(name, [{"x": "not a number"}, {"nothing": 1}])
            await client.publish(name, [{"x": -i} for i in range(EXPIRED)], deadline_ms=1)
            while not stop.is_set():
                await client.publish(name, [{"x": i} for i in range(20)])
                await asyncio.sleep(0.1)

    asyncio.run(run())


@pytest.fixture
def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        pytest.fail("the prometheus server is not installed: apt-get install -y prometheus "
                    "(.ci/run does it)")
    return found


@pytest.mark.integration
def test_prometheus_evaluates_every_dashboard_query(cli, deploy, bootstrap, tmp_path,
                                                    prometheus_binary, write_topology):
    m = deploy(write_topology(SERVED, STEPS))
    name = m["name"]
    config = tmp_path / "prometheus.yml"
    cli("render", "prometheus", name, "--interval", "1s", "-o", str(config))
    port = _free_port()
    stop = threading.Event()
    feeder = threading.Thread(target=_traffic, args=(bootstrap, name, stop), daemon=True)
    feeder.start()
    with (tmp_path / "prometheus.log").open("wb") as log:
        server = subprocess.Popen(
            [prometheus_binary, f"--config.file={config}",
             f"--storage.tsdb.path={tmp_path}/tsdb", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=log)
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 60
        while True:  # every worker and the supervisor discovered and scraped
            try:
                targets = _get(f"{api}/targets")["data"]["activeTargets"]
            except OSError:
                targets = []
            found = sorted(t["labels"].get("agent", t["labels"].get("role")) for t in targets)
            if found == ["first", "second", "supervisor"] \
                    and all(t["health"] == "up" for t in targets):
                break
            assert time.monotonic() < deadline, f"targets: {targets}"
            time.sleep(0.5)
        time.sleep(5)  # several scrapes under traffic, for rates

        top = json.loads(cli("top", name, "--json", "--interval", "1").stdout)
        rows = {r["agent"]: r for r in top["agents"]}
        assert set(rows) == {"first", "second"}
        assert all(r["up"] == 1 and r["out_per_s"] > 0 for r in rows.values()), rows
        assert rows["first"]["errors"] == 2 + EXPIRED and rows["first"]["batch"] >= 1
        assert rows["second"]["drift"] is not None

        answers = {}
        for title, expr in queries(name, rate_window="10s", time_range="1m"):
            answer = _get(f"{api}/query?" + urllib.parse.urlencode({"query": expr}))
            assert answer["status"] == "success", (title, expr, answer)
            answers[expr] = {r["metric"].get("agent", r["metric"].get("reason")):
                             float(r["value"][1]) for r in answer["data"]["result"]}
        assert [e for e, result in answers.items() if not result] == [], answers
        hit_rate = next(r for e, r in answers.items() if "cache_requests" in e)
        assert 0 < hit_rate["first"] <= 1, hit_rate  # the same 20 payloads, over and over
        by_reason = next(r for e, r in answers.items() if e.startswith("sum by (reason)"))
        assert set(by_reason) == {"RecordError", "expired"}, by_reason  # bad, expired
        (decisions,) = [r for e, r in answers.items() if "autoscale_decisions" in e]
        assert set(decisions) == {"first"}, decisions
    finally:
        stop.set()
        feeder.join(30)
        server.terminate()
        server.wait(30)


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace receiver: keeps the spans it is sent."""

    spans: ClassVar[list] = []

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        request = ExportTraceServiceRequest()
        request.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
        for resource in request.resource_spans:
            service = next(a.value.string_value for a in resource.resource.attributes
                           if a.key == "service.name")
            for scope in resource.scope_spans:
                self.spans.extend((service, span) for span in scope.spans)
        body = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.integration
def test_workers_export_their_spans_over_otlp(cli, deploy, bootstrap, sc_env, write_topology):
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http",
                        reason="the otel extra is not installed")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from streamcompose.observe import tracing

    _Collector.spans = []
    collector = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    sc_env.update(OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.server_port}",
                  OTEL_BSP_SCHEDULE_DELAY="100")
    try:
        m = deploy(write_topology(TWO_HOPS, STEPS))
        client_spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(client_spans))

        async def infer() -> int:
            async with Client(bootstrap) as client:
                return (await client.infer(m["name"], {"x": 1}, timeout=60)).payload["x"]

        with tracing.using(provider):
            assert asyncio.run(infer()) == 3
        (infer_span,) = [s for s in client_spans.get_finished_spans()
                         if s.name.startswith("infer ")]
        trace_id = infer_span.context.trace_id
        deadline = time.monotonic() + 30
        while True:
            mine = [(svc, s) for svc, s in _Collector.spans
                    if int.from_bytes(s.trace_id, "big") == trace_id]
            if {s.name for _, s in mine} >= {"first", "second", "queue", "inference", "produce"} \
                    and len(mine) >= 8:
                break
            assert time.monotonic() < deadline, [s.name for _, s in mine]
            time.sleep(0.3)
        spans = {s.span_id: s for _, s in mine}
        hops = {s.name: s for _, s in mine if s.name in ("first", "second")}
        assert hops["first"].parent_span_id == infer_span.context.span_id.to_bytes(8, "big")
        first_produce = next(s for _, s in mine if s.name == "produce"
                             and s.parent_span_id == hops["first"].span_id)
        assert hops["second"].parent_span_id == first_produce.span_id
        assert {svc for svc, s in mine} == {f"{m['name']}.first", f"{m['name']}.second"}
        for hop in hops.values():
            parts = sorted(s.name for s in spans.values() if s.parent_span_id == hop.span_id)
            assert parts == ["inference", "produce", "queue"], parts
        batches = [s for svc, s in _Collector.spans if s.name == "first batch"
                   and any(int.from_bytes(link.trace_id, "big") == trace_id for link in s.links)]
        assert len(batches) == 1
    finally:
        collector.shutdown()
        collector.server_close()


def test_a_restarted_worker_counts_its_restarts(monkeypatch, tmp_path):
    from streamcompose.agent.base import WorkerBase
    from streamcompose.agent.state import WorkerState
    from streamcompose.metrics import RESTARTS_ENV
    from streamcompose.topology import load_topology_text

    topology = load_topology_text("name: demo\nagents:\n  same: {inputs: [$input], model: "
                                  "{runtime: python, entrypoint: \"copy:copy\"}}\n")
    monkeypatch.setenv(RESTARTS_ENV, "2")
    state = WorkerState(tmp_path / "deployments" / "demo" / "workers" / "same-0.json")
    worker = WorkerBase(topology, "same", "127.0.0.1:1", 0, state)
    labels = {"topology": "demo", "agent": "same", "replica": "0"}
    assert worker.metrics.registry.get_sample_value("streamcompose_restarts_total",
                                                    labels) == 2
    worker.serve_metrics()  # announces itself to Prometheus beside its state file
    target = json.loads((tmp_path / "deployments" / "demo" / "targets" /
                         "same-0.json").read_text())
    assert target == [{"targets": [f"127.0.0.1:{state.data['metrics_port']}"],
                       "labels": labels}]
