"""Unit tests of the mixture-of-experts example (``topologies/moe.yaml``), run in-process
without a broker.

The topology is loaded (which validates it) and its agents run as their workers run
them: the gate's router step and each expert's model step (``build_step``) on
micro-batches of their configured size, each emission's fields merged into the payload;
the gate's emissions say which experts get which request. The joiner's
:class:`Aggregator` then fuses each request's expert answers in the joiner's ``inputs``
order, the result being the first answer's payload updated with the fused fields, less
``drop``. Everything is compared with ``topologies/moe/direct.py`` on the whole held-out
split. The models are trained into ``topologies/models`` where missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from fixtures import import_topology_module, trained
from sklearn.linear_model import LogisticRegression

from streamcompose.codec import decode_payload, encode_payload
from streamcompose.codec.record import EXPECT
from streamcompose.join.aggregate import Aggregator
from streamcompose.join.strategies import StrategyError
from streamcompose.kinds import build_step
from streamcompose.runtimes import RecordError
from streamcompose.steps.base import Emission, Request
from streamcompose.topology import Topology, load_topology

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
MOE = TOPOLOGIES / "moe.yaml"
MAX_MODEL_BYTES = 500_000
#: onnxruntime's float32 outputs move by a few units in the last place with the number
#: of rows per call (the micro-batch), which differs between the topology and direct.py
PROBA_ATOL = 2e-6

Payload = dict[str, Any]


@pytest.fixture(scope="module")
def train() -> ModuleType:
    """``topologies/moe/train.py``, with every model trained where missing."""
    return trained("moe")


@pytest.fixture(scope="module")
def direct(train: ModuleType) -> ModuleType:
    """``topologies/moe/direct.py`` (the models exist)."""
    return import_topology_module("moe.direct")


@pytest.fixture(scope="module")
def topology(direct: ModuleType) -> Topology:
    """``moe.yaml``, loaded and validated."""
    return load_topology(MOE)


@pytest.fixture(scope="module")
def held_out(direct: ModuleType) -> Any:
    """The whole held-out split (``direct.TestSet``)."""
    return direct.load_test()


@pytest.fixture(scope="module")
def expert_probas(direct: ModuleType, held_out: Any) -> dict[str, np.ndarray]:
    """Each expert's probabilities on the held-out split, computed directly."""
    return direct.expert_probabilities(held_out.x)


@pytest.fixture(scope="module")
def expected(direct: ModuleType, held_out: Any,
             expert_probas: dict[str, np.ndarray]) -> Any:
    """The mixture on the held-out split, computed directly (``direct.Mixture``)."""
    return direct.moe(direct.gate_scores(held_out.x), expert_probas)


@dataclass(frozen=True)
class Run:
    """What the topology did with each request, in request order: the experts the gate
    sent it to (in the order of its emissions), the gate's ``sc-expect`` header, and
    the joiner's result."""

    experts: list[list[str]]
    expect: list[list[str]]
    results: list[Payload]


