"""Routing without a broker: the policies' arithmetic, the router steps on batches of
requests, the router checks of the topology loader and the topics routers use."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from streamcompose.errors import TopologyError
from streamcompose.kinds import build_step
from streamcompose.route.policies import choose_experts, key_fraction, sticky_choice
from streamcompose.route.steps import GateStep, ShadowStep, SplitStep, SwitchStep
from streamcompose.runtimes import RecordError
from streamcompose.steps.base import Emission
from streamcompose.topology import Topology, load_topology_text

MOD = "sc_routing_units_steps"
STEPS = '''
def echo(batch):
    return [{} for _ in batch]

def gate(batch):
    out = []
    for p in batch:
        if p.get("explode"):
            raise ValueError("gate refuses")
        out.append({"scores": p["s"]})
    return out

def gate_named(batch):
    return [{"first": [1.0], "probs": p["s"]} for p in batch]
'''


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the python entrypoints every topology here names."""
    folder = tmp_path_factory.mktemp("routing_units")
    (folder / f"{MOD}.py").write_text(STEPS)
    return folder


def model(name: str, inputs: str, entry: str = "echo") -> str:
    return (f"  {name}: {{inputs: [{inputs}], model: {{runtime: python, "
            f'entrypoint: "{MOD}:{entry}"}}}}\n')


def load(text: str, base_dir: Path) -> Topology:
    return load_topology_text(text.replace("MOD", MOD), base_dir=base_dir)


def load_error(text: str, base_dir: Path) -> TopologyError:
    with pytest.raises(TopologyError) as info:
        load(text, base_dir)
    return info.value


# --- sticky_choice and key_fraction ------------------------------------------------------

