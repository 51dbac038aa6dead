"""The joiner's arithmetic without a broker: every built-in strategy against numbers
computed by hand and the aggregator (python entrypoints, stacking meta-models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamcompose.join.aggregate import Aggregator
from streamcompose.join.strategies import (
    StrategyError,
    combine,
    combine_many,
    entropy_weighted,
    gate_weighted,
    majority_vote,
    max_confidence,
    merge,
    soft_vote,
    stacking_features,
    weighted_average,
)
from streamcompose.topology.model import JoinSpec, ModelSpec

approx = pytest.approx


def spec(strategy: str, **kwargs) -> JoinSpec:
    return JoinSpec(strategy=strategy, **kwargs)


# --- soft_vote ---------------------------------------------------------------------------

def test_soft_vote_weighted():
    # (1*0.9 + 3*0.2) / 4 = 0.375 ; (1*0.1 + 3*0.8) / 4 = 0.625
    out = soft_vote([("a", {"proba": [0.9, 0.1]}), ("b", {"proba": [0.2, 0.8]})],
                    spec("soft_vote", weights={"a": 1, "b": 3}))
    assert out["proba"].tolist() == approx([0.375, 0.625])
    assert out["label"] == 1
    assert set(out) == {"proba", "label"}


def test_soft_vote_default_weight_is_one():
    # only b weighted: (1*0.9 + 3*0.2) / 4 as above; none weighted: plain mean
    branches = [("a", {"proba": [0.9, 0.1]}), ("b", {"proba": [0.2, 0.8]})]
    assert soft_vote(branches, spec("soft_vote", weights={"b": 3}))["proba"].tolist() == \
        approx([0.375, 0.625])
    out = soft_vote(branches, spec("soft_vote"))
    assert out["proba"].tolist() == approx([0.55, 0.45])
    assert out["label"] == 0


def test_soft_vote_three_classes_custom_field():
    # (2*[0.2,0.3,0.5] + 1*[0.6,0.3,0.1] + 1*[0.1,0.1,0.8]) / 4 = [0.275, 0.25, 0.475]
    branches = [("a", {"p": [0.2, 0.3, 0.5]}), ("b", {"p": [0.6, 0.3, 0.1]}),
                ("c", {"p": [0.1, 0.1, 0.8]})]
    out = soft_vote(branches, spec("soft_vote", field="p", weights={"a": 2}))
    assert out["p"].tolist() == approx([0.275, 0.25, 0.475])
    assert out["label"] == 2


def test_soft_vote_weights_summing_to_zero():
    branches = [("a", {"proba": [0.9, 0.1]}), ("b", {"proba": [0.2, 0.8]})]
    with pytest.raises(StrategyError, match="sum to zero"):
        soft_vote(branches, spec("soft_vote", weights={"a": 0, "b": 0}))
    # only the branches that answered count: b alone, with weight 0
    with pytest.raises(StrategyError, match="sum to zero"):
        soft_vote(branches[1:], spec("soft_vote", weights={"a": 1, "b": 0}))


def test_missing_field_names_the_branch():
    branches = [("a", {"proba": [0.9, 0.1]}), ("b", {"label": 1, "score": 0.3})]
    with pytest.raises(StrategyError, match=r"branch 'b' has no field 'proba'") as info:
        soft_vote(branches, spec("soft_vote"))
    assert "label, score" in str(info.value)
    with pytest.raises(StrategyError, match=r"branch 'b' has no field 'proba' \(it has: "
                                            r"nothing\)"):
        soft_vote([("a", {"proba": [1.0]}), ("b", {})], spec("soft_vote"))


def test_shapes_disagree_names_the_branches():
    branches = [("a", {"proba": [0.9, 0.1]}), ("b", {"proba": [0.2, 0.3, 0.5]})]
    with pytest.raises(StrategyError, match=r"branch 'b' gives 'proba' with shape \(3,\), "
                                            r"branch 'a' with \(2,\)"):
        soft_vote(branches, spec("soft_vote"))


# --- majority_vote -----------------------------------------------------------------------

def test_majority_vote_counts():
    branches = [("a", {"label": 1}), ("b", {"label": 2}), ("c", {"label": 1})]
    out = majority_vote(branches, spec("majority_vote", field="label"))
    assert out == {"label": 1, "votes": {"1": 2.0, "2": 1.0}}


def test_majority_vote_weighted_counts():
    # b alone weighs 3 > a + c = 2
    branches = [("a", {"label": 1}), ("b", {"label": 2}), ("c", {"label": 1})]
    out = majority_vote(branches, spec("majority_vote", field="label", weights={"b": 3}))
    assert out == {"label": 2, "votes": {"1": 2.0, "2": 3.0}}
    # 0.5 + 0.5 = 1.0 < 1.5
    out = majority_vote(branches, spec("majority_vote", field="label",
                                       weights={"a": 0.5, "b": 1.5, "c": 0.5}))
    assert out["label"] == 2
    assert out["votes"] == {"1": 1.0, "2": 1.5}


def test_majority_vote_tie_broken_by_summed_probability():
    # one vote each; summed proba: class 0 = 0.6 + 0.3 = 0.9, class 1 = 0.4 + 0.7 = 1.1
    branches = [("a", {"label": 0, "proba": [0.6, 0.4]}),
                ("b", {"label": 1, "proba": [0.3, 0.7]})]
    out = majority_vote(branches, spec("majority_vote", field="label"))
    assert out == {"label": 1, "votes": {"0": 1.0, "1": 1.0}}


def test_majority_vote_tie_on_probability_too_broken_by_branch_order():
    # one vote each and summed proba [1.0, 1.0]: the earliest branch's label wins
    a = ("a", {"label": 0, "proba": [0.5, 0.5]})
    b = ("b", {"label": 1, "proba": [0.5, 0.5]})
    assert majority_vote([a, b], spec("majority_vote", field="label"))["label"] == 0
    assert majority_vote([b, a], spec("majority_vote", field="label"))["label"] == 1


def test_majority_vote_tie_without_proba_broken_by_branch_order():
    branches = [("a", {"label": 3}), ("b", {"label": 1}), ("c", {"label": 1}),
                ("d", {"label": 3})]
    out = majority_vote(branches, spec("majority_vote", field="label"))
    assert out == {"label": 3, "votes": {"3": 2.0, "1": 2.0}}
    # one branch without the proba field: no probability tie-break, branch order
    partial = [("a", {"label": 0, "proba": [0.1, 0.9]}), ("b", {"label": 1})]
    assert majority_vote(partial, spec("majority_vote", field="label"))["label"] == 0


def test_majority_vote_custom_proba_field():
    # summed "p": class 0 = 0.2 + 0.4 = 0.6, class 1 = 0.8 + 0.6 = 1.4
    branches = [("a", {"label": 1, "p": [0.2, 0.8]}), ("b", {"label": 0, "p": [0.4, 0.6]})]
    assert majority_vote(branches, spec("majority_vote", field="label",
                                        proba_field="p"))["label"] == 1
    branches = [("a", {"label": 0, "p": [0.9, 0.1]}), ("b", {"label": 1, "p": [0.1, 0.2]})]
    assert majority_vote(branches, spec("majority_vote", field="label",
                                        proba_field="p"))["label"] == 0


# --- weighted_average --------------------------------------------------------------------

def test_weighted_average_scalars():
    # (1*1.0 + 3*3.0) / 4 = 2.5
    out = weighted_average([("a", {"y": 1.0}), ("b", {"y": 3.0})],
                           spec("weighted_average", field="y", weights={"b": 3}))
    assert float(out["y"]) == approx(2.5)
    assert set(out) == {"y"}
    # plain mean of 1, 2, 6 = 3
    out = weighted_average([("a", {"y": 1}), ("b", {"y": 2}), ("c", {"y": 6})],
                           spec("weighted_average", field="y"))
    assert float(out["y"]) == approx(3.0)


def test_weighted_average_arrays():
    # (3*[1, 2] + 1*[3, 6]) / 4 = [1.5, 3.0]
    out = weighted_average([("a", {"y": [1.0, 2.0]}), ("b", {"y": [3.0, 6.0]})],
                           spec("weighted_average", field="y", weights={"a": 3, "b": 1}))
    assert out["y"].tolist() == approx([1.5, 3.0])
    # 2-d: (1*[[0, 2], [4, 6]] + 1*[[2, 2], [0, 2]]) / 2
    out = weighted_average([("a", {"y": [[0, 2], [4, 6]]}), ("b", {"y": [[2, 2], [0, 2]]})],
                           spec("weighted_average", field="y"))
    assert out["y"].tolist() == [[1.0, 2.0], [2.0, 4.0]]


def test_weighted_average_errors():
    with pytest.raises(StrategyError, match="branch 'b' gives 'y' with shape"):
        weighted_average([("a", {"y": 1.0}), ("b", {"y": [1.0, 2.0]})],
                         spec("weighted_average", field="y"))
    with pytest.raises(StrategyError, match="branch 'a' has no field 'y'"):
        weighted_average([("a", {"x": 1.0}), ("b", {"y": 1.0})],
                         spec("weighted_average", field="y"))


# --- max_confidence ----------------------------------------------------------------------

def test_max_confidence_chooses_most_confident_branch():
    branches = [("a", {"proba": [0.6, 0.4]}), ("b", {"proba": [0.1, 0.9]}),
                ("c", {"proba": [0.8, 0.2]})]
    out = max_confidence(branches, spec("max_confidence"))
    assert out["chosen"] == "b"
    assert out["label"] == 1
    assert out["proba"].tolist() == [0.1, 0.9]


def test_max_confidence_ties_go_to_earliest_branch():
    branches = [("a", {"proba": [0.3, 0.7]}), ("b", {"proba": [0.7, 0.3]}),
                ("c", {"proba": [0.5, 0.5]})]
    out = max_confidence(branches, spec("max_confidence"))
    assert (out["chosen"], out["label"]) == ("a", 1)
    out = max_confidence(branches[1:] + branches[:1], spec("max_confidence"))
    assert (out["chosen"], out["label"]) == ("b", 0)


# --- entropy_weighted --------------------------------------------------------------------

def test_entropy_weighted_two_branches():
    # H(a) = ln 2 = 0.693147; H(b) = -(0.9 ln 0.9 + 0.1 ln 0.1) = 0.094825 + 0.230259
    # = 0.325083. Weights 1/(H + 1e-6): 1.442693 and 3.076128, normalised 0.319263 and
    # 0.680737. Fused: 0.319263*[0.5, 0.5] + 0.680737*[0.9, 0.1] = [0.772295, 0.227705].
    branches = [("a", {"proba": [0.5, 0.5]}), ("b", {"proba": [0.9, 0.1]})]
    out = entropy_weighted(branches, spec("entropy_weighted"))
    assert out["branch_weights"]["a"] == approx(0.319263, abs=1e-6)
    assert out["branch_weights"]["b"] == approx(0.680737, abs=1e-6)
    assert out["proba"].tolist() == approx([0.772295, 0.227705], abs=1e-6)
    assert out["label"] == 0


def test_entropy_weighted_times_configured_weights():
    # a weighted 3: 3*1.442693 = 4.328079 against 3.076128 -> 0.584543, 0.415457;
    # fused: [0.5*0.584543 + 0.9*0.415457, 0.5*0.584543 + 0.1*0.415457]
    branches = [("a", {"proba": [0.5, 0.5]}), ("b", {"proba": [0.9, 0.1]})]
    out = entropy_weighted(branches, spec("entropy_weighted", weights={"a": 3}))
    assert out["branch_weights"]["a"] == approx(0.584543, abs=1e-6)
    assert out["branch_weights"]["b"] == approx(0.415457, abs=1e-6)
    assert out["proba"].tolist() == approx([0.666183, 0.333817], abs=1e-6)


def test_entropy_weighted_certain_branch_dominates():
    # H([1, 0]) = 0 -> weight 1e6, against 1/(ln 2 + 1e-6) = 1.44: a takes ~all
    branches = [("a", {"proba": [1.0, 0.0]}), ("b", {"proba": [0.5, 0.5]})]
    out = entropy_weighted(branches, spec("entropy_weighted"))
    assert out["branch_weights"]["a"] == approx(1e6 / (1e6 + 1.4426929), rel=1e-9)
    assert out["label"] == 0
    assert out["proba"][0] > 0.999998


# --- gate_weighted -----------------------------------------------------------------------

def test_gate_weighted_renormalises_over_present_experts():
    # gate gave a 0.6, b 0.2, c 0.2; c did not answer: 0.6/0.8 = 0.75, 0.2/0.8 = 0.25
    gate = {"a": 0.6, "b": 0.2, "c": 0.2}
    branches = [("a", {"proba": [1.0, 0.0], "gate_weights": gate}),
                ("b", {"proba": [0.2, 0.8], "gate_weights": gate})]
    out = gate_weighted(branches, spec("gate_weighted"))
    # 0.75*[1, 0] + 0.25*[0.2, 0.8] = [0.8, 0.2]
    assert out["proba"].tolist() == approx([0.8, 0.2])
    assert out["label"] == 0


def test_gate_weighted_each_branch_uses_its_own_payloads_gate_weights():
    # a's payload says a: 1, b's payload says b: 3 -> weights 1/4 and 3/4
    branches = [("a", {"y": 4.0, "gate_weights": {"a": 1.0}}),
                ("b", {"y": 8.0, "gate_weights": {"b": 3.0}})]
    out = gate_weighted(branches, spec("gate_weighted", field="y"))
    assert float(out["y"]) == approx(7.0)
    assert "label" not in out  # scalars have no argmax


def test_gate_weighted_missing_gate_weights():
    with pytest.raises(StrategyError, match="branch 'b' carries no gate weight"):
        gate_weighted([("a", {"proba": [1.0], "gate_weights": {"a": 1.0}}),
                       ("b", {"proba": [1.0]})], spec("gate_weighted"))
    with pytest.raises(StrategyError, match="branch 'a' carries no gate weight"):
        gate_weighted([("a", {"proba": [1.0], "gate_weights": {"b": 1.0}})],
                      spec("gate_weighted"))
    with pytest.raises(StrategyError, match="sum to zero"):
        gate_weighted([("a", {"proba": [1.0], "gate_weights": {"a": 0.0}})],
                      spec("gate_weighted"))


# --- merge, keep_branches, combine -------------------------------------------------------

def test_merge_keeps_every_payload_under_its_branch():
    branches = [("ocr", {"text": "hi"}), ("det", {"boxes": [[0, 0, 1, 1]]})]
    assert merge(branches, spec("merge")) == {"ocr": {"text": "hi"},
                                              "det": {"boxes": [[0, 0, 1, 1]]}}
    assert combine(branches, spec("merge", keep_branches=True)) == \
        {"ocr": {"text": "hi"}, "det": {"boxes": [[0, 0, 1, 1]]}}


def test_keep_branches():
    branches = [("a", {"proba": [0.9, 0.1], "x": 1}), ("b", {"proba": [0.2, 0.8]})]
    out = combine(branches, spec("soft_vote", keep_branches=True, weights={"b": 3}))
    assert out["branches"] == {"a": [0.9, 0.1], "b": [0.2, 0.8]}
    assert out["label"] == 1
    assert "branches" not in combine(branches, spec("soft_vote"))


def test_combine_dispatches_and_rejects_no_branches():
    out = combine([("a", {"y": 1.0}), ("b", {"y": 3.0})], spec("weighted_average", field="y"))
    assert float(out["y"]) == 2.0
    with pytest.raises(StrategyError, match="no branch answered"):
        combine([], spec("soft_vote"))


def test_stacking_features_concatenated_in_branch_order():
    feats = stacking_features([("b", {"proba": [[1, 2], [3, 4]]}),
                               ("a", {"proba": [[5, 6], [7, 8]]})], spec("stacking"))
    assert feats.dtype == np.float32
    assert feats.tolist() == [1, 2, 3, 4, 5, 6, 7, 8]


# --- Aggregator: python entrypoints ------------------------------------------------------

AGGREGATORS = '''
def total(branches, spec):
    return {"total": sum(p["y"] for p in branches.values()) * spec.options.get("times", 1),
            "order": list(branches)}

def not_a_dict(branches, spec):
    return [1, 2]

def boom(branches, spec):
    if "bad" in branches:
        raise KeyError("bad branch")
    return {"ok": True}

class Scaled:
    def __init__(self, scale, offset=0):
        self.scale, self.offset = scale, offset

    def __call__(self, branches, spec):
        return {"y": self.scale * sum(p["y"] for p in branches.values()) + self.offset}
'''


def write_module(tmp_path: Path, text: str) -> str:
    """A module of its own name (tests must not share sys.modules entries)."""
    name = f"mod_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(text)
    return name


def test_aggregator_python_function(tmp_path):
    mod = write_module(tmp_path, AGGREGATORS)
    agg = Aggregator(JoinSpec(strategy="python", entrypoint=f"{mod}:total"), tmp_path)
    out = agg([[("a", {"y": 1}), ("b", {"y": 2})], [("b", {"y": 10}), ("a", {"y": 5})]])
    assert out == [{"total": 3, "order": ["a", "b"]}, {"total": 15, "order": ["b", "a"]}]
    agg = Aggregator(JoinSpec(strategy="python", entrypoint=f"{mod}:total",
                              options={"times": 2}), tmp_path)
    assert agg([[("a", {"y": 1}), ("b", {"y": 2})]]) == [{"total": 6, "order": ["a", "b"]}]


def test_aggregator_python_class_instantiated_with_options(tmp_path):
    mod = write_module(tmp_path, AGGREGATORS)
    agg = Aggregator(JoinSpec(strategy="python", entrypoint=f"{mod}:Scaled",
                              options={"scale": 10, "offset": 1}), tmp_path)
    assert agg([[("a", {"y": 1}), ("b", {"y": 2})], [("a", {"y": 0})]]) == [{"y": 31}, {"y": 1}]


def test_aggregator_python_failures_are_strategy_errors_per_request(tmp_path):
    mod = write_module(tmp_path, AGGREGATORS)
    agg = Aggregator(JoinSpec(strategy="python", entrypoint=f"{mod}:not_a_dict"), tmp_path)
    [out] = agg([[("a", {"y": 1})]])
    assert isinstance(out, StrategyError)
    assert f"aggregator '{mod}:not_a_dict' returned list, not a dict" in str(out)
    agg = Aggregator(JoinSpec(strategy="python", entrypoint=f"{mod}:boom"), tmp_path)
    good, bad, good2 = agg([[("a", {})], [("a", {}), ("bad", {})], [("b", {})]])
    assert good == good2 == {"ok": True}
    assert isinstance(bad, StrategyError)
    assert str(bad) == "KeyError: 'bad branch'"


def test_aggregator_builtin_strategy_per_request():
    agg = Aggregator(JoinSpec(strategy="soft_vote", weights={"b": 3}), ".")
    ok, bad = agg([[("a", {"proba": [0.9, 0.1]}), ("b", {"proba": [0.2, 0.8]})],
                   [("a", {"proba": [0.9, 0.1]}), ("b", {"score": 1})]])
    assert ok["proba"].tolist() == approx([0.375, 0.625])
    assert ok["label"] == 1
    assert isinstance(bad, StrategyError)
    assert "branch 'b' has no field 'proba'" in str(bad)


# --- Aggregator: stacking ----------------------------------------------------------------

META = '''
import numpy as np

SEEN = []

def meta(batch):
    out = []
    for p in batch:
        SEEN.append(p["features"])
        if p["features"][0] < 0:
            raise ValueError("negative first feature")
        out.append({"y": float(np.dot(p["features"], np.arange(1, len(p["features"]) + 1)))})
    return out
'''


def stacking_aggregator(tmp_path: Path, **kwargs) -> tuple[Aggregator, list]:
    import importlib

    mod = write_module(tmp_path, META)
    model = ModelSpec(runtime="python", entrypoint=f"{mod}:meta")
    agg = Aggregator(JoinSpec(strategy="stacking", model=model, **kwargs), tmp_path, "stack")
    return agg, importlib.import_module(mod).SEEN


def test_stacking_features_are_branch_fields_in_branch_order(tmp_path):
    agg, seen = stacking_aggregator(tmp_path)
    agg.warmup()
    out = agg([[("a", {"proba": [0.1, 0.9]}), ("b", {"proba": [0.6, 0.4]})],
               [("b", {"proba": [1.0, 0.0]}), ("a", {"proba": [0.0, 1.0]})]])
    assert [f.tolist() for f in seen] == [approx([0.1, 0.9, 0.6, 0.4]), [1.0, 0.0, 0.0, 1.0]]
    assert all(f.dtype == np.float32 for f in seen)
    # y = 1*f0 + 2*f1 + 3*f2 + 4*f3: 0.1 + 1.8 + 1.8 + 1.6 = 5.3 ; 1 + 0 + 0 + 4 = 5
    assert out[0] == {"y": approx(5.3, rel=1e-6)}
    assert out[1] == {"y": 5.0}


def test_stacking_one_bad_request_fails_alone(tmp_path):
    agg, seen = stacking_aggregator(tmp_path, keep_branches=True)
    out = agg([[("a", {"proba": [1.0, 0.0]}), ("b", {"proba": [0.0, 1.0]})],
               [("a", {"proba": [1.0, 0.0]}), ("b", {"proba": [0.0, 1.0, 0.0]})],
               [("a", {"proba": [2.0, 0.0]}), ("b", {"other": 1})],
               [("a", {"proba": [-1.0, 0.0]}), ("b", {"proba": [0.0, 0.0]})],
               [("a", {"proba": [0.0, 0.0]}), ("b", {"proba": [0.0, 2.0]})]])
    # 1*1 + 4*1 = 5 ; 4*2 = 8
    assert out[0] == {"y": 5.0, "branches": {"a": [1.0, 0.0], "b": [0.0, 1.0]}}
    assert out[4] == {"y": 8.0, "branches": {"a": [0.0, 0.0], "b": [0.0, 2.0]}}
    assert isinstance(out[1], StrategyError)
    assert "branch 'b' gives 'proba' with shape (3,)" in str(out[1])
    assert isinstance(out[2], StrategyError)
    assert "branch 'b' has no field 'proba'" in str(out[2])
    assert isinstance(out[3], StrategyError)
    assert str(out[3]) == ("the stacking model failed: ValueError: negative first feature")
    # the bad rows never reached the model; the batch failed at its second row, so each
    # row was retried alone
    assert [f.tolist() for f in seen] == [[1, 0, 0, 1], [-1, 0, 0, 0],
                                          [1, 0, 0, 1], [-1, 0, 0, 0], [0, 0, 0, 2]]


def test_every_strategy_declared_in_the_topology_is_implemented():
    from streamcompose.join.strategies import STRATEGIES
    from streamcompose.topology.model import JOIN_STRATEGIES

    # stacking (a meta-model) and python (the user's aggregator) are the Aggregator's own
    assert set(STRATEGIES) | {"stacking", "python"} == set(JOIN_STRATEGIES)


@pytest.mark.parametrize("strategy", ["soft_vote", "weighted_average"])
def test_a_batch_is_fused_bit_for_bit_as_each_request_alone(strategy: str) -> None:
    spec = JoinSpec(strategy=strategy, weights={"b": 3.0, "c": 0.7})
    rng = np.random.default_rng(1)
    batch = [[(name, {"proba": rng.dirichlet(np.ones(10)).astype(np.float32)})
              for name in "abc"] for _ in range(40)]
    fused = combine_many(batch, spec)
    assert fused is not None and len(fused) == 40
    for branches, out in zip(batch, fused, strict=True):
        alone = combine(branches, spec)
        assert out.keys() == alone.keys()
        assert out["proba"].tobytes() == alone["proba"].tobytes()
        assert out.get("label") == alone.get("label")


def test_a_batch_that_differs_is_fused_request_by_request() -> None:
    spec = JoinSpec(strategy="soft_vote")
    good = [("a", {"proba": [0.9, 0.1]}), ("b", {"proba": [0.2, 0.8]})]
    for odd in ([("a", {"proba": [0.9, 0.1]})],                      # one branch missing
                [("a", {"proba": [0.9, 0.1]}), ("b", {"p": [1.0]})],  # a field missing
                [("a", {"proba": [0.9, 0.1, 0.0]}), ("b", {"proba": [0.2, 0.8, 0.0]})]):
        assert combine_many([good, odd], spec) is None
    assert combine_many([good], JoinSpec(strategy="max_confidence")) is None
    fused = Aggregator(spec, ".")([good, [("a", {"proba": [0.9, 0.1]}), ("b", {"p": [1.0]})]])
    assert fused[0]["label"] == 0
    assert isinstance(fused[1], StrategyError) and "branch 'b' has no field 'proba'" in str(
        fused[1])
