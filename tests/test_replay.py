"""Replay and diff on the real broker with the digits models: a second CNN version replayed
against the live one, and a shadow against its primary; the reports' numbers checked
against what is computed here, independently, from the topics and the model files."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from aiokafka.admin import AIOKafkaAdminClient
from fixtures import TOPOLOGIES, read_all, subscribe, trained

from streamcompose.codec import decode_payload
from streamcompose.kafka.ranges import read_range
from streamcompose.runtimes.torch_runtime import load_torchscript

pytestmark = pytest.mark.integration

REQUESTS = 90
FROM, LIMIT = 4, 70  # replay from offset 4 of each partition, 70 requests


@pytest.fixture(scope="module")
def cnn_v2(tmp_path_factory) -> Path:
    """A second CNN version: the digits CNN trained for 2 epochs from another seed."""
    train = trained("digits")
    path = tmp_path_factory.mktemp("models") / "digits_cnn_v2.pt"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train, "CNN_EPOCHS", 2)
        mp.setattr(train, "SEED", 1)
        train.train_cnn(train.load_split(), path)
    return path


def _digits(count: int) -> np.ndarray:
    return np.load(TOPOLOGIES / "models" / "digits_test.npz")["X"][:count]


def _publish(cli, tmp_path, name: str, pixels: np.ndarray) -> list[str]:
    path = tmp_path / "digits.jsonl"
    path.write_text("".join(json.dumps({"id": f"d{i}", "pixels": p.tolist()}) + "\n"
                            for i, p in enumerate(pixels)))
    cli("publish", name, "--file", str(path))
    return [f"d{i}" for i in range(len(pixels))]


def _labels(bootstrap: str, topic: str, agent: str) -> dict[str, np.ndarray]:
    """The probabilities ``agent`` wrote on ``topic``, by request id."""
    records = asyncio.run(read_range(bootstrap, [topic], None, None))
    return {r.key.decode(): np.asarray(decode_payload(r.value)["proba"], dtype=np.float64)
            for r in records if dict(r.headers)["sc-path"].decode().split(",")[-1] == agent}


def _candidate(path: Path, pixels: np.ndarray) -> np.ndarray:
    model = load_torchscript(path)
    with torch.inference_mode():
        x = torch.from_numpy((pixels / 16.0).astype(np.float32).reshape(-1, 1, 8, 8))
        return model(x).numpy().astype(np.float64)


def _check(report: dict, ids: list[str], live: dict[str, np.ndarray],
           cand: dict[str, np.ndarray]) -> None:
    """The report's numbers are those computed from ``live`` and ``cand``."""
    pairs = Counter((int(live[i].argmax()), int(cand[i].argmax())) for i in ids)
    agreed = sum(n for (a, b), n in pairs.items() if a == b)
    assert 0 < agreed < len(ids), "the two versions should disagree on some digits"
    assert (report["requests"], report["compared"], report["agreed"]) == (
        len(ids), len(ids), agreed)
    assert report["agreement"] == pytest.approx(agreed / len(ids))
    field = report["fields"]["proba"]
    assert field["kind"] == "proba"
    assert {(c["live"], c["candidate"]): c["count"] for c in field["confusion"]} == pairs
    assert {(c["live"], c["candidate"]): c["count"] for c in field["flips"]} == {
        k: n for k, n in pairs.items() if k[0] != k[1]}
    diffs = [np.abs(live[i] - cand[i]).max() for i in ids]
    assert field["abs_diff"]["max"] == pytest.approx(max(diffs), abs=1e-5)
    assert field["abs_diff"]["mean"] == pytest.approx(np.mean(diffs), abs=1e-5)
    assert report["outcomes"]["both"] == len(ids) and report["only_live"] == []
    assert all(report["latency_ms"][side]["p50"] >= 0 for side in ("live", "candidate"))
    flipped = {d["id"] for d in report["differences"]}
    assert flipped == {i for i in ids if live[i].argmax() != cand[i].argmax()}


