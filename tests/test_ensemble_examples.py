"""Unit tests of the ensemble example topologies run in-process (no broker).

``digits_ensemble.yaml`` (soft vote) and ``digits_stacking.yaml`` (stacking) fan the
``features`` step out to four heterogeneous members and fuse them in a joiner;
``inference_graph.yaml`` runs two text generators, each followed by a topic classifier,
and merges the branches. Each topology is loaded (which validates it) and its agents run
through their runtimes in topological order, on micro-batches of their configured size,
results merged into the payloads as the agent workers merge them; joiners fuse the
branches in their ``inputs`` order through the joiner's :class:`Aggregator`, the result
being the first branch's payload updated with the fused fields, less ``drop``. The
models are trained into ``topologies/models`` where missing. Both digits ensembles run on
the whole held-out split (450 digits): each must give the direct computation's labels
and be at least as accurate as its best member; the soft vote's weights in the topology
must be those the training chose (``digits_weights.json``).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from fixtures import import_topology_module, trained

from streamcompose.codec import JSON, decode_payload, encode_payload
from streamcompose.join.aggregate import Aggregator
from streamcompose.join.strategies import StrategyError
from streamcompose.runtimes import RecordError, load_runtime
from streamcompose.topology import Topology, load_topology
from streamcompose.topology.model import INPUT

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
ENSEMBLE = TOPOLOGIES / "digits_ensemble.yaml"
STACKING = TOPOLOGIES / "digits_stacking.yaml"
GRAPH = TOPOLOGIES / "inference_graph.yaml"
SAMPLES = 450  # the whole held-out split
MAX_MODEL_BYTES = 2_000_000
PROMPTS = ["the chef", "heavy rain over", "our striker", "hello world", ""]

Payload = dict[str, Any]


@pytest.fixture(scope="module")
def direct() -> ModuleType:
    """``topologies/digits/direct.py``, with every digits model trained where missing."""
    trained("digits")
    return import_topology_module("digits.direct")


@pytest.fixture(scope="module")
def textgraph() -> ModuleType:
    """``topologies/textgraph/train.py``, with its models trained where missing."""
    return trained("textgraph")


@pytest.fixture(scope="module")
def held_out(direct: ModuleType) -> tuple[np.ndarray, np.ndarray]:
    """The held-out digits: raw pixels (0..16) [SAMPLES,64] and labels."""
    with np.load(direct.MODELS_DIR / "digits_test.npz") as data:
        pixels, labels = data["X"], data["y"]
    assert pixels.shape == (SAMPLES, 64) and labels.shape == (SAMPLES,)
    return pixels, labels


@pytest.fixture(scope="module")
def member_probas(direct: ModuleType, held_out: tuple[np.ndarray, np.ndarray]
                  ) -> dict[str, np.ndarray]:
    """Each member's probabilities for the held-out digits, computed directly."""
    return direct.member_probabilities(held_out[0])


def run_graph(topology: Topology, payloads: list[Payload]) -> dict[str, list[Payload]]:
    """Every agent's result for each payload, by agent name (``$input``: the payloads).
    Model agents have one input; a failing payload or fusion fails the test."""
    results: dict[str, list[Payload]] = {INPUT: payloads}
    for name in topology.order():
        agent = topology.agent(name)
        if agent.join is not None:
            requests = [[(b, results[b][i]) for b in agent.inputs] for i in range(len(payloads))]
            fused = Aggregator(agent.join, topology.base_dir, name)(requests)
            assert not any(isinstance(f, StrategyError) for f in fused), fused
            out = [{**branches[0][1], **f} for branches, f in zip(requests, fused, strict=True)]
        else:
            assert agent.model is not None
            (source,) = agent.inputs
            runtime = load_runtime(agent.model, topology.base_dir, name)
            runtime.warmup()
            out = []
            size = agent.batch.max_size
            for start in range(0, len(payloads), size):
                chunk = results[source][start:start + size]
                for payload, result in zip(chunk, runtime.infer(chunk), strict=True):
                    assert not isinstance(result, RecordError), result
                    out.append({**payload, **result})
        for payload in out:
            for field in agent.drop:
                payload.pop(field, None)
        results[name] = out
    return results


def digits_payloads(held_out: tuple[np.ndarray, np.ndarray]) -> list[Payload]:
    """The requests of the held-out digits, pixels as lists as a client sends them."""
    return [{"pixels": row.tolist()} for row in held_out[0]]


