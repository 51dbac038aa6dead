"""Unit tests of the digits models and of the digits cascade run in-process (no broker).

The models are trained into ``topologies/models`` when they are missing there; the
cascade's three agents are then run through their runtimes in topological order, each
on micro-batches of its configured size, their results merged into the payloads as the
agent workers do.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from streamcompose.runtimes import RecordError, Runtime, load_runtime
from streamcompose.runtimes.torch_runtime import load_torchscript
from streamcompose.topology import Topology, load_topology

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
CASCADE = TOPOLOGIES / "digits_cascade.yaml"
SAMPLES = 50

# The torch runtime loads TorchScript, which torch deprecates with a FutureWarning.


@pytest.fixture(scope="module")
def train() -> ModuleType:
    """The training module ``topologies/digits/train.py``, imported as the runtimes import
    the topology's steps: with the topology's folder on the import path."""
    if str(TOPOLOGIES) not in sys.path:
        sys.path.insert(0, str(TOPOLOGIES))
    return importlib.import_module("digits.train")


@pytest.fixture(scope="module")
def models(train: ModuleType) -> Path:
    """The models folder, with the models trained into it where missing."""
    train.train_all(train.MODELS_DIR)
    return train.MODELS_DIR


@pytest.fixture(scope="module")
def topology(models: Path) -> Topology:
    return load_topology(CASCADE)


@pytest.fixture(scope="module")
def runtimes(topology: Topology) -> dict[str, Runtime]:
    loaded = {}
    for agent in topology.agents:
        assert agent.model is not None
        loaded[agent.name] = load_runtime(agent.model, topology.base_dir, agent.name)
        loaded[agent.name].warmup()
    return loaded


@pytest.fixture(scope="module")
def held_out(models: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first held-out digits: raw pixels (0..16) [SAMPLES,64] and labels."""
    with np.load(models / "digits_test.npz") as data:
        return data["X"][:SAMPLES], data["y"][:SAMPLES]


def run_cascade(topology: Topology, runtimes: dict[str, Runtime],
                payloads: list[dict[str, Any]]) -> list[dict[str, Any] | RecordError]:
    """Each payload's final result, or the RecordError of the agent that rejected it."""
    results: list[dict[str, Any] | RecordError] = list(payloads)
    for name in topology.order():
        size = topology.agent(name).batch.max_size
        live = [(i, r) for i, r in enumerate(results) if isinstance(r, dict)]
        for start in range(0, len(live), size):
            chunk = live[start:start + size]
            outputs = runtimes[name].infer([payload for _, payload in chunk])
            for (i, payload), out in zip(chunk, outputs, strict=True):
                results[i] = out if isinstance(out, RecordError) else {**payload, **out}
    return results


def test_topology_shape(topology: Topology, models: Path) -> None:
    assert topology.name == "digits"
    assert topology.fields == ("pixels",)
    assert topology.order() == ("preprocess", "cnn", "postprocess")
    cnn = topology.agent("cnn").model
    assert cnn is not None and cnn.path == models / "digits_cnn.pt"
    assert topology.agent("cnn").batch.max_size == 32


def test_cascade_labels_match_the_cnn(topology: Topology, runtimes: dict[str, Runtime],
                                      held_out: tuple[np.ndarray, np.ndarray],
                                      models: Path) -> None:
    pixels, labels = held_out
    payloads = [{"pixels": row.tolist()} for row in pixels]
    results = run_cascade(topology, runtimes, payloads)
    done = [r for r in results if isinstance(r, dict)]
    assert len(done) == SAMPLES, results

    for r in done:
        assert set(r) == {"pixels", "x", "proba", "label"}
        assert isinstance(r["label"], int)
        assert isinstance(r["proba"], list) and len(r["proba"]) == 10
    got = np.array([r["label"] for r in done])
    got_proba = np.array([r["proba"] for r in done])

    cnn = load_torchscript(models / "digits_cnn.pt")
    with torch.inference_mode():
        direct = cnn(torch.from_numpy((pixels / 16).astype(np.float32).reshape(-1, 1, 8, 8)))
    np.testing.assert_array_equal(got, direct.argmax(dim=1).numpy())
    np.testing.assert_allclose(got_proba, direct.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_proba.sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean(got == labels) > 0.9


@pytest.mark.parametrize(("pixels", "message"), [
    ([0.0] * 63, "64 values"),
    ([[0.0] * 8] * 7, "64 values"),
    ([0.0] * 63 + [float("nan")], "finite"),
    ([0.0] * 63 + [17.0], "0..16"),
    ([0.0] * 63 + [-1.0], "0..16"),
    (["a"] * 64, "64 numbers"),
])
def test_malformed_pixels_fail_alone(topology: Topology, runtimes: dict[str, Runtime],
                                     held_out: tuple[np.ndarray, np.ndarray],
                                     pixels: Any, message: str) -> None:
    good = held_out[0][:4]
    payloads = [{"pixels": good[0]}, {"pixels": good[1].tolist()}, {"pixels": pixels},
                {"pixels": good[2].reshape(8, 8)}, {"pixels": good[3].tolist()}]
    results = run_cascade(topology, runtimes, payloads)

    error = results[2]
    assert isinstance(error, RecordError)
    assert error.agent == "preprocess"
    assert "ValueError" in str(error) and message in str(error)
    for i in (0, 1, 3, 4):
        result = results[i]
        assert isinstance(result, dict) and result["label"] in range(10)


def test_training_keeps_existing_models(train: ModuleType, models: Path) -> None:
    assert train.train_all(models) == dict.fromkeys(train.TRAINERS)