def test_replay_a_second_cnn_against_the_live_one(cli, deploy, tmp_path, cnn_v2, bootstrap):
    m = deploy(TOPOLOGIES / "digits_cascade.yaml")
    pixels = _digits(REQUESTS)
    ids = _publish(cli, tmp_path, m["name"], pixels)
    subscribe(cli, m["name"], REQUESTS)
    out = tmp_path / "diff.jsonl"
    done = cli("replay", m["name"], "--agent", f"cnn={cnn_v2}", "--from", str(FROM),
               "--limit", str(LIMIT), "--json", "--out", str(out), "--no-progress")
    report = json.loads(done.stdout)
    # the requests asked for: from offset FROM of every partition, the LIMIT earliest
    got = asyncio.run(read_range(bootstrap, [f"{m['name']}.preprocess"], None, None))
    chosen = sorted((r for r in got if r.offset >= FROM),
                    key=lambda r: (r.timestamp, r.partition, r.offset))[:LIMIT]
    replayed = [r.key.decode() for r in chosen]
    live = _labels(bootstrap, f"{m['name']}.cnn", "cnn")
    cand = dict(zip(ids, _candidate(cnn_v2, pixels), strict=True))
    _check(report, replayed, live, cand)
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["id"] for d in written] == [d["id"] for d in report["differences"]]

    # the side deployment and its topics are gone; nothing reached the live path
    status = json.loads(cli("status", "--json", "--no-lag").stdout)
    assert [d["name"] for d in status] == [m["name"]]
    assert not [t for t in _topics(bootstrap) if t.startswith(f"{m['name']}-replay-")]
    assert len(read_all(cli, m["name"], quiet_s=2)) == REQUESTS


def _topics(bootstrap: str) -> list[str]:
    async def run() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return list(await admin.list_topics())
        finally:
            await admin.close()

    return asyncio.run(run())


STEPS = '''
import numpy as np

def preprocess(batch):
    return [{"x": (np.asarray(p["pixels"]) / 16).astype(np.float32).reshape(1, 8, 8)}
            for p in batch]
'''
SHADOW = '''
name: mirror
agents:
  preprocess:
    inputs: [$input]
    model: {runtime: python, entrypoint: "STEPS:preprocess"}
  mirror:
    inputs: [preprocess]
    shadow: {primary: cnn, shadows: [cnn2]}
  cnn:
    inputs: [mirror]
    model: {runtime: torch, path: "LIVE",
            options: {inputs: {x: {dtype: float32, shape: [1, 8, 8]}}, outputs: [proba]}}
  cnn2:
    inputs: [mirror]
    model: {runtime: torch, path: "CANDIDATE",
            options: {inputs: {x: {dtype: float32, shape: [1, 8, 8]}}, outputs: [proba]}}
'''


def test_shadow_report_against_the_primary(cli, deploy, write_topology, tmp_path, cnn_v2,
                                           bootstrap):
    text = SHADOW.replace("CANDIDATE", str(cnn_v2)).replace(
        "LIVE", str(TOPOLOGIES / "models" / "digits_cnn.pt"))
    m = deploy(write_topology(text, STEPS))
    pixels = _digits(REQUESTS)
    ids = _publish(cli, tmp_path, m["name"], pixels)
    subscribe(cli, m["name"], REQUESTS)
    shadow_topic = f"{m['name']}.shadow.cnn2"
    subscribe(cli, shadow_topic, REQUESTS)
    report = json.loads(cli("shadow-report", m["name"], "cnn2", "--json",
                            "--no-progress").stdout)
    assert (report["live"], report["candidate"]) == ("cnn", "cnn2")
    _check(report, ids, _labels(bootstrap, m["output"], "cnn"),
           _labels(bootstrap, shadow_topic, "cnn2"))
    bad = cli("shadow-report", m["name"], "cnn", check=False)
    assert bad.returncode == 1 and "not a shadow" in bad.stderr