def _batches(items: list[Request], size: int) -> Iterator[list[Request]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _merge(payload: Payload, emission: Emission, drop: tuple[str, ...]) -> Payload:
    """The payload an agent sends on: the request's, updated with the emission's fields,
    less ``drop``."""
    merged = {**payload, **emission.fields}
    for name in drop:
        merged.pop(name, None)
    return merged


def run_moe(topology: Topology, payloads: list[Payload]) -> Run:
    """Run gate -> experts -> combiner on the payloads as the workers would."""
    requests = [(f"r{i}", p) for i, p in enumerate(payloads)]
    gate = topology.agent("gate")
    gate_step = build_step(topology, "gate")
    gate_step.warmup()
    routed: dict[str, list[Request]] = {e: [] for e in topology.targets("gate")}
    experts: dict[str, list[str]] = {}
    expect: dict[str, list[str]] = {}
    for batch in _batches(requests, gate.batch.max_size):
        for (rid, payload), outcome in zip(batch, gate_step(batch), strict=True):
            assert not isinstance(outcome, RecordError), outcome
            experts[rid] = [e.target for e in outcome]
            for emission in outcome:
                assert emission.topic == topology.edge_topic("gate", emission.target)
                expect.setdefault(rid, dict(emission.headers)[EXPECT].decode().split(","))
                assert dict(emission.headers)[EXPECT].decode().split(",") == expect[rid]
                routed[emission.target].append((rid, _merge(payload, emission, gate.drop)))

    combine = topology.agent("combine")
    answers: dict[str, dict[str, Payload]] = {rid: {} for rid, _ in requests}
    for name in combine.inputs:
        expert = topology.agent(name)
        step = build_step(topology, name)
        step.warmup()
        for batch in _batches(routed[name], expert.batch.max_size):
            for (rid, payload), outcome in zip(batch, step(batch), strict=True):
                assert not isinstance(outcome, RecordError), outcome
                (emission,) = outcome
                assert emission.topic == topology.topic_of(name)
                answers[rid][name] = _merge(payload, emission, expert.drop)

    assert combine.join is not None
    branches = [[(b, answers[rid][b]) for b in combine.inputs if b in answers[rid]]
                for rid, _ in requests]
    fused = Aggregator(combine.join, topology.base_dir, "combine")(branches)
    results = []
    for request_branches, result in zip(branches, fused, strict=True):
        assert not isinstance(result, StrategyError), result
        payload = {**request_branches[0][1], **result}
        for name in combine.drop:
            payload.pop(name, None)
        results.append(payload)
    return Run(experts=[experts[rid] for rid, _ in requests],
               expect=[expect[rid] for rid, _ in requests], results=results)


@pytest.fixture(scope="module")
def run(topology: Topology, held_out: Any) -> Run:
    """The whole held-out split through the topology's steps, features as lists as a
    client sends them."""
    return run_moe(topology, [{"features": row.tolist()} for row in held_out.x])


def test_topology_loads(direct: ModuleType, topology: Topology) -> None:
    assert topology.name == "moe" and topology.fields == ("features",)
    assert topology.order() == ("gate", *direct.EXPERTS, "combine")
    gate = topology.agent("gate")
    assert gate.kind == "route" and gate.router is not None
    assert gate.router.targets == direct.EXPERTS
    assert (gate.router.top_k, gate.router.scores, gate.router.capacity) == (
        direct.TOP_K, "scores", None)
    assert gate.router.model is not None
    assert gate.router.model.path == direct.MODELS_DIR / direct.GATE_FILE
    for name in direct.EXPERTS:
        expert = topology.agent(name)
        assert expert.inputs == ("gate",) and expert.model is not None
        assert expert.model.path == direct.MODELS_DIR / direct.EXPERT_FILES[name]
        assert expert.model.outputs == ("proba",)
        assert expert.batch.max_size > 1
    combine = topology.agent("combine")
    assert combine.inputs == direct.EXPERTS and combine.join is not None
    assert (combine.join.strategy, combine.join.field, combine.join.mode,
            combine.join.timeout_ms) == ("gate_weighted", "proba", "all", 5000.0)
    assert combine.drop == ("features",)


def test_gate_sends_each_request_to_its_top_k(direct: ModuleType, run: Run,
                                              expected: Any) -> None:
    for i, (experts, expect) in enumerate(zip(run.experts, run.expect, strict=True)):
        assert len(experts) == direct.TOP_K and expect == experts
        assert set(experts) == {e for e, c in zip(direct.EXPERTS, expected.chosen[i],
                                                  strict=True) if c}
    load = {e: sum(e in experts for experts in run.experts) for e in direct.EXPERTS}
    assert load == direct.expert_load(expected.chosen)
    assert all(n > 0 for n in load.values())


def test_result_carries_label_proba_and_gate_weights(direct: ModuleType, run: Run,
                                                     expected: Any) -> None:
    for i, result in enumerate(run.results):
        assert set(result) == {"label", "proba", "gate_weights"}
        wired = decode_payload(encode_payload(result))
        assert isinstance(wired["label"], int) and np.shape(wired["proba"]) == (2,)
        weights = result["gate_weights"]
        assert set(weights) == set(run.experts[i])
        assert sum(weights.values()) == pytest.approx(1.0)
        for e, expert in enumerate(direct.EXPERTS):
            assert weights.get(expert, 0.0) == pytest.approx(expected.weights[i, e],
                                                             rel=0, abs=PROBA_ATOL)


def test_mixture_matches_direct(run: Run, expected: Any) -> None:
    labels = np.array([r["label"] for r in run.results])
    np.testing.assert_array_equal(labels, expected.labels)
    np.testing.assert_allclose([r["proba"] for r in run.results], expected.proba,
                               rtol=0, atol=PROBA_ATOL)


def test_mixture_beats_every_expert(direct: ModuleType, run: Run, held_out: Any,
                                    expert_probas: dict[str, np.ndarray]) -> None:
    mixture = direct.accuracy([r["label"] for r in run.results], held_out.y)
    experts = {e: direct.accuracy(p.argmax(axis=1), held_out.y)
               for e, p in expert_probas.items()}
    assert mixture > max(experts.values()), (mixture, experts)
    assert mixture > 0.95
    assert direct.accuracy(direct.gate_scores(held_out.x).argmax(axis=1),
                           held_out.region) > 0.95


def test_one_linear_model_is_poor(train: ModuleType, held_out: Any) -> None:
    split = import_topology_module("moe.data").load_split()
    model = LogisticRegression(max_iter=1000).fit(split.x_train, split.y_train)
    assert model.score(held_out.x, held_out.y) < 0.75


def test_models_are_small_and_kept(train: ModuleType) -> None:
    assert train.train_all(train.MODELS_DIR) == dict.fromkeys(train.TRAINERS)
    for name in train.TRAINERS:
        assert (train.MODELS_DIR / name).stat().st_size < MAX_MODEL_BYTES
