"""The example topologies deployed on the real broker give what their models give
in-process: the digits cascade (torch) and the OCR cascade (PP-OCR via RapidOCR)."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from probe import worker

from streamcompose.client import Client
from streamcompose.runtimes.torch_runtime import load_torchscript

pytestmark = pytest.mark.integration
TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"


async def infer_all(bootstrap: str, target: str, payloads: list[dict], json: bool = False,
                    timeout: float = 120) -> list[dict]:
    """Publish every payload and wait for each result, in order."""
    async with Client(bootstrap) as client:
        if json:
            ids = [await client.send_and_wait(target, p, json=True) for p in payloads]
            wanted, got = set(ids), {}
            async for result in client.subscribe(target, from_beginning=True):
                got[result.id] = result.payload
                if wanted <= set(got):
                    return [got[i] for i in ids]
        results = await asyncio.gather(*(client.infer(target, p, timeout) for p in payloads))
    return [r.payload for r in results]


def check_digits_cascade(bootstrap: str, name: str, rtol: float) -> None:
    """120 held-out digits through a deployed digits cascade give the CNN's own labels
    and probabilities (on the CPU, in this process)."""
    split = np.load(TOPOLOGIES / "models" / "digits_test.npz")
    pixels, labels = split["X"][:120], split["y"][:120]
    results = asyncio.run(infer_all(bootstrap, name,
                                    [{"pixels": row.tolist()} for row in pixels]))
    cnn = load_torchscript(TOPOLOGIES / "models" / "digits_cnn.pt")
    with torch.inference_mode():
        direct = cnn(torch.from_numpy((pixels / 16).astype(np.float32).reshape(-1, 1, 8, 8)))
    direct = direct.numpy()
    assert [r["label"] for r in results] == direct.argmax(axis=1).tolist()
    np.testing.assert_allclose([r["proba"] for r in results], direct, rtol=rtol, atol=rtol / 10)
    assert all("x" not in r for r in results), "postprocess drops the model input"
    assert np.mean(np.array([r["label"] for r in results]) == labels) > 0.9


def test_digits_cascade_through_kafka(deploy, bootstrap):
    check_digits_cascade(bootstrap, deploy(TOPOLOGIES / "digits_cascade.yaml")["name"], 1e-5)


def test_digits_cluster_runs_its_cnn_on_the_gpu_or_falls_back(deploy, cli, bootstrap):
    """``digits_cluster.yaml`` asks for ``device: cuda`` with ``fallback: cpu``: on a
    machine with CUDA the CNN's worker holds GPU memory (as ``nvidia-smi`` lists it),
    elsewhere it runs on the CPU; the answers are the CNN's either way (GPU kernels
    round differently, hence the looser tolerance)."""
    name = deploy(TOPOLOGIES / "digits_cluster.yaml")["name"]
    check_digits_cascade(bootstrap, name, 1e-4)
    if torch.cuda.is_available():
        pid = worker(cli, name, "cnn")["pid"]
        apps = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                              capture_output=True, text=True, check=True).stdout.split()
        assert str(pid) in apps, f"cnn worker {pid} is not among the GPU's processes {apps}"


def test_ocr_cascade_matches_rapidocr(deploy, bootstrap, tmp_path):
    from rapidocr_onnxruntime import RapidOCR

    sys.path.insert(0, str(TOPOLOGIES))
    from ocr.samples import make_samples

    images = make_samples(tmp_path, 4)
    m = deploy(TOPOLOGIES / "ocr_cascade.yaml")
    payloads = [{"image": images[0].read_bytes()}, {"image": cv2.imread(str(images[1]))},
                {"image": images[2].read_bytes()}, {"image": images[3].read_bytes()}]
    results = asyncio.run(infer_all(bootstrap, m["name"], payloads))
    results += asyncio.run(infer_all(
        bootstrap, m["name"], [{"image": base64.b64encode(images[0].read_bytes()).decode()}],
        json=True))
    engine = RapidOCR()
    for path, result in zip([*images, images[0]], results, strict=True):
        lines = engine(str(path))[0] or []
        assert result["texts"] == [line[1] for line in lines], path.name
        assert set(result) >= {"texts", "boxes", "scores"} and "crops" not in result
        assert "image" not in result
        np.testing.assert_allclose(np.array(result["boxes"], dtype=float).reshape(-1, 4, 2),
                                   np.array([line[0] for line in lines], dtype=float)
                                   .reshape(-1, 4, 2), atol=3)
        np.testing.assert_allclose(result["scores"], [line[2] for line in lines], atol=1e-4)


def test_mixture_of_experts_through_kafka_equals_direct_routing(deploy, bootstrap):
    sys.path.insert(0, str(TOPOLOGIES))
    from moe import direct

    test = direct.load_test()
    x, truth = test.x[:300], test.y[:300]
    m = deploy(TOPOLOGIES / "moe.yaml")
    results = asyncio.run(infer_all(bootstrap, m["name"],
                                    [{direct.INPUT: row} for row in x]))
    expected = direct.moe(direct.gate_scores(x), direct.expert_probabilities(x))
    assert [r["label"] for r in results] == expected.labels.tolist()
    np.testing.assert_allclose([r["proba"] for r in results], expected.proba, atol=2e-6)
    for result, weights in zip(results, expected.weights, strict=True):
        routed = {e: w for e, w in zip(direct.EXPERTS, weights, strict=True) if w > 0}
        assert result["gate_weights"].keys() == routed.keys()
        # the gate runs in float32 on batches whose size differs run to run
        np.testing.assert_allclose(list(result["gate_weights"].values()),
                                   [routed[e] for e in result["gate_weights"]], atol=2e-6)
    assert direct.accuracy(expected.labels, truth) > 0.95


def test_inference_graph_through_kafka_equals_the_local_harness(deploy, bootstrap):
    from streamcompose.testing import LocalRunner
    from streamcompose.topology import load_topology

    file = TOPOLOGIES / "inference_graph.yaml"
    prompts = [{"prompt": "the chef", "seed": 3}, {"prompt": "heavy rain"},
               {"prompt": "the striker scored"}]
    m = deploy(file)
    streamed = asyncio.run(infer_all(bootstrap, m["name"], prompts))
    local = LocalRunner(load_topology(file)).run([(str(i), p) for i, p in enumerate(prompts)])
    expected = {r.id: r.payload for r in local.results}
    for i, result in enumerate(streamed):
        assert set(result) == {"bigram_topic", "trigram_topic"}
        for branch in result.values():
            assert branch["text"].startswith(prompts[i]["prompt"].split()[0])
            assert branch["label"] in ("sports", "weather", "cooking")
        assert result == json_like(expected[str(i)])


def json_like(payload: dict) -> dict:
    """A payload as a JSON consumer sees it."""
    from streamcompose.codec import to_jsonable

    return to_jsonable(payload)


def test_digits_ensemble_through_kafka_equals_the_direct_soft_vote(deploy, bootstrap):
    sys.path.insert(0, str(TOPOLOGIES))
    from digits import direct

    split = np.load(TOPOLOGIES / "models" / "digits_test.npz")
    pixels, truth = split["X"], split["y"]
    m = deploy(TOPOLOGIES / "digits_ensemble.yaml")
    results = asyncio.run(infer_all(bootstrap, m["name"],
                                    [{"pixels": row.tolist()} for row in pixels]))
    probas = direct.member_probabilities(pixels)
    expected = direct.soft_vote(probas, direct.trained_weights())
    labels = [r["label"] for r in results]
    assert labels == expected.argmax(axis=1).tolist()
    assert all("missing" not in r for r in results)
    best = max(direct.accuracy(p.argmax(axis=1), truth) for p in probas.values())
    assert direct.accuracy(np.array(labels), truth) >= best
