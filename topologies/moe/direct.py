"""The mixture of experts of ``moe.yaml`` computed directly, in-process, without Kafka.

The gate and the experts run with onnxruntime on the whole batch at once; the routing
and the combination are numpy, done exactly as the topology's router and joiner do
them, so that their results can be compared bit for bit (up to the models' own
arithmetic):

1. the gate's ``scores`` (one probability per expert, in :data:`EXPERTS` order) rank
   the experts by score, highest first, ties to the earlier expert;
2. the top ``k`` get the request, with weights = their scores divided by the sum of
   the chosen scores (summed in rank order, as ``choose_experts`` sums them);
3. the result is the weighted mean of the chosen experts' ``proba``, summed in
   :data:`EXPERTS` order (the joiner's ``inputs`` order) and divided by the sum of
   their weights (``gate_weighted``); the label is its argmax.

>>> chosen, weights = route(np.array([[0.1, 0.6, 0.3], [0.5, 0.0, 0.5]]), top_k=2)
>>> chosen.tolist(), weights.round(3).tolist()
([[False, True, True], [True, False, True]], [[0.0, 0.667, 0.333], [0.5, 0.0, 0.5]])
>>> probas = {e: np.eye(2)[[i % 2, i % 2]] for i, e in enumerate(EXPERTS)}
>>> mixture(weights, probas).round(3).tolist()
[[0.333, 0.667], [1.0, 0.0]]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnxruntime as ort

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
TEST_FILE = "moe_test.npz"
GATE_FILE = "moe_gate.onnx"
#: the experts in the router's ``experts`` order (= the joiner's ``inputs`` order)
EXPERTS = ("expert_a", "expert_b", "expert_c")
EXPERT_FILES = {expert: f"moe_{expert}.onnx" for expert in EXPERTS}
#: the payload field (and ONNX input) holding a sample's four features
INPUT = "features"
TOP_K = 2


@dataclass(frozen=True)
class TestSet:
    """The held-out samples: features float32 [N,4], labels and regions int64 [N]."""

    x: np.ndarray
    y: np.ndarray
    region: np.ndarray


class Mixture(NamedTuple):
    """What the mixture gives for a batch: which experts get each request (bool [N,E]),
    their gate weights (float64 [N,E], 0 for the others), the combined probabilities
    (float64 [N,2]) and the labels (int64 [N])."""

    chosen: np.ndarray
    weights: np.ndarray
    proba: np.ndarray
    labels: np.ndarray


def load_test(models_dir: Path = MODELS_DIR) -> TestSet:
    """The held-out split written by the training (``moe_test.npz``)."""
    with np.load(models_dir / TEST_FILE) as data:
        return TestSet(x=data["X"], y=data["y"], region=data["region"])


def onnx_output(path: Path, x: np.ndarray, output: str) -> np.ndarray:
    """One output of an ONNX model whose input ``features`` takes ``x`` (CPU provider)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (result,) = session.run([output], {INPUT: np.asarray(x, dtype=np.float32)})
    return result


def gate_scores(x: np.ndarray, models_dir: Path = MODELS_DIR) -> np.ndarray:
    """The gate's ``scores``, float32 [N,3]: each region's probability, in :data:`EXPERTS`
    order."""
    return onnx_output(models_dir / GATE_FILE, x, "scores")


def expert_probabilities(x: np.ndarray, models_dir: Path = MODELS_DIR
                         ) -> dict[str, np.ndarray]:
    """Each expert's ``proba``, float32 [N,2], keyed in :data:`EXPERTS` order."""
    return {e: onnx_output(models_dir / EXPERT_FILES[e], x, "proba") for e in EXPERTS}


def route(scores: np.ndarray, top_k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """Which experts get each request and with what weight: ``chosen`` bool [N,E], the
    ``top_k`` best-scored experts of each row (ties to the earlier expert), and
    ``weights`` float64 [N,E], their scores renormalised over them (0 elsewhere)."""
    scores = np.asarray(scores, dtype=np.float64)
    rows = np.arange(len(scores))
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    total = np.zeros(len(scores))
    for rank in range(top_k):
        total = total + scores[rows, ranked[:, rank]]
    chosen = np.zeros(scores.shape, dtype=bool)
    weights = np.zeros_like(scores)
    for rank in range(top_k):
        expert = ranked[:, rank]
        chosen[rows, expert] = True
        weights[rows, expert] = scores[rows, expert] / total
    return chosen, weights


def mixture(weights: np.ndarray, probas: Mapping[str, np.ndarray]) -> np.ndarray:
    """The gate-weighted mean of the experts' probabilities, float64 [N,2], summed in
    :data:`EXPERTS` order (an expert not chosen has weight 0 and adds exactly 0)."""
    total = np.zeros(np.shape(probas[EXPERTS[0]]), dtype=np.float64)
    weight_sum = np.zeros(len(weights))
    for e, expert in enumerate(EXPERTS):
        total = total + weights[:, e, None] * np.asarray(probas[expert], dtype=np.float64)
        weight_sum = weight_sum + weights[:, e]
    return total / weight_sum[:, None]


def moe(scores: np.ndarray, probas: Mapping[str, np.ndarray], top_k: int = TOP_K) -> Mixture:
    """The whole mixture from the gate's scores and the experts' probabilities."""
    chosen, weights = route(scores, top_k)
    proba = mixture(weights, probas)
    return Mixture(chosen=chosen, weights=weights, proba=proba, labels=proba.argmax(axis=1))


def expert_load(chosen: np.ndarray) -> dict[str, int]:
    """How many requests each expert gets, from the ``chosen`` mask [N,E]."""
    return {e: int(np.count_nonzero(chosen[:, i])) for i, e in enumerate(EXPERTS)}


def accuracy(labels: np.ndarray, truth: np.ndarray) -> float:
    """The share of ``labels`` equal to ``truth``."""
    return float(np.mean(np.asarray(labels) == np.asarray(truth)))
