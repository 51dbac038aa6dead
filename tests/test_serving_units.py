"""Serving quality without Kafka: deadlines (the gate, joiners, fallback routers), the
priority lane scheduler and lane choice, the result cache, and their topology keys."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from streamcompose.client import Topics
from streamcompose.codec import Trace, decode_payload, encode_payload
from streamcompose.errors import StreamComposeError, TopologyError
from streamcompose.kinds import build_step
from streamcompose.metrics import AgentMetrics
from streamcompose.serving.cache import ResultCache, cache_key
from streamcompose.serving.deadline import DEADLINE, deadline_header, deadline_of
from streamcompose.serving.gate import ServingGate
from streamcompose.serving.lanes import LaneScheduler
from streamcompose.steps.stateful import Arrival
from streamcompose.topology import load_topology_text
from streamcompose.topology.serving_specs import PrioritySpec

STEPS = '''
def a(batch):
    return [{"proba": [0.9, 0.1]} for _ in batch]

def b(batch):
    return [{"proba": [0.3, 0.7]} for _ in batch]
'''

TOPOLOGY = '''
name: s
DEFAULT
agents:
  a: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:a"}, cache: {key: [x]}}
  b: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:b"}}
  vote: {inputs: [a, b], join: {strategy: soft_vote, timeout_ms: 1000}}
  safe: {inputs: [$input], fallback: {primary: p, backup: q, deadline_ms: 100}}
  p: {inputs: [safe], model: {runtime: python, entrypoint: "STEPS:a"}}
  q: {inputs: [safe], model: {runtime: python, entrypoint: "STEPS:b"}}
'''


@pytest.fixture
def topology(tmp_path):
    module = f"serving_steps_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text(STEPS)

    def load(default: str = ""):
        return load_topology_text(TOPOLOGY.replace("STEPS", module).replace("DEFAULT", default),
                                  tmp_path)

    return load


@dataclass
class Item:
    trace: Trace
    payload: dict[str, Any] | None
    error: Any = None
    emissions: Any = None


def sample(metrics: AgentMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(
        name, {"topology": "s", "agent": "a", "replica": "0", **labels}) or 0.0


# deadlines ----------------------------------------------------------------------------

def test_gate_dead_letters_expired_requests_and_keeps_the_rest(topology):
    metrics = AgentMetrics("s", "a", 0)
    gate = ServingGate(topology(), "a", metrics, clock=lambda: 10_000)
    late = Item(Trace("late", 0, extra=(deadline_header(10_000),)), {"x": 1})
    fresh = Item(Trace("fresh", 0, extra=(deadline_header(10_001),)), {"x": 2})
    none = Item(Trace("none", 0), {"x": 3})
    admission = gate.admit([late, fresh, none])
    assert admission.to_model == [fresh, none]
    assert late.error.reason == "expired" and "agent 'a'" in late.error.message
    assert sample(metrics, "streamcompose_expired_total") == 1


def test_topology_default_deadline_is_stamped_and_kept(topology):
    gate = ServingGate(topology("deadline_ms: 250"), "b", AgentMetrics("s", "b", 0),
                       clock=lambda: 1_100)
    kept = Item(Trace("r1", 1_000, extra=(deadline_header(5_000),)), {"x": 1})
    stamped = Item(Trace("r2", 1_000), {"x": 1})
    expired = Item(Trace("r3", 800), {"x": 1})
    assert gate.admit([kept, stamped, expired]).to_model == [kept, stamped]
    assert deadline_of(kept.trace) == 5_000 and deadline_of(stamped.trace) == 1_250
    assert (DEADLINE, b"1250") in stamped.trace.headers()
    assert expired.error is not None


def test_agent_deadline_overrides_the_topology_default(topology):
    t = load_topology_text('''
name: d
deadline_ms: 1000
agents:
  a: {inputs: [$input], model: {runtime: python, entrypoint: "math:floor"}, deadline_ms: 50}
  b: {inputs: [a], model: {runtime: python, entrypoint: "math:floor"}}
''')
    assert t.deadline_of("a") == 50 and t.deadline_of("b") == 1000


def branch(name: str, rid: str, ts: int, deadline: int | None) -> Arrival:
    extra = (deadline_header(deadline),) if deadline is not None else ()
    return Arrival(f"s.{name}", 0, ts, ts, encode_payload({"x": 1, "proba": [0.5, 0.5]}),
                   Trace(rid, 5, (name,), None, extra))


def test_joiner_dead_letters_an_expired_request_instead_of_a_partial_answer(topology):
    step = build_step(topology(), "vote")
    assert not [s for s in step.handle([branch("a", "r1", 100, deadline=400)], 100)
                if s.topic != step.changelog]
    sends = step.handle([], 400)  # the deadline passed before the timeout (1100)
    [letter] = [decode_payload(s.value) for s in sends if s.topic == "s.dlq"]
    assert letter["error_type"] == "expired" and letter["agent"] == "vote"
    assert not [s for s in sends if s.topic == "s.out"]
    assert step.events["expired"] == 1 and step.events["partial"] == 0


def test_joiner_result_keeps_the_deadline_header(topology):
    step = build_step(topology(), "vote")
    sends = step.handle([branch("a", "r2", 100, 9_000), branch("b", "r2", 101, 9_000)], 200)
    [out] = [s for s in sends if s.topic == "s.out"]
    assert (DEADLINE, b"9000") in out.headers


def request(rid: str, ts: int, deadline: int) -> Arrival:
    return Arrival("s.in", 0, ts, ts, encode_payload({"x": 1}),
                   Trace(rid, 5, (), None, (deadline_header(deadline),)))


def test_fallback_forwards_with_the_deadline_and_never_to_the_backup_once_expired(topology):
    step = build_step(topology(), "safe")
    [forward] = [s for s in step.handle([request("r1", 0, 150)], 0) if s.topic == "s.safe.p"]
    assert (DEADLINE, b"150") in forward.headers
    sends = step.handle([], 200)  # the primary is silent past 100 ms, the deadline passed
    assert not [s for s in sends if s.topic == "s.safe.q"]
    [letter] = [decode_payload(s.value) for s in sends if s.topic == "s.dlq"]
    assert letter["error_type"] == "expired" and letter["agent"] == "safe"
    assert step.events["fallback"] == 0 and step.events["expired"] == 1


def test_fallback_closes_a_request_the_primary_saw_expire(topology):
    step = build_step(topology(), "safe")
    step.handle([request("r2", 0, 50)], 0)
    letter = encode_payload({"agent": "p", "error_type": "expired", "error": "late"})
    sends = step.handle([Arrival("s.dlq", 0, 1, 60, letter, Trace("r2", 5))], 60)
    assert not [s for s in sends if s.topic in ("s.safe.q", "s.dlq")]
    assert step.store.is_done("r2")


def test_an_expired_request_arriving_at_the_fallback_goes_nowhere(topology):
    step = build_step(topology(), "safe")
    step.now = 500
    sends = step.handle([request("r3", 0, 100)], 500)
    assert [s.topic for s in sends if s.topic != step.changelog] == ["s.dlq"]


# priority lanes -----------------------------------------------------------------------

@pytest.mark.parametrize(("priority", "lane"), [
    (9, "high"), (6, "high"), ("7", "high"), (5, "normal"), (3, "normal"), (2, "low"),
    (0, "low"), ("low", "low"), (None, "normal")])
def test_lane_of_a_priority(priority, lane):
    assert PrioritySpec(("high", "normal", "low")).lane_of(priority) == lane


@pytest.mark.parametrize("priority", [10, -1, "urgent", True, 2.5j])
def test_unknown_priorities_are_refused(priority):
    with pytest.raises(ValueError, match="priority"):
        PrioritySpec(("high", "low")).lane_of(priority)


def test_default_lane_without_normal_is_the_least_urgent():
    assert PrioritySpec(("gold", "silver")).default == "silver"
    assert PrioritySpec(("gold", "silver"), default_lane="gold").default == "gold"


def simulate(scheduler: LaneScheduler, has_records: list[bool], fetches: int) -> Counter:
    served: Counter[int] = Counter()
    for _ in range(fetches):
        for lane in scheduler.order():
            scheduler.tried(lane, has_records[lane])
            if has_records[lane]:
                served[lane] += 1
                break
    return served


def test_urgent_lanes_first_yet_no_lane_starves():
    served = simulate(LaneScheduler(3, ratio=4), [True, True, True], 600)
    assert served[0] > served[1] >= served[2] > 0
    assert served == {0: 4 * served[2], 1: served[2], 2: served[2]}  # H H H H N L ...


def test_a_waiting_lane_gets_one_fetch_in_every_ratio_plus_one():
    scheduler = LaneScheduler(2, ratio=3)
    order = []
    for _ in range(12):
        lane = scheduler.order()[0]
        scheduler.tried(lane, True)
        order.append(lane)
    assert order == [0, 0, 0, 1] * 3


def test_an_empty_urgent_lane_costs_nothing():
    assert simulate(LaneScheduler(3, ratio=2), [False, False, True], 50)[2] == 50


def test_topics_route_by_lane_and_refuse_unknown_priorities():
    topics = Topics("d.in", "d.out", "d.dlq", {"high": "d.in.high", "normal": "d.in",
                                                "low": "d.in.low"}, "normal")
    assert topics.route("low") == ("d.in.low", "low") and topics.route(8) == ("d.in.high",
                                                                              "high")
    with pytest.raises(StreamComposeError, match=r"lanes of d\.in are high, normal, low"):
        topics.route("urgent")


def test_lane_topics_feed_the_input_agents_only():
    t = load_topology_text('''
name: p
priorities: {lanes: [high, normal, low], ratio: 3}
agents:
  a: {inputs: [$input], model: {runtime: python, entrypoint: "math:floor"}}
  b: {inputs: [a], model: {runtime: python, entrypoint: "math:floor"}}
''')
    assert t.input_topics("a") == ("p.in.high", "p.in", "p.in.low")
    assert t.input_topics("b") == ("p.a",)
    assert t.topics()[:3] == ("p.in.high", "p.in", "p.in.low")
    assert t.priorities.ratio == 3


# result cache ------------------------------------------------------------------------

def test_cache_evicts_least_recently_used_and_expires_by_ttl():
    cache = ResultCache(ttl_s=1, max_entries=2)
    cache.put(b"a", 1, 0)
    cache.put(b"b", 2, 0)
    assert cache.get(b"a", 10) == 1  # a is now the most recently used
    cache.put(b"c", 3, 10)
    assert cache.get(b"b", 10) is None and cache.get(b"a", 10) == 1 and len(cache) == 2
    assert cache.get(b"c", 1_009) == 3 and cache.get(b"c", 1_010) is None


def test_cache_keeps_the_newer_answer():
    cache = ResultCache(ttl_s=10, max_entries=5)
    cache.put(b"k", "new", 100)
    cache.put(b"k", "old", 50)
    assert cache.get(b"k", 101) == "new"


def test_cache_key_of_arrays_and_missing_fields():
    import numpy as np
    x = np.arange(4, dtype=np.float32)
    assert cache_key({"x": x}, ("x",)) == cache_key({"x": x.copy(), "y": 1}, ("x",))
    assert cache_key({"x": x}, ("x",)) != cache_key({"x": x.astype(np.float64)}, ("x",))
    assert cache_key({}, ("x",)) == cache_key({"x": None}, ("x",))
    assert cache_key({"x": object()}, ("x",)) is None


def test_gate_answers_repeats_from_the_cache_and_counts(topology):
    metrics = AgentMetrics("s", "a", 0)
    gate = ServingGate(topology(), "a", metrics, clock=lambda: 0)
    first, twin = Item(Trace("r1", 0), {"x": 1}), Item(Trace("r2", 0), {"x": 1})
    other = Item(Trace("r3", 0), {"x": 2})
    admission = gate.admit([first, twin, other])
    assert admission.to_model == [first, other]  # one model call for two equal keys
    first.emissions, other.emissions = ["one"], ["two"]
    assert len(gate.settle(admission)) == 2
    assert twin.emissions == ["one"] and dict(twin.trace.extra)["sc-cache"] == b"hit"
    again = Item(Trace("r4", 0), {"x": 2, "noise": 7})
    assert gate.admit([again]).to_model == [] and again.emissions == ["two"]
    assert sample(metrics, "streamcompose_cache_requests_total", result="hit") == 2
    assert sample(metrics, "streamcompose_cache_requests_total", result="miss") == 2
    assert "sc-cache" not in dict(first.trace.extra)


def test_gate_never_caches_a_failure(topology):
    gate = ServingGate(topology(), "a", AgentMetrics("s", "a", 0), clock=lambda: 0)
    first, twin = Item(Trace("r1", 0), {"x": 1}), Item(Trace("r2", 0), {"x": 1})
    admission = gate.admit([first, twin])
    first.error = ValueError("bad")
    assert gate.settle(admission) == [] and twin.error is first.error
    assert gate.admit([Item(Trace("r3", 0), {"x": 1})]).to_model != []


def test_gate_without_cache_or_deadline_passes_everything(topology):
    gate = ServingGate(topology(), "b", AgentMetrics("s", "b", 0), clock=lambda: 10**13)
    items = [Item(Trace("r1", 0), {"x": 1}), Item(Trace("r2", 0), {"x": 1})]
    assert gate.admit(items).to_model == items


# topology keys ---------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "key", "message"), [
    ("priorities: [high]\n", "priorities", "at least two lanes"),
    ("priorities: [high, high]\n", "priorities", "listed twice"),
    ("priorities: {lanes: [a, b], default: c}\n", "priorities.default", "not a lane"),
    ("priorities: {lanes: [a, b], ratio: 0}\n", "priorities.ratio", "integer >= 1"),
    ("priorities: {lanes: [a, 'b c']}\n", "priorities.lanes.1", "not a valid name"),
    ("priorities: {ratio: 2}\n", "priorities", "missing 'lanes'"),
    ("deadline_ms: 0\n", "deadline_ms", "number >= 1"),
    ("deadline_ms: soon\n", "deadline_ms", "number >= 1"),
])
def test_bad_topology_serving_keys(tmp_path, text, key, message):
    path = tmp_path / "t.yaml"
    path.write_text("name: d\n" + text + "agents:\n"
                    "  a: {inputs: [$input], model: {runtime: python, entrypoint: 'm:f'}}\n")
    from streamcompose.topology import load_topology
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert caught.value.key == key and message in caught.value.message
    assert str(caught.value).startswith(f"{path}:2: {key}: ")


@pytest.mark.parametrize(("agent", "key", "message"), [
    ("cache: {ttl_s: 5}", "agents.a.cache", "missing 'key'"),
    ("cache: {key: []}", "agents.a.cache.key", "non-empty list"),
    ("cache: {key: [x], ttl_s: 0}", "agents.a.cache.ttl_s", "number >= 0.001"),
    ("cache: {key: [x], max_entries: 0}", "agents.a.cache.max_entries", "integer >= 1"),
    ("cache: {key: [x], size: 3}", "agents.a.cache.size", "unknown key 'size'"),
    ("cache: {key: [x], shared: 1}", "agents.a.cache.shared", "true or false"),
    ("deadline_ms: -5", "agents.a.deadline_ms", "number >= 1"),
])
def test_bad_agent_serving_keys(tmp_path, agent, key, message):
    path = tmp_path / "t.yaml"
    path.write_text("name: d\nagents:\n  a:\n    inputs: [$input]\n"
                    "    model: {runtime: python, entrypoint: 'm:f'}\n"
                    f"    {agent}\n")
    from streamcompose.topology import load_topology
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert caught.value.key == key and message in caught.value.message
    assert str(caught.value).startswith(f"{path}:6: ")


def test_cache_only_on_model_agents(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("name: d\nagents:\n  a: {inputs: [$input], model: {runtime: python, "
                    "entrypoint: 'm:f'}}\n  v:\n    inputs: [a]\n    join: {strategy: merge}\n"
                    "    cache: {key: [x]}\n")
    from streamcompose.topology import load_topology
    with pytest.raises(TopologyError, match="a cache answers for a model; agent 'v' is a "
                                            "join agent") as caught:
        load_topology(path)
    assert caught.value.line == 7
