"""The in-process harness runs every kind of agent the way the workers do."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from streamcompose.testing import LocalRunner
from streamcompose.topology import load_topology_text

STEPS = '''
import numpy as np

def double(batch):
    return [{"x": p["x"] * 2, "batch": len(batch)} for p in batch]

def fails_on_odd(batch):
    for p in batch:
        if p["x"] % 2:
            raise ValueError("odd")
    return [{"by": "big"} for _ in batch]

def small(batch):
    return [{"by": "small"} for _ in batch]

def gate(batch):
    return [{"scores": np.array([0.6, 0.4] if p["x"] < 10 else [0.2, 0.8])} for p in batch]

def expert_a(batch):
    return [{"proba": np.array([1.0, 0.0])} for _ in batch]

def expert_b(batch):
    return [{"proba": np.array([0.0, 1.0])} for _ in batch]

CALLS = []

def counted(batch):
    CALLS.append(len(batch))
    return [{"call": len(CALLS)} for _ in batch]
'''


@pytest.fixture
def topology_text(tmp_path: Path):
    module = f"harness_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text(STEPS)

    def load(text: str):
        return load_topology_text(text.replace("STEPS", module), tmp_path)

    load.module = module
    return load


def _calls(topology_text) -> list[int]:
    """The batch sizes the steps module's ``counted`` model was called with."""
    return sys.modules[topology_text.module].CALLS


def test_cascade_batches_and_dead_letters(topology_text):
    t = topology_text('''
name: h
agents:
  one: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:double"},
        batch: {max_size: 3}}
  two: {inputs: [one], model: {runtime: python, entrypoint: "STEPS:fails_on_odd"}}
''')
    run = LocalRunner(t).run([("a", {"x": 1}), ("b", {"x": 2}), ("c", {"x": 3}),
                              ("d", {"x": 4})])
    assert [(r.id, r.payload["x"], r.payload["by"]) for r in run.results] == [
        ("a", 2, "big"), ("b", 4, "big"), ("c", 6, "big"), ("d", 8, "big")]
    assert [r.payload["batch"] for r in run.results] == [3, 3, 3, 1]
    assert run.results[0].path == ("one", "two")
    bad = LocalRunner(t).run([("e", {"y": 1})])
    assert [(d.id, d.payload["agent"]) for d in bad.dead_letters] == [("e", "one")]


def test_fallback_switch_and_moe(topology_text):
    t = topology_text('''
name: h
agents:
  safe: {inputs: [$input], fallback: {primary: big, backup: small}}
  big: {inputs: [safe], model: {runtime: python, entrypoint: "STEPS:fails_on_odd"}}
  small: {inputs: [safe], model: {runtime: python, entrypoint: "STEPS:small"}}
''')
    run = LocalRunner(t).run([("a", {"x": 1}), ("b", {"x": 2})])
    assert {r.id: r.payload["served_by"] for r in run.results} == {"a": "small", "b": "big"}
    assert [d.id for d in run.dead_letters] == ["a"]

    moe = topology_text('''
name: m
agents:
  gate: {inputs: [$input], route: {model: {runtime: python, entrypoint: "STEPS:gate"},
         experts: [ea, eb], top_k: 2}}
  ea: {inputs: [gate], model: {runtime: python, entrypoint: "STEPS:expert_a"}}
  eb: {inputs: [gate], model: {runtime: python, entrypoint: "STEPS:expert_b"}}
  mix: {inputs: [ea, eb], join: {strategy: gate_weighted, field: proba}}
''')
    run = LocalRunner(moe).run([("low", {"x": 1}), ("high", {"x": 20})])
    got = {r.id: r.payload for r in run.results}
    np.testing.assert_allclose(got["low"]["proba"], [0.6, 0.4])
    np.testing.assert_allclose(got["high"]["proba"], [0.2, 0.8])
    assert got["high"]["label"] == 1 and "missing" not in got["high"]


def test_join_partial_when_a_branch_fails(topology_text):
    t = topology_text('''
name: j
agents:
  a: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:double"}}
  b: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:fails_on_odd"}}
  both: {inputs: [a, b], join: {strategy: merge}}
''')
    run = LocalRunner(t).run([("even", {"x": 2}), ("odd", {"x": 3})])
    got = {r.id: r.payload for r in run.results}
    assert got["even"]["b"]["by"] == "big" and "missing" not in got["even"]
    assert got["odd"]["missing"] == ["b"] and got["odd"]["a"]["x"] == 6


def test_the_result_cache_answers_a_repeated_payload(topology_text):
    t = topology_text('''
name: c
agents:
  m: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:counted"},
      batch: {max_size: 1}, cache: {key: [x]}}
''')
    runner = LocalRunner(t)
    run = runner.run([("first", {"x": 1, "noise": 1}), ("again", {"x": 1, "noise": 2})])
    assert _calls(topology_text) == [1]  # one model call, one batch apart
    assert [(r.id, r.payload["call"], r.payload["noise"]) for r in run.results] == [
        ("first", 1, 1), ("again", 1, 2)]
    assert [dict(r.headers).get("sc-cache") for r in run.results] == [None, b"hit"]
    hits = runner.metrics["m"].registry.get_sample_value(
        "streamcompose_cache_requests_total", {"topology": "c", "agent": "m", "replica": "0",
                                               "result": "hit"})
    assert hits == 1


@pytest.mark.parametrize("deadline_ms, answered", [(500, ["even"]), (5000, ["even", "odd"])])
def test_a_deadline_runs_out_while_a_join_waits(topology_text, deadline_ms, answered):
    """A request waits 1 s at the join for a branch that failed: with a 500 ms deadline
    the next agent dead-letters it as expired without calling its model, as a worker
    would; with 5 s it is answered (the run's clock moves to the join's timeout, not a
    minute on)."""
    t = topology_text(f'''
name: j
agents:
  a: {{inputs: [$input], model: {{runtime: python, entrypoint: "STEPS:double"}}}}
  b: {{inputs: [$input], model: {{runtime: python, entrypoint: "STEPS:fails_on_odd"}}}}
  both: {{inputs: [a, b], join: {{strategy: merge, timeout_ms: 1000}}}}
  after: {{inputs: [both], model: {{runtime: python, entrypoint: "STEPS:counted"}},
          deadline_ms: {deadline_ms}}}
''')
    runner = LocalRunner(t)
    run = runner.run([("even", {"x": 2}), ("odd", {"x": 3})])
    assert [r.id for r in run.results] == answered
    assert sum(_calls(topology_text)) == len(answered)
    expired = [(d.id, d.payload["agent"]) for d in run.dead_letters
               if d.payload["error_type"] == "expired"]
    assert expired == ([] if deadline_ms > 1000 else [("odd", "after")])
    assert runner.metrics["after"].registry.get_sample_value(
        "streamcompose_expired_total", {"topology": "j", "agent": "after",
                                        "replica": "0"}) == len(expired)