def test_key_fraction_is_stable_and_in_unit_interval():
    values = [key_fraction(f"k{i}") for i in range(5000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert key_fraction("user-42") == key_fraction("user-42")
    assert len(set(values)) == len(values)
    # spread over the whole interval
    assert min(values) < 0.01 and max(values) > 0.99


def test_sticky_choice_is_deterministic_per_key():
    weights = {"v1": 50, "v2": 30, "v3": 20}
    first = [sticky_choice(f"user-{i}", weights) for i in range(500)]
    again = [sticky_choice(f"user-{i}", dict(weights)) for i in range(500)]
    assert first == again
    assert set(first) == {"v1", "v2", "v3"}


@pytest.mark.parametrize("weights", [{"v1": 95, "v2": 5}, {"a": 50, "b": 30, "c": 20}])
def test_sticky_choice_distribution_follows_weights(weights):
    n = 20000
    counts = Counter(sticky_choice(f"user-{i}", weights) for i in range(n))
    total = sum(weights.values())
    for variant, weight in weights.items():
        # +-1.5 percentage points: about 4 standard deviations of a share near 50% over
        # 20000 keys (sqrt(0.5 * 0.5 / 20000) = 0.35 pp), more for the smaller shares
        assert abs(counts[variant] / n - weight / total) < 0.015, (variant, counts)


def test_zero_weight_variants_never_chosen():
    for weights in ({"a": 0, "b": 1, "c": 0}, {"a": 1, "b": 0}, {"a": 0, "b": 2, "c": 3}):
        chosen = {sticky_choice(f"k{i}", weights) for i in range(3000)}
        assert chosen == {v for v, w in weights.items() if w > 0}


def test_sticky_choice_rejects_non_positive_total():
    with pytest.raises(ValueError, match="positive"):
        sticky_choice("k", {"a": 0, "b": 0})


def test_sticky_choice_follows_key_fraction():
    # the key's point in [0, total) picks the variant whose interval holds it
    for i in range(200):
        key = f"k{i}"
        point = key_fraction(key) * 10
        expected = "a" if point < 2 else ("b" if point < 7 else "c")
        assert sticky_choice(key, {"a": 2, "b": 5, "c": 3}) == expected


# --- choose_experts ----------------------------------------------------------------------

def test_top_k_with_renormalised_weights():
    # top 2 of [0.1, 0.6, 0.3]: 0.6/0.9 = 2/3, 0.3/0.9 = 1/3
    [[(e1, w1), (e2, w2)]] = choose_experts([[0.1, 0.6, 0.3]], top_k=2, capacity=None)
    assert (e1, e2) == (1, 2)
    assert (w1, w2) == (pytest.approx(2 / 3), pytest.approx(1 / 3))
    # top 2 of [0.5, 0.2, 0.3]: 0.5/0.8 = 0.625, 0.3/0.8 = 0.375
    assert choose_experts([[0.5, 0.2, 0.3]], top_k=2, capacity=None) == \
        [[(0, 0.625), (2, pytest.approx(0.375))]]
    # top 1: weight 1; top 3 of [0.2, 0.2, 0.6]: weights unchanged, best first
    assert choose_experts([[0.2, 0.5, 0.3]], top_k=1, capacity=None) == [[(1, 1.0)]]
    assert choose_experts([[0.25, 0.25, 0.5]], top_k=3, capacity=None) == \
        [[(2, 0.5), (0, 0.25), (1, 0.25)]]


def test_top_k_ties_by_index():
    assert choose_experts([[0.4, 0.2, 0.4]], top_k=1, capacity=None) == [[(0, 1.0)]]
    assert choose_experts([[0.4, 0.2, 0.4]], top_k=2, capacity=None) == \
        [[(0, 0.5), (2, 0.5)]]
    assert choose_experts([[0.0, 0.5, 0.5, 0.0]], top_k=3, capacity=None) == \
        [[(1, 0.5), (2, 0.5), (0, 0.0)]]


def test_capacity_overflow_goes_to_next_best_with_room():
    # ceil(0.5 * 4) = 2 requests per expert
    rows = [[0.7, 0.2, 0.1]] * 4
    assert choose_experts(rows, top_k=1, capacity=0.5) == \
        [[(0, 1.0)], [(0, 1.0)], [(1, 1.0)], [(1, 1.0)]]
    # top 2, capacity ceil(0.5 * 2) = 1: the first request fills experts 0 and 1; the
    # second gets expert 2 (the only one with room), then the best regardless (0):
    # weights 0.1/0.8 = 0.125 and 0.7/0.8 = 0.875
    rows = [[0.7, 0.2, 0.1]] * 2
    assert choose_experts(rows, top_k=2, capacity=0.5) == \
        [[(0, pytest.approx(0.7 / 0.9)), (1, pytest.approx(0.2 / 0.9))],
         [(2, pytest.approx(0.125)), (0, pytest.approx(0.875))]]


def test_capacity_without_room_falls_back_to_best():
    # ceil(0.25 * 4) = 1 request per expert: 0, 1, 2, then none has room -> best (0)
    rows = [[0.7, 0.2, 0.1]] * 4
    assert choose_experts(rows, top_k=1, capacity=0.25) == \
        [[(0, 1.0)], [(1, 1.0)], [(2, 1.0)], [(0, 1.0)]]
    # a tiny capacity still lets each expert take one request
    assert choose_experts([[0.1, 0.9]] * 3, top_k=1, capacity=0.01) == \
        [[(1, 1.0)], [(0, 1.0)], [(1, 1.0)]]
    # capacity 1: no limit within the batch
    assert choose_experts([[0.1, 0.9]] * 3, top_k=1, capacity=1.0) == [[(1, 1.0)]] * 3


def test_negative_or_zero_scores_raise():
    with pytest.raises(ValueError, match="non-negative"):
        choose_experts([[0.5, -0.1]], top_k=2, capacity=None)
    with pytest.raises(ValueError, match="non-negative"):
        choose_experts([[-0.5, -0.1, -0.2]], top_k=1, capacity=None)
    with pytest.raises(ValueError, match="positive sum"):
        choose_experts([[0.0, 0.0]], top_k=1, capacity=None)


def test_capacity_never_overflows_to_experts_the_gate_scored_zero():
    # regression: the overflow used to go to a zero-scored expert, whose renormalised
    # weight 0/0 raised ValueError for the whole batch (and crashed the gate's worker)
    assert choose_experts([[1.0, 0.0, 0.0]] * 4, top_k=1, capacity=0.5) == [[(0, 1.0)]] * 4
    # limit 2: expert 0 full after two, the others go to 1 (score 0.4 > 0), not to 2
    rows = [[1.0, 0.0, 0.0]] * 2 + [[0.6, 0.4, 0.0]] * 2
    assert choose_experts(rows, top_k=1, capacity=0.5) == \
        [[(0, 1.0)], [(0, 1.0)], [(1, 1.0)], [(1, 1.0)]]
    # top 2, limit 1: the second request finds no positively scored expert with room
    assert choose_experts([[0.5, 0.5, 0.0]] * 2, top_k=2, capacity=0.5) == \
        [[(0, 0.5), (1, 0.5)]] * 2
    assert choose_experts([[0.9, -0.1]] * 2, top_k=1, capacity=0.5) == [[(0, 1.0)]] * 2


# --- steps -------------------------------------------------------------------------------

SWITCH = '''
name: sw
agents:
  triage:
    inputs: [$input]
    switch:
      cases:
        - {when: "kind == 'image' and size > 10", to: big}
        - {when: "kind == 'image'", to: small}
      default: generic
  strict:
    inputs: [$input]
    switch: {cases: [{when: "kind == 'image'", to: img}]}
''' + model("big", "triage") + model("small", "triage") + model("generic", "triage") + \
    model("img", "strict")


def test_switch_routes_first_matching_case_else_default(base_dir):
    t = load(SWITCH, base_dir)
    step = build_step(t, "triage")
    assert isinstance(step, SwitchStep)
    out = step([("r1", {"kind": "image", "size": 20}), ("r2", {"kind": "image", "size": 5}),
                ("r3", {"kind": "text"}), ("r4", {})])
    assert out == [[Emission("sw.triage.big", {}, (), target="big")],
                   [Emission("sw.triage.small", {}, (), target="small")],
                   [Emission("sw.triage.generic", {}, (), target="generic")],
                   [Emission("sw.triage.generic", {}, (), target="generic")]]


def test_switch_without_default_dead_letters_unmatched(base_dir):
    step = build_step(load(SWITCH, base_dir), "strict")
    matched, unmatched = step([("r1", {"kind": "image"}), ("r2", {"kind": "text"})])
    assert matched == [Emission("sw.strict.img", target="img")]
    assert isinstance(unmatched, RecordError)
    assert unmatched.agent == "strict"
    assert unmatched.message == ("no case matched and the switch has no default "
                                 "(cases: kind == 'image')")


SPLIT = '''
name: sp
agents:
  ab:
    inputs: [$input]
    split: {v1: 70, v2: 30}
''' + model("v1", "ab") + model("v2", "ab")


def test_split_emits_sticky_variant(base_dir):
    step = build_step(load(SPLIT, base_dir), "ab")
    assert isinstance(step, SplitStep)
    requests = [(f"user-{i}", {"x": i}) for i in range(400)]
    out = step(requests)
    for (rid, _), outcome in zip(requests, out, strict=True):
        variant = sticky_choice(rid, {"v1": 70, "v2": 30})
        assert outcome == [Emission(f"sp.ab.{variant}", {"variant": variant}, (),
                                    target=variant)]
    assert step(list(reversed(requests))) == list(reversed(out))  # same key, same variant
    counts = Counter(o[0].target for o in out)
    assert set(counts) == {"v1", "v2"}
    assert counts["v1"] > counts["v2"]


def test_split_apply_control_changes_weights(base_dir):
    step = build_step(load(SPLIT, base_dir), "ab")
    requests = [(f"k{i}", {}) for i in range(200)]
    step.apply_control({"weights": {"v1": 0, "v2": 1}})
    assert step.weights == {"v1": 0.0, "v2": 1.0}
    assert {o[0].target for o in step(requests)} == {"v2"}
    assert {o[0].fields["variant"] for o in step(requests)} == {"v2"}
    step.apply_control({"weights": {"v2": 0, "v1": 2.5}})
    assert list(step.weights.items()) == [("v1", 2.5), ("v2", 0.0)]  # spec's order
    assert {o[0].topic for o in step(requests)} == {"sp.ab.v1"}


@pytest.mark.parametrize(("settings", "message"), [
    ({"weights": {"v1": 1}}, "weights must name exactly the variants v1, v2"),
    ({"weights": {"v1": 1, "v2": 1, "v3": 1}}, "weights must name exactly the variants"),
    ({"weights": [70, 30]}, "weights must name exactly the variants"),
    ({}, "weights must name exactly the variants"),
    ({"weights": {"v1": -1, "v2": 2}}, "non-negative numbers with a positive sum"),
    ({"weights": {"v1": 0, "v2": 0}}, "non-negative numbers with a positive sum"),
    ({"weights": {"v1": "50", "v2": 50}}, "non-negative numbers with a positive sum"),
])
def test_split_apply_control_rejects_bad_settings(base_dir, settings, message):
    step = build_step(load(SPLIT, base_dir), "ab")
    with pytest.raises(RecordError, match=message) as info:
        step.apply_control(settings)
    assert info.value.agent == "ab"
    assert step.weights == {"v1": 70.0, "v2": 30.0}  # unchanged


SHADOW = '''
name: sh
agents:
  mirror:
    inputs: [$input]
    shadow: {primary: main, shadows: [cand1, cand2]}
''' + model("main", "mirror") + model("cand1", "mirror") + model("cand2", "mirror")


def test_shadow_emits_to_primary_and_every_shadow(base_dir):
    step = build_step(load(SHADOW, base_dir), "mirror")
    assert isinstance(step, ShadowStep)
    out = step([("r1", {"x": 1}), ("r2", {"x": 2})])
    expected = [Emission("sh.mirror.main", target="main"),
                Emission("sh.mirror.cand1", target="cand1"),
                Emission("sh.mirror.cand2", target="cand2")]
    assert out == [expected, expected]


MOE = '''
name: moe
agents:
  gate:
    inputs: [$input]
    route:
      model: {runtime: python, entrypoint: "MOD:gate"}
      experts: [ea, eb, ec]
      top_k: 2
''' + model("ea", "gate") + model("eb", "gate") + model("ec", "gate") + '''
  mix: {inputs: [ea, eb, ec], join: {strategy: gate_weighted}}
'''


def test_gate_emits_to_top_k_experts_with_weights_and_expect(base_dir):
    step = build_step(load(MOE, base_dir), "gate")
    assert isinstance(step, GateStep)
    step.warmup()
    r1, r2 = step([("r1", {"s": [0.1, 0.6, 0.3]}), ("r2", {"s": [0.5, 0.2, 0.3]})])
    # 0.6/0.9 = 2/3 and 0.3/0.9 = 1/3
    weights = {"eb": pytest.approx(2 / 3), "ec": pytest.approx(1 / 3)}
    assert r1 == [Emission("moe.gate.eb", {"gate_weights": weights},
                           (("sc-expect", b"eb,ec"),), target="eb"),
                  Emission("moe.gate.ec", {"gate_weights": weights},
                           (("sc-expect", b"eb,ec"),), target="ec")]
    # 0.5/0.8 = 0.625 and 0.3/0.8 = 0.375
    weights = {"ea": pytest.approx(0.625), "ec": pytest.approx(0.375)}
    assert [(e.topic, e.target, e.fields, e.headers) for e in r2] == [
        ("moe.gate.ea", "ea", {"gate_weights": weights}, (("sc-expect", b"ea,ec"),)),
        ("moe.gate.ec", "ec", {"gate_weights": weights}, (("sc-expect", b"ea,ec"),))]


def test_gate_bad_scores_fail_only_their_request(base_dir):
    step = build_step(load(MOE, base_dir), "gate")
    out = step([("r1", {"s": [0.5, 0.5]}), ("r2", {"s": [0.2, 0.3, 0.5]}),
                ("r3", {"explode": True}), ("r4", {"s": [0.5, -0.1, 0.6]}),
                ("r5", {"s": [0.0, 0.0, 0.0]})])
    wrong, ok, boom, negative, zero = out
    assert isinstance(wrong, RecordError)
    assert wrong.agent == "gate"
    assert wrong.message == "the gate gave 2 scores for 3 experts (ea, eb, ec)"
    assert [e.target for e in ok] == ["ec", "eb"]
    assert ok[0].fields == {"gate_weights": {"ec": pytest.approx(0.625),
                                             "eb": pytest.approx(0.375)}}
    assert isinstance(boom, RecordError)
    assert "ValueError: gate refuses" in boom.message
    assert isinstance(negative, RecordError)
    assert "non-negative probabilities" in negative.message
    assert isinstance(zero, RecordError)
    assert "non-negative probabilities" in zero.message


def test_gate_capacity_within_a_batch(base_dir):
    text = MOE.replace("top_k: 2", "top_k: 1\n      capacity: 0.5")
    step = build_step(load(text, base_dir), "gate")
    out = step([(f"r{i}", {"s": [0.7, 0.2, 0.1]}) for i in range(4)])
    assert [[e.target for e in o] for o in out] == [["ea"], ["ea"], ["eb"], ["eb"]]
    assert [o[0].headers for o in out] == [(("sc-expect", b"ea"),)] * 2 + \
        [(("sc-expect", b"eb"),)] * 2
    assert all(o[0].fields == {"gate_weights": {o[0].target: 1.0}} for o in out)


def test_gate_one_hot_scores_with_capacity(base_dir):
    # regression: this batch raised ValueError out of the step
    text = MOE.replace("top_k: 2", "top_k: 1\n      capacity: 0.5")
    step = build_step(load(text, base_dir), "gate")
    out = step([(f"r{i}", {"s": [0.0, 1.0, 0.0]}) for i in range(4)])
    assert [[(e.target, e.fields["gate_weights"]) for e in o] for o in out] == \
        [[("eb", {"eb": 1.0})]] * 4


def test_gate_scores_output_by_name(base_dir):
    named = MOE.replace('"MOD:gate"}', '"MOD:gate_named"}\n      scores: probs')
    [out] = build_step(load(named, base_dir), "gate")([("r", {"s": [0.2, 0.2, 0.6]})])
    assert [e.target for e in out] == ["ec", "ea"]
    missing = named.replace("scores: probs", "scores: nope")
    [out] = build_step(load(missing, base_dir), "gate")([("r", {"s": [0.2, 0.2, 0.6]})])
    assert isinstance(out, RecordError)
    assert out.message == "the gate model gave no output 'nope' (it gave: first, probs)"
    # without `scores` the first output is used: one score for three experts
    first = MOE.replace('"MOD:gate"}', '"MOD:gate_named"}')
    [out] = build_step(load(first, base_dir), "gate")([("r", {"s": [0.2, 0.2, 0.6]})])
    assert isinstance(out, RecordError)
    assert "gave 1 scores for 3 experts" in out.message


# --- validation --------------------------------------------------------------------------

GATE = '''
name: v
agents:
  gate:
    inputs: [$input]
    route: {model: {runtime: python, entrypoint: "MOD:gate"}, experts: EXPERTS OPTS}
'''


def gate_topology(experts: str, opts: str = "", extra: str = "") -> str:
    names = experts.strip("[]").split(", ")
    text = GATE.replace("EXPERTS", experts).replace(" OPTS", opts)
    return text + "".join(model(n, "gate") for n in names if n != "nope") + extra


@pytest.mark.parametrize(("text", "key", "message"), [
    (gate_topology("[ea, nope]"), "agents.gate.route.experts.1", "unknown agent 'nope'"),
    ("name: v\nagents:\n  ab: {inputs: [$input], split: {v1: 50, zz: 50}}\n"
     + model("v1", "ab"), "agents.ab.split.zz", "unknown agent 'zz'"),
    ("name: v\nagents:\n  triage:\n    inputs: [$input]\n    switch:\n"
     "      cases: [{when: 'x > 1', to: a}, {when: 'x > 0', to: nope}]\n      default: a\n"
     + model("a", "triage"), "agents.triage.switch.cases.1.to", "unknown agent 'nope'"),
    ("name: v\nagents:\n  triage:\n    inputs: [$input]\n    switch:\n"
     "      cases: [{when: 'x > 1', to: a}]\n      default: nope\n"
     + model("a", "triage"), "agents.triage.switch.default", "unknown agent 'nope'"),
    ("name: v\nagents:\n  mirror: {inputs: [$input], shadow: {primary: main, shadows: "
     "[ghost]}}\n" + model("main", "mirror"), "agents.mirror.shadow.shadows.0",
     "unknown agent 'ghost'"),
    ("name: v\nagents:\n  fb: {inputs: [$input], fallback: {primary: p, backup: ghost}}\n"
     + model("p", "fb"), "agents.fb.fallback.backup", "unknown agent 'ghost'"),
])
def test_unknown_targets(base_dir, text, key, message):
    exc = load_error(text, base_dir)
    assert exc.key == key
    assert message in exc.message


def test_target_must_name_the_router_in_its_inputs(base_dir):
    text = ("name: v\nagents:\n  ab: {inputs: [$input], split: {v1: 50, v2: 50}}\n"
            + model("v1", "ab") + model("v2", "$input"))
    exc = load_error(text, base_dir)
    assert exc.key == "agents.ab.split.v2"
    assert exc.message == ("agent 'v2' must name 'ab' in its inputs to receive the requests "
                           "it routes")
    exc = load_error(gate_topology("[ea, eb]").replace("eb: {inputs: [gate]",
                                                       "eb: {inputs: [$input]"), base_dir)
    assert exc.key == "agents.gate.route.experts.1"


def test_agent_reading_a_router_that_does_not_route_to_it(base_dir):
    text = ("name: v\nagents:\n  ab: {inputs: [$input], split: {v1: 1}}\n"
            + model("v1", "ab") + model("other", "ab"))
    exc = load_error(text, base_dir)
    assert exc.key == "agents.other.inputs"
    assert exc.message == ("agent 'other' reads router 'ab', which never routes to it "
                           "(targets: v1)")


@pytest.mark.parametrize(("split", "key", "message"), [
    ("{v1: 0, v2: 0}", "agents.ab.split", "the variants' weights must sum to a positive"),
    ("{v1: -1, v2: 2}", "agents.ab.split.v1", "must be a number >= 0, got -1"),
    ("{v1: x, v2: 2}", "agents.ab.split.v1", "must be a number >= 0, got 'x'"),
])
def test_split_weights(base_dir, split, key, message):
    text = (f"name: v\nagents:\n  ab: {{inputs: [$input], split: {split}}}\n"
            + model("v1", "ab") + model("v2", "ab"))
    exc = load_error(text, base_dir)
    assert exc.key == key
    assert message in exc.message


def test_top_k_larger_than_expert_count(base_dir):
    exc = load_error(gate_topology("[ea, eb]", ", top_k: 3"), base_dir)
    assert exc.key == "agents.gate.route.top_k"
    assert exc.message == "top_k 3 > 2 experts"
    exc = load_error(gate_topology("[ea, eb]", ", top_k: 0"), base_dir)
    assert exc.key == "agents.gate.route.top_k"
    assert "must be an integer >= 1" in exc.message
    load(gate_topology("[ea, eb]", ", top_k: 2"), base_dir)


@pytest.mark.parametrize("capacity", ["0", "-0.5", "1.5", "half"])
def test_capacity_out_of_range(base_dir, capacity):
    exc = load_error(gate_topology("[ea, eb]", f", capacity: {capacity}"), base_dir)
    assert exc.key == "agents.gate.route.capacity"
    assert "in (0, 1]" in exc.message


def test_capacity_in_range(base_dir):
    for capacity in ("0.01", "0.5", "1"):
        t = load(gate_topology("[ea, eb]", f", capacity: {capacity}"), base_dir)
        assert t.agent("gate").router.capacity == float(capacity)


def test_switch_condition_that_does_not_parse(base_dir):
    text = ("name: v\nagents:\n  triage:\n    inputs: [$input]\n    switch:\n"
            "      cases: [{when: 'x > 1', to: a}, {when: 'size > > 3', to: a}]\n"
            + model("a", "triage"))
    exc = load_error(text, base_dir)
    assert exc.key == "agents.triage.switch.cases.1.when"
    assert exc.message == ("condition does not parse: unexpected '>' at position 7 in: "
                           "size > > 3")
    assert exc.line == 6


def test_shadow_results_cannot_feed_another_agent(base_dir):
    text = ("name: v\nagents:\n  mirror: {inputs: [$input], shadow: {primary: main, shadows: "
            "[cand]}}\n" + model("main", "mirror") + model("cand", "mirror")
            + model("post", "cand"))
    exc = load_error(text, base_dir)
    assert exc.key == "agents.post.inputs"
    assert exc.message == ("agent 'cand' is a shadow; its results cannot feed other agents "
                           "(post)")


def test_fallback_primary_equal_to_backup(base_dir):
    text = ("name: v\nagents:\n  fb: {inputs: [$input], fallback: {primary: p, backup: p}}\n"
            + model("p", "fb"))
    exc = load_error(text, base_dir)
    assert exc.key == "agents.fb.fallback.backup"
    assert exc.message == "the backup must be another agent than the primary"


def test_fallback_primary_results_cannot_feed_another_agent(base_dir):
    text = ("name: v\nagents:\n  fb: {inputs: [$input], fallback: {primary: p, backup: b}}\n"
            + model("p", "fb") + model("b", "fb") + model("post", "p"))
    exc = load_error(text, base_dir)
    assert exc.key == "agents.post.inputs"
    assert "is the primary or backup of a fallback" in exc.message


def test_gate_weighted_joiner_needs_experts_of_one_router(base_dir):
    two_gates = gate_topology("[ea, eb]") + '''
  gate2:
    inputs: [$input]
    route: {model: {runtime: python, entrypoint: "MOD:gate"}, experts: [ec, ed]}
''' + model("ec", "gate2") + model("ed", "gate2")
    message = "every input must be an expert of the same router"
    for inputs in ("[ea, ec]", "[ea, pre]"):
        exc = load_error(two_gates + model("pre", "$input")
                         + f"  mix: {{inputs: {inputs}, join: {{strategy: gate_weighted}}}}\n",
                         base_dir)
        assert exc.key == "agents.mix.inputs"
        assert message in exc.message
    t = load(two_gates + "  mix: {inputs: [ec, ed], join: {strategy: gate_weighted}}\n",
             base_dir)
    assert t.agent("mix").join.strategy == "gate_weighted"


# --- topic naming ------------------------------------------------------------------------

def test_split_topics_edges_and_control(base_dir):
    t = load(SPLIT, base_dir)
    assert t.edge_topic("ab", "v1") == "sp.ab.v1"
    assert t.input_topics("v1") == ("sp.ab.v1",)
    assert t.input_topics("ab") == ("sp.in",)
    assert t.topic_of("v1") == t.topic_of("v2") == "sp.out"
    assert t.topics() == ("sp.in", "sp.ab.v1", "sp.ab.v2", "sp.out", "sp.dlq", "sp.control")
    assert t.control_topic == "sp.control"
    assert t.changelog_topics() == ()


def test_shadow_topics(base_dir):
    t = load(SHADOW, base_dir)
    assert t.is_shadow("cand1") and not t.is_shadow("main")
    assert t.topic_of("main") == "sh.out"
    assert t.topic_of("cand1") == "sh.shadow.cand1"
    assert t.dlq_of("cand1") == "sh.shadow.cand1.dlq"
    assert t.dlq_of("main") == "sh.dlq"
    assert t.input_topics("cand2") == ("sh.mirror.cand2",)
    assert t.topics() == ("sh.in", "sh.mirror.main", "sh.mirror.cand1", "sh.mirror.cand2",
                          "sh.out", "sh.shadow.cand1", "sh.shadow.cand1.dlq",
                          "sh.shadow.cand2", "sh.shadow.cand2.dlq", "sh.dlq")
    assert "sh.control" not in t.topics()


def test_moe_topics_and_joiner_changelog(base_dir):
    t = load(MOE, base_dir)
    assert t.targets("gate") == ("ea", "eb", "ec")
    assert t.topic_of("ea") == "moe.ea"
    assert t.input_topics("mix") == ("moe.ea", "moe.eb", "moe.ec")
    assert t.topics() == ("moe.in", "moe.gate.ea", "moe.gate.eb", "moe.gate.ec", "moe.ea",
                          "moe.eb", "moe.ec", "moe.out", "moe.dlq")
    assert t.changelog_topics() == ("moe.mix.changelog",)


FALLBACK = '''
name: fbk
agents:
''' + model("pre", "$input") + '''
  fb:
    inputs: [pre]
    fallback: {primary: p, backup: b, deadline_ms: 500}
''' + model("p", "fb") + model("b", "fb")


def test_fallback_topics(base_dir):
    t = load(FALLBACK, base_dir)
    assert t.agent("fb").router.deadline_ms == 500.0
    assert t.input_topics("fb") == ("fbk.pre", "fbk.p", "fbk.b", "fbk.dlq")
    assert t.input_topics("p") == ("fbk.fb.p",)
    assert t.topic_of("p") == "fbk.p" and t.topic_of("b") == "fbk.b"
    assert t.topic_of("fb") == "fbk.out"
    assert t.changelog_topics() == ("fbk.fb.changelog",)
    assert t.topics() == ("fbk.in", "fbk.pre", "fbk.fb.p", "fbk.fb.b", "fbk.out", "fbk.p",
                          "fbk.b", "fbk.dlq")
