"""The joiner and fallback steps without Kafka: join rules, the request store, the
changelog round trip, timeouts, late and repeated records, memory bounds."""

from __future__ import annotations

import msgpack
import pytest

from streamcompose.codec import Trace, decode_payload, encode_payload
from streamcompose.codec.record import EXPECT
from streamcompose.join.rules import JoinRule
from streamcompose.join.step import JoinEntry, JoinStep
from streamcompose.kinds import build_step
from streamcompose.steps.stateful import Arrival
from streamcompose.steps.store import RequestStore
from streamcompose.testing import LocalRunner
from streamcompose.topology import load_topology_text
from streamcompose.topology.model import JoinSpec

STEPS = '''
def a(batch):
    return [{"proba": [0.9, 0.1]} for _ in batch]

def b(batch):
    return [{"proba": [0.3, 0.7]} for _ in batch]

def c(batch):
    out = []
    for p in batch:
        if p["x"] == 13:
            raise ValueError("c refuses 13")
        out.append({"proba": [0.2, 0.8]})
    return out
'''

TOPOLOGY = '''
name: j
agents:
  a: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:a"}}
  b: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:b"}}
  c: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:c"}}
  vote: {inputs: [a, b, c], join: {strategy: soft_vote, JOIN}}
'''


@pytest.fixture
def topology(tmp_path):
    module = f"join_step_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text(STEPS)

    def load(join: str = "timeout_ms: 1000"):
        return load_topology_text(TOPOLOGY.replace("STEPS", module).replace("JOIN", join),
                                  tmp_path)

    return load


def arrival(branch: str, rid: str, ts: int, partition: int = 0, headers=()) -> Arrival:
    value = encode_payload({"x": 1, "proba": {"a": [0.9, 0.1], "b": [0.3, 0.7],
                                              "c": [0.2, 0.8]}[branch]})
    return Arrival(f"j.{branch}", partition, ts, ts, value,
                   Trace(rid, 5, ("in", branch), None, tuple(headers)))


def results(sends, topic="j.out"):
    return [(s.key.decode(), decode_payload(s.value)) for s in sends if s.topic == topic]


def test_join_rule_modes():
    any_ = JoinRule(JoinSpec(strategy="merge", mode="any"), ("a", "b"))
    assert any_.verdict({"b"}, None).complete and any_.verdict({"b"}, None).missing == ()
    assert not any_.accepts({"b"}, "a", None)
    dlq = JoinRule(JoinSpec(strategy="merge", on_timeout="dlq"), ("a", "b"))
    assert dlq.verdict({"a"}, None).dead_letter
    assert not dlq.verdict({"a", "b"}, None).dead_letter
    moe = JoinRule(JoinSpec(strategy="gate_weighted"), ("x", "y", "z"))
    assert moe.needed(["x", "z"]) == 2 and moe.verdict({"x"}, ["x", "z"]).missing == ("z",)


def test_complete_join_emits_once_and_drops_late_and_repeated(topology):
    step = build_step(topology(), "vote")
    assert isinstance(step, JoinStep)
    assert results(step.handle([arrival("a", "r1", 100), arrival("b", "r1", 101)], 150)) == []
    sends = step.handle([arrival("c", "r1", 102), arrival("c", "r1", 103)], 200)
    [(rid, payload)] = results(sends)
    assert rid == "r1" and payload["label"] == 1 and "missing" not in payload
    assert payload["proba"] == pytest.approx([0.4667, 0.5333], abs=1e-4)
    assert step.events["duplicate"] == 1 and step.events["late"] == 0
    assert results(step.handle([arrival("a", "r1", 104)], 300)) == []
    assert step.events["late"] == 1


def test_timeout_by_record_time_then_partial(topology):
    step = build_step(topology(), "vote")
    step.handle([arrival("a", "r2", 1000)], 1500)
    assert results(step.handle([], 1999)) == []  # 999 ms after the first branch result
    [(_, payload)] = results(step.handle([], 2000))
    assert payload["missing"] == ["b", "c"] and step.events["partial"] == 1


def entered(branch: str, rid: str, at: int, partition: int = 0) -> Arrival:
    """A result of ``branch`` stored at ``at`` for a request that entered at ``at`` on
    a clock 10 s ahead (0 would be no time)."""
    plain = arrival(branch, rid, at, partition)
    return Arrival(plain.topic, partition, at, at, plain.value,
                   Trace(rid, 10_000 + at, ("in", branch)))


def test_a_branch_behind_but_delivering_is_waited_for(topology):
    """A backlog: a and c answer requests r0..r9 (entered 100 ms apart) at once, b
    delivers its results of the same requests 400 ms apart; past timeout_ms after their
    first result, the requests wait for b while it keeps delivering, and are complete."""
    step = build_step(topology(), "vote")
    step.handle([entered(branch, "w", 0) for branch in "abc"], 950)
    step.handle([entered(branch, f"r{i}", 100 * i) for i in range(10) for branch in "ac"],
                1000)
    answered = []
    for i in range(10):
        now = 1000 + 400 * (i + 1)
        answered += results(step.handle([entered("b", f"r{i}", 100 * i)], now))
        assert len(answered) == i + 1, f"at {now} ms"
    assert all("missing" not in payload for _, payload in answered)
    assert step.events["partial"] == 0


def test_a_branch_that_passed_a_request_or_fell_silent_is_given_up(topology):
    step = build_step(topology(), "vote")
    step.handle([entered(branch, rid, at) for rid, at in (("r0", 0), ("r1", 500))
                 for branch in "ac"], 100)
    # b answers a request that entered 1200 ms after r0 (it dead-lettered r0): r0 is
    # partial once timeout_ms has passed since its first result; r1 still waits on b
    [(rid, payload)] = results(step.handle([entered("b", "r2", 1200)], 1100))
    assert rid == "r0" and payload["missing"] == ["b"]
    assert results(step.handle([], 2099)) == []
    [(rid, payload)] = results(step.handle([], 2100))  # b silent for 1000 ms
    assert rid == "r1" and payload["missing"] == ["b"]