@pytest.mark.parametrize(("path", "name", "joiner", "strategy"), [
    (ENSEMBLE, "digits-ensemble", "vote", "soft_vote"),
    (STACKING, "digits-stacking", "stack", "stacking"),
])
def test_digits_ensembles_load(direct: ModuleType, path: Path, name: str, joiner: str,
                               strategy: str) -> None:
    topology = load_topology(path)
    assert topology.name == name and topology.fields == ("pixels",)
    assert topology.order() == ("features", *direct.MEMBERS, joiner)
    for member in direct.MEMBERS:
        agent = topology.agent(member)
        assert agent.inputs == ("features",)
        assert (agent.batch.max_size, agent.batch.max_wait_ms) == (32, 5.0)
        assert agent.model is not None
        assert agent.model.path == direct.MODELS_DIR / direct.MEMBER_FILES[member][0]
        assert dict(agent.model.input_map) == {"x": direct.MEMBER_FILES[member][1]}
        assert agent.drop == ("image", "flat")
    spec = topology.agent(joiner)
    assert spec.join is not None
    assert spec.inputs == direct.MEMBERS
    assert (spec.join.strategy, spec.join.mode, spec.join.field) == (strategy, "all", "proba")
    assert spec.drop == ()


@pytest.mark.parametrize("path", [ENSEMBLE, STACKING])
def test_members_give_only_proba(direct: ModuleType, held_out: tuple[np.ndarray, np.ndarray],
                                 member_probas: dict[str, np.ndarray], path: Path) -> None:
    results = run_graph(load_topology(path), digits_payloads(held_out)[:5])
    for member in direct.MEMBERS:
        for i, payload in enumerate(results[member]):
            assert set(payload) == {"pixels", "proba"}
            np.testing.assert_allclose(payload["proba"], member_probas[member][i],
                                       rtol=1e-5, atol=1e-6)


def best_member_accuracy(direct: ModuleType, member_probas: dict[str, np.ndarray],
                         truth: np.ndarray) -> float:
    return max(direct.accuracy(p.argmax(axis=1), truth) for p in member_probas.values())


def test_soft_vote_matches_direct(direct: ModuleType, held_out: tuple[np.ndarray, np.ndarray],
                                  member_probas: dict[str, np.ndarray]) -> None:
    topology = load_topology(ENSEMBLE)
    join = topology.agent("vote").join
    assert join is not None
    results = run_graph(topology, digits_payloads(held_out))["vote"]
    expected = direct.soft_vote(member_probas, join.weights)

    for result in results:
        assert set(result) == {"pixels", "label", "proba"}
        assert isinstance(result["label"], int) and len(result["proba"]) == 10
    labels = np.array([r["label"] for r in results])
    np.testing.assert_array_equal(labels, expected.argmax(axis=1))
    np.testing.assert_allclose([r["proba"] for r in results], expected, rtol=1e-5, atol=1e-6)
    best = best_member_accuracy(direct, member_probas, held_out[1])
    assert direct.accuracy(labels, held_out[1]) >= best


def test_soft_vote_weights_are_the_trained_ones(direct: ModuleType) -> None:
    join = load_topology(ENSEMBLE).agent("vote").join
    assert join is not None
    trained = direct.trained_weights()
    assert dict(join.weights) == trained, (
        f"digits_ensemble.yaml's vote.join.weights {dict(join.weights)} are not the trained "
        f"ones {trained} (topologies/models/{direct.WEIGHTS_FILE}): copy these into the yaml")
    assert all(w >= 1 for w in trained.values()), "every member keeps a vote"


def test_weighted_soft_vote_beats_equal_weights_out_of_fold(direct: ModuleType) -> None:
    train = import_topology_module("digits.train")
    y = np.array([0, 1, 2, 3])
    # logreg and cnn are sure of wrong labels; forest and mlp are right, but less sure
    wrong = np.eye(10)[y + 1] * 0.6 + 0.04
    oof = {"logreg": wrong, "forest": np.eye(10)[y] * 0.15 + 0.05,
           "mlp": np.eye(10)[y] * 0.3 + 0.07, "cnn": wrong}
    assert direct.accuracy(direct.soft_vote(oof).argmax(axis=1), y) == 0.0
    weights = train.vote_weights(oof, y)
    # the smallest weights that make forest and mlp outvote them
    assert weights == {"logreg": 1, "forest": 1, "mlp": 4, "cnn": 1}
    assert direct.accuracy(direct.soft_vote(oof, weights).argmax(axis=1), y) == 1.0
    right = {m: np.eye(10)[y] for m in direct.MEMBERS}
    assert train.vote_weights(right, y) == dict.fromkeys(direct.MEMBERS, 1), "ties: smallest"


