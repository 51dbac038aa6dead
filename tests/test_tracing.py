"""Traces across hops, in-process: one request through the digits ensemble gives one trace
whose spans and parentage follow the request from the client through every agent and the
joiner; without a configured provider nothing is recorded."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from fixtures import trained

from streamcompose.codec import Trace
from streamcompose.observe import tracing
from streamcompose.testing import LocalRunner
from streamcompose.topology import load_topology

ENSEMBLE = Path(__file__).resolve().parent.parent / "topologies" / "digits_ensemble.yaml"
MEMBERS = ("logreg", "forest", "mlp", "cnn")
PIXELS = [0, 0, 5, 13, 9, 1, 0, 0] * 8


@pytest.fixture
def exporter():
    """An in-memory exporter behind a provider used only inside the test."""
    pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    with tracing.using(provider):
        yield spans


def _check_hops(spans, publish) -> dict[str, object]:
    """The per-request spans of one trace: asserts their parentage, returns hop spans."""
    by_id = {s.context.span_id: s for s in spans}
    hops = {s.name: s for s in spans if s.name in ("features", *MEMBERS)}
    assert set(hops) == {"features", *MEMBERS}
    children = Counter((by_id[s.parent.span_id].name, s.name) for s in spans
                       if s.parent is not None and s.parent.span_id in by_id)
    for hop in hops:
        for part in ("queue", "inference", "produce"):
            assert children[hop, part] == 1, (hop, part, children)
    # publish -> features -> produce -> each member -> produce -> vote join
    assert hops["features"].parent.span_id == publish.context.span_id
    features_produce = next(s for s in spans if s.name == "produce"
                            and s.parent.span_id == hops["features"].context.span_id)
    for member in MEMBERS:
        assert hops[member].parent.span_id == features_produce.context.span_id
    return hops


def test_one_request_through_the_ensemble_is_one_trace(exporter):
    trained("digits")
    runner = LocalRunner(load_topology(ENSEMBLE))
    run = runner.run([("req-1", {"pixels": PIXELS})])
    assert len(run.results) == 1
    spans = exporter.get_finished_spans()
    publish = next(s for s in spans if s.name == "publish digits-ensemble")
    trace_id = publish.context.trace_id
    request_spans = [s for s in spans if s.context.trace_id == trace_id]
    batches = [s for s in spans if s.name.endswith(" batch")]
    assert {s.context.trace_id for s in spans} == {trace_id} | {
        b.context.trace_id for b in batches}, "a request's spans are all in its trace"
    assert publish.parent is None
    hops = _check_hops(request_spans, publish)

    join = next(s for s in request_spans if s.name == "vote join")
    member_produce = {s.context.span_id for s in request_spans if s.name == "produce"
                      and s.parent.span_id in {hops[m].context.span_id for m in MEMBERS}}
    assert len(member_produce) == 4
    assert join.parent.span_id in member_produce  # under its first branch ...
    assert {link.context.span_id for link in join.links} | {join.parent.span_id} \
        == member_produce  # ... linked to the other three
    # the answer names the joiner's produce span as its parent
    answer_parent = tracing.traceparent_of(Trace("r", 0, extra=run.results[0].headers))
    join_produce = next(s for s in request_spans if s.name == "produce"
                        and s.parent.span_id == join.context.span_id)
    ctx = join_produce.context
    assert answer_parent == f"00-{trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"

    # one batch span per agent batch, linked to the hop spans of its requests
    assert sorted(b.name for b in batches) == sorted(f"{a} batch" for a in ("features",
                                                                             *MEMBERS))
    for b in batches:
        agent = b.name.removesuffix(" batch")
        assert [link.context.span_id for link in b.links] == [hops[agent].context.span_id]
        inference = next(s for s in request_spans if s.name == "inference"
                         and s.parent.span_id == hops[agent].context.span_id)
        assert [link.context.span_id for link in inference.links] == [b.context.span_id]


def test_a_batch_span_links_every_request_of_the_batch(exporter):
    trained("digits")
    runner = LocalRunner(load_topology(ENSEMBLE))
    runner.run([(f"r{i}", {"pixels": PIXELS}) for i in range(5)])
    spans = exporter.get_finished_spans()
    batch = next(s for s in spans if s.name == "features batch")
    hop_traces = {s.context.trace_id for s in spans if s.name == "features"}
    assert len(hop_traces) == 5
    assert {link.context.trace_id for link in batch.links} == hop_traces
    assert batch.attributes["streamcompose.batch_size"] == 5


def test_tracing_is_off_without_a_provider(monkeypatch):
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert tracing.hop_tracer("features") is None
    assert tracing.start_request("publish x", "r1") == (None, [])
    assert not tracing.configure()


def test_without_opentelemetry_nothing_is_traced(monkeypatch):
    monkeypatch.setattr(tracing, "otel", None)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert not tracing.configure()
    assert tracing.hop_tracer("features") is None
    trained("digits")
    run = LocalRunner(load_topology(ENSEMBLE)).run([("r1", {"pixels": PIXELS})])
    assert [k for k, _ in run.results[0].headers] == []


FALLBACK = '''
name: fb
agents:
  safe: {inputs: [$input], fallback: {primary: big, backup: small, deadline_ms: 100}}
  big: {inputs: [safe], model: {runtime: python, entrypoint: "STEPS:fail"}}
  small: {inputs: [safe], model: {runtime: python, entrypoint: "STEPS:ok"}}
'''
FALLBACK_STEPS = '''
def fail(batch):
    raise ValueError("primary down")

def ok(batch):
    return [{"y": 1} for _ in batch]
'''


def test_a_fallback_keeps_the_request_in_its_trace(exporter, write_topology):
    run = LocalRunner(load_topology(write_topology(FALLBACK, FALLBACK_STEPS))).run(
        [("r1", {"x": 1})])
    assert run.results[0].payload["served_by"] == "small"
    spans = exporter.get_finished_spans()
    (publish,) = [s for s in spans if s.name == "publish fb"]
    assert {s.context.trace_id for s in spans if not s.name.endswith(" batch")} == {
        publish.context.trace_id}
    forwards = [s for s in spans if s.name == "safe join"]
    assert len(forwards) == 2  # to the primary, then to the backup
    assert all(s.parent.span_id == publish.context.span_id for s in forwards)
    (big,) = [s for s in spans if s.name == "big"]
    assert not big.status.is_ok  # its request was dead-lettered


def test_a_malformed_traceparent_starts_a_new_trace(exporter):
    tracer = tracing.hop_tracer("vote")
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    trace = tracer.joined(Trace("r1", 0), ["not a traceparent", good], first_ms=5)
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "vote join"]
    assert f"{span.parent.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert not span.links
    assert tracing.traceparent_of(trace).split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    hop = tracer.received("r2", [("traceparent", b"garbage")])
    tracer.done([hop])
    (root,) = [s for s in exporter.get_finished_spans() if s.name == "vote"]
    assert root.parent is None


def test_otel_variables_without_the_sdk_name_the_extra(monkeypatch, caplog):
    import sys

    pytest.importorskip("opentelemetry.trace")
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    assert not tracing.configure()
    assert 'pip install "streamcompose[otel]"' in caplog.text