def test_a_joiner_at_max_pending_has_no_room_for_new_requests(topology):
    step = build_step(topology("timeout_ms: 1000, max_pending: 2"), "vote")
    assert step.opens("r0") and step.room() == 2
    step.handle([entered("a", "r0", 0), entered("a", "r1", 0)], 10)
    assert step.room() == 0 and step.opens("r2") and not step.opens("r0")
    step.handle([entered(b, "r0", 0) for b in "bc"], 20)
    assert step.room() == 1 and not step.opens("r0")  # answered: a late record is dropped
    assert step.room(resuming=True) == 1  # a margin of max_pending // 10 (0 here)


def test_on_timeout_dlq_and_quorum(topology):
    step = build_step(topology("timeout_ms: 10, on_timeout: dlq"), "vote")
    step.handle([arrival("a", "r3", 0)], 0)
    sends = step.handle([], 10)
    assert results(sends) == [] and "missing: b, c" in results(sends, "j.dlq")[0][1]["error"]
    quorum = build_step(topology("mode: {quorum: 2}, on_timeout: dlq"), "vote")
    [(_, payload)] = results(quorum.handle([arrival("c", "r4", 0), arrival("a", "r4", 1)], 2))
    assert "missing" not in payload


def test_changelog_restores_the_same_state(topology):
    live = build_step(topology(), "vote")
    log = live.handle([arrival("a", "open", 10, partition=1),
                       arrival("a", "done", 11, partition=2), arrival("b", "done", 12, 2),
                       arrival("c", "done", 13, 2)], 20)
    restored = build_step(topology(), "vote")
    for s in log:
        if s.topic == restored.changelog:
            assert s.partition in (1, 2)
            restored.restore(s.key, s.value)
    assert restored.store.stats() == {"pending": 1, "remembered": 1}
    assert restored.store.pending_entry("open").branches.keys() == {"a"}
    assert results(restored.handle([arrival("a", "done", 30, 2)], 40)) == []
    [(rid, _)] = results(restored.handle([arrival("b", "open", 31, 1),
                                          arrival("c", "open", 32, 1)], 50))
    assert rid == "open"
    restored.forget([1, 2])
    assert restored.store.stats() == {"pending": 0, "remembered": 0}


def test_answered_requests_are_remembered_compactly_and_bounded():
    store = RequestStore(JoinEntry, remember_ms=1000, remember_max=2)
    for i in range(4):
        store.open(f"r{i}", JoinEntry(0, i, branches={"a": b"x" * 1000}))
        store.answer(f"r{i}", now_ms=i)
    assert store.expire(now_ms=10) == [(0, b"r0", None), (0, b"r1", None)]
    done = [v for _, k, v in store.take_changes() if v is not None]
    assert all(len(v) < 40 for v in done)  # a done marker, not the entry
    assert msgpack.unpackb(done[-1]) == {"done": 3, "partition": 0}
    assert store.expire(now_ms=1003) == [(0, b"r2", None)]


def test_expected_experts_header(topology):
    step = build_step(topology(), "vote")
    expect = ((EXPECT, b"a,c"),)
    step.handle([arrival("a", "m", 0, headers=expect)], 0)
    [(_, payload)] = results(step.handle([arrival("c", "m", 1, headers=expect)], 1))
    assert "missing" not in payload


def test_local_runner_runs_the_same_join(topology):
    run = LocalRunner(topology("mode: {quorum: 2}, on_timeout: dlq")).run(
        [("ok", {"x": 1}), ("thirteen", {"x": 13})])
    got = {r.id: r.payload for r in run.results}
    assert set(got) == {"ok", "thirteen"}
    assert "missing" not in got["thirteen"] and "missing" not in got["ok"]
    partial = LocalRunner(topology("timeout_ms: 10")).run([("t", {"x": 13})])
    assert partial.results[0].payload["missing"] == ["c"]
    assert [d.payload["agent"] for d in partial.dead_letters] == ["c"]


def test_answers_are_remembered_at_the_request_time_and_restored_oldest_first():
    store = RequestStore(JoinEntry, remember_ms=1000, remember_max=10)
    store.open("late-clock", JoinEntry(0, 5000))
    store.answer("late-clock", now_ms=0)  # a clock still catching up
    assert store.expire(now_ms=5500) == []  # remembered from 5000, not from 0
    log = [("b", msgpack.packb({"done": 3000, "partition": 1})),  # restored first
           ("a", msgpack.packb({"done": 2000, "partition": 0}))]
    restored = RequestStore(JoinEntry, remember_ms=1000, remember_max=1)
    for key, value in log:
        restored.restore(key.encode(), value)
    restored.restored()
    assert restored.expire(now_ms=2500) == [(0, b"a", None)]  # the older one goes first


def test_local_runner_drops_a_result_that_comes_after_the_answer(topology, tmp_path):
    module = f"slow_branch_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text(
        "def fast(batch):\n    return [{'proba': [1.0, 0.0]} for _ in batch]\n")
    t = load_topology_text(f'''
name: j
agents:
  a: {{inputs: [$input], model: {{runtime: python, entrypoint: "{module}:fast"}}}}
  b: {{inputs: [$input], model: {{runtime: python, entrypoint: "{module}:fast"}}}}
  first: {{inputs: [a, b], join: {{strategy: soft_vote, mode: any}}}}
''', tmp_path)
    run = LocalRunner(t).run([("r", {"x": 1})])
    assert [r.id for r in run.results] == ["r"]
