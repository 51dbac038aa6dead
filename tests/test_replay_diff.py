"""The comparison of replay and shadow-report, without a broker: field kinds, agreement,
flips and confusion, numeric differences, latency and one-sided answers; the positions
the commands take; the candidate model of a side deployment; redrive headers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamcompose.codec.redrive import Redrive, meant_for, read_redrive
from streamcompose.deadletters.letters import DeadLetter
from streamcompose.deadletters.redrive import republished, why_not
from streamcompose.errors import DeploymentError
from streamcompose.kafka.ranges import parse_position
from streamcompose.replay.diff import Answer, compare, compare_field, produced_fields
from streamcompose.replay.report import summarize
from streamcompose.replay.side import candidate_model, last_error
from streamcompose.topology import load_topology_text


def proba(label: int, confidence: float = 0.9) -> np.ndarray:
    p = np.full(10, (1 - confidence) / 9, dtype=np.float32)
    p[label] = confidence
    return p


def test_classifier_report_counts_flips_and_confusion():
    pairs = [(3, 3), (3, 8), (3, 8), (7, 1), (5, 5)]
    diffs = [compare(f"r{i}", {"x": 1}, Answer({"x": 1, "proba": proba(a)}, latency_ms=10 + i),
                     Answer({"x": 1, "proba": proba(b, 0.6)}, latency_ms=20 + i))
             for i, (a, b) in enumerate(pairs)]
    report = summarize(diffs)
    assert (report.requests, report.compared, report.agreed) == (5, 5, 2)
    field = report.fields["proba"]
    assert field.kind == "proba"
    assert field.flips == {(3, 8): 2, (7, 1): 1}
    assert field.pairs == {(3, 3): 1, (3, 8): 2, (7, 1): 1, (5, 5): 1}
    assert max(field.abs_diffs) == pytest.approx(0.9 - (0.4 / 9), abs=1e-6)
    data = report.to_json()
    assert data["agreement"] == pytest.approx(0.4)
    assert data["latency_ms"]["live"]["max"] == 14
    assert data["latency_ms"]["candidate"]["p50"] == 22
    assert [d["id"] for d in data["differences"]] == ["r1", "r2", "r3"]
    text = report.render()
    assert "3→8 ×2" in text and "agreement: 40.0% (2/5)" in text


def test_regressor_differences_and_tolerance():
    diffs = [compare("a", {}, Answer({"y": 1.0}), Answer({"y": 1.0 + 1e-9})),
             compare("b", {}, Answer({"y": np.array([1.0, 2.0])}),
                     Answer({"y": np.array([1.5, 2.0])})),
             compare("c", {}, Answer({"y": 2.0}), Answer({"y": 2.05}), tolerance=0.1)]
    assert [d.agree for d in diffs] == [True, False, True]
    report = summarize(diffs)
    assert report.fields["y"].kind == "number"
    assert max(report.fields["y"].abs_diffs) == pytest.approx(0.5)
    assert not report.fields["y"].pairs


def test_one_sided_and_failed_answers():
    ok = Answer({"label": "cat"})
    failed = Answer(None, error="ValueError: bad")
    diffs = [compare("both", {}, ok, ok), compare("live", {}, ok, failed),
             compare("cand", {}, None, ok), compare("none", {}, failed, None)]
    report = summarize(diffs, live="v1", candidate="v2")
    data = report.to_json()
    assert data["outcomes"] == {"both": 1, "only_live": 1, "only_candidate": 1, "neither": 1}
    assert data["failed"] == {"live": 1, "candidate": 1}
    assert data["only_live"] == ["live"] and data["only_candidate"] == ["cand"]
    assert data["agreement"] == 1.0
    assert "only v1: 1" in report.render()
    report.keyless = 2
    assert "left out: 2 records without a key" in report.render()
    assert report.to_json()["keyless"] == 2


def test_fields_compared_are_those_the_agent_produced():
    request = {"pixels": [1, 2], "x": np.ones(2)}
    live = Answer({"pixels": [1, 2], "x": np.ones(2), "label": 4, "proba": [0.1, 0.9]})
    assert produced_fields(request, live) == ["label", "proba"]
    d = compare("r", request, live, Answer({**live.payload, "label": 5}), fields=["label"])
    assert [(f.field, f.live, f.candidate, f.agree) for f in d.fields] == [("label", 4, 5, False)]
    assert compare_field("p", [0.2, 0.8], [0.1, 0.2, 0.7]).agree is False  # shapes differ
    assert compare_field("m", {"a": 1}, {"a": 1}).agree


def test_request_diff_json_is_plain():
    d = compare("r", {}, Answer({"p": np.array([0.3, 0.7], dtype=np.float32)}, latency_ms=3),
                Answer(None, error="boom"))
    assert json.loads(json.dumps(d.to_json()))["candidate"] == {
        "state": "failed", "error": "boom", "latency_ms": None}


def test_positions():
    assert parse_position("17").offset == 17
    assert parse_position("2h", now=10_000.0).time_ms == (10_000 - 7200) * 1000
    with pytest.raises(ValueError, match="not an offset"):
        parse_position("yesterday")


def test_candidate_model_keeps_the_live_settings(tmp_path: Path):
    model = tmp_path / "v2.pt"
    model.write_bytes(b"")
    raw = {"runtime": "torch", "path": "models/v1.pt", "device": "cpu",
           "options": {"outputs": ["proba"]}, "version": "1"}
    got = candidate_model(raw, str(model), tmp_path, None)
    assert got == {"runtime": "torch", "path": str(model), "device": "cpu",
                   "options": {"outputs": ["proba"]}}
    assert candidate_model(raw, "v2.pt", tmp_path, None)["path"] == str(model)
    with pytest.raises(DeploymentError, match="neither a model file"):
        candidate_model(raw, "missing.pt", tmp_path, None)
    (tmp_path / "v2.bin").write_bytes(b"")
    with pytest.raises(DeploymentError, match="cannot tell the runtime"):
        candidate_model(raw, str(tmp_path / "v2.bin"), tmp_path, None)


TOPOLOGY = '''
name: demo
agents:
  a: {inputs: [$input], model: {runtime: python, entrypoint: "copy:copy"}}
  b: {inputs: [$input], model: {runtime: python, entrypoint: "copy:copy"}}
  vote: {inputs: [a, b], join: {strategy: merge}}
'''


def letter(**overrides) -> DeadLetter:
    fields = dict(topic="demo.dlq", partition=1, offset=9, id="r1", agent="a",
                  source_topic="demo.in", source_partition=2, source_offset=5,
                  error_type="ValueError", error="bad", original=b'{"x": 1}',
                  original_bytes=8, truncated=False, failed_ms=1,
                  headers=(("content-type", b"application/msgpack"), ("sc-entered", b"100"),
                           ("sc-path", b"a"), ("sc-deadline", b"200"), ("traceparent", b"t")))
    fields.update(overrides)
    return DeadLetter(**fields)


def test_which_dead_letters_can_be_redriven():
    t = load_topology_text(TOPOLOGY)
    assert why_not(t, letter()) is None
    assert "no longer in the deployment" in why_not(t, letter(agent="gone"))
    assert "cut to fit" in why_not(t, letter(truncated=True, original_bytes=99))
    assert "keeps state" in why_not(t, letter(agent="vote", source_topic="demo.a"))
    assert "no original" in why_not(t, letter(source_offset=-1, original=b""))
    assert "no longer an input" in why_not(t, letter(source_topic="demo.old"))


def test_redriven_request_headers():
    headers, provenance = republished(letter(), at=500)
    found = dict(headers)
    assert "content-type" not in found and "sc-deadline" not in found
    assert found["sc-path"] == b"" and found["sc-entered"] == b"100"
    assert found["traceparent"] == b"t"
    assert read_redrive(headers) == provenance == Redrive("demo.dlq", 1, 9, "a", "demo.in", 500)
    assert meant_for(("a",), "demo.in", headers) and not meant_for(("b",), "demo.in", headers)
    assert meant_for(("b",), "demo.a", headers)


def test_a_failing_candidate_is_told_by_itslast_error(tmp_path: Path):
    log = tmp_path / "cnn-0.log"
    log.write_text("starting\nTraceback (most recent call last):\n  File x\n"
                   "RuntimeError: Expected 4D input\n[INFO] Stopping...\n[INFO] Closing\n")
    assert last_error(log).splitlines()[-1] == "RuntimeError: Expected 4D input"
    assert last_error(tmp_path / "none.log") == "(no log)"