def test_digits_model_files_are_small(direct: ModuleType) -> None:
    for file, _ in direct.MEMBER_FILES.values():
        assert (direct.MODELS_DIR / file).stat().st_size < MAX_MODEL_BYTES, file
    assert (direct.MODELS_DIR / direct.STACK_FILE).stat().st_size < MAX_MODEL_BYTES


def test_stacking_matches_direct(direct: ModuleType, held_out: tuple[np.ndarray, np.ndarray],
                                 member_probas: dict[str, np.ndarray]) -> None:
    topology = load_topology(STACKING)
    results = run_graph(topology, digits_payloads(held_out))["stack"]
    join = topology.agent("stack").join
    assert join is not None and join.model is not None
    assert join.model.path == direct.MODELS_DIR / direct.STACK_FILE
    expected_labels, expected_proba = direct.stack(member_probas)

    for result in results:
        assert set(result) == {"pixels", "label", "proba"}
        assert np.shape(result["proba"]) == (10,)
    # on the wire the label is an int, as the joiner encodes it
    wired = [decode_payload(encode_payload(r)) for r in results]
    assert all(isinstance(r["label"], int) for r in wired)
    labels = np.array([r["label"] for r in wired])
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_allclose([r["proba"] for r in results], expected_proba,
                               rtol=1e-5, atol=1e-6)
    best = best_member_accuracy(direct, member_probas, held_out[1])
    assert direct.accuracy(labels, held_out[1]) >= best


def test_stacking_features_are_the_members_probabilities(
        direct: ModuleType, member_probas: dict[str, np.ndarray]) -> None:
    features = direct.stacking_features(member_probas)
    assert features.shape == (SAMPLES, 40) and features.dtype == np.float32
    for k, member in enumerate(direct.MEMBERS):
        np.testing.assert_array_equal(features[:, 10 * k:10 * (k + 1)], member_probas[member])


def test_inference_graph_merges_the_branches(textgraph: ModuleType) -> None:
    topology = load_topology(GRAPH)
    assert topology.name == "inference-graph" and topology.output_format == "json"
    assert topology.order() == ("bigram", "trigram", "bigram_topic", "trigram_topic", "gather")
    topics = set(import_topology_module("textgraph.corpus").TOPICS)

    results = run_graph(topology, [{"prompt": p} for p in PROMPTS])["gather"]
    for prompt, result in zip(PROMPTS, results, strict=True):
        assert set(result) == {"bigram_topic", "trigram_topic"}
        for branch in result.values():
            assert set(branch) == {"prompt", "text", "label", "proba"}
            assert branch["prompt"] == prompt
            assert branch["text"].startswith(prompt) and len(branch["text"]) > len(prompt)
            assert branch["label"] in topics and set(branch["proba"]) == topics
            assert branch["proba"][branch["label"]] == max(branch["proba"].values())
            assert sum(branch["proba"].values()) == pytest.approx(1.0)
        assert decode_payload(encode_payload(result, JSON), JSON) == result


def test_inference_graph_is_deterministic(textgraph: ModuleType) -> None:
    topology = load_topology(GRAPH)
    requests = [{"prompt": "the chef"}, {"prompt": "the chef", "seed": 1},
                {"prompt": "the chef", "seed": 2}]
    first, again = (run_graph(topology, [dict(r) for r in requests])["gather"]
                    for _ in range(2))
    assert first == again
    texts = {r["trigram_topic"]["text"] for r in first}
    assert len(texts) == len(requests), "each seed samples its own text"
    assert all("seed" not in r for r in first), "the joiner drops the request's fields"


@pytest.mark.parametrize(("payload", "message"), [
    ({"prompt": 3}, "prompt must be a string"),
    ({"prompt": "the chef", "seed": -1}, "seed must be an integer"),
])
def test_generators_reject_malformed_requests(textgraph: ModuleType, payload: Payload,
                                              message: str) -> None:
    topology = load_topology(GRAPH)
    for name in ("bigram", "trigram"):
        model = topology.agent(name).model
        assert model is not None
        (error,) = load_runtime(model, topology.base_dir, name).infer([payload])
        assert isinstance(error, RecordError) and message in str(error)


def test_text_models_are_small_and_kept(textgraph: ModuleType) -> None:
    assert textgraph.train_all(textgraph.MODELS_DIR) == dict.fromkeys(textgraph.TRAINERS)
    for name in textgraph.TRAINERS:
        assert (textgraph.MODELS_DIR / name).stat().st_size < 1_000_000
