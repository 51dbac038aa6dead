"""Cost-aware and adaptive batching in a deployed agent (needs the broker)."""

from __future__ import annotations

import json

import pytest
from fixtures import subscribe

pytestmark = pytest.mark.integration

STEPS = '''
def sizes(batch):
    cost = sum(len(p["text"]) for p in batch)
    return [{"batch_n": len(batch), "batch_cost": cost} for _ in batch]

def cost(payload):
    if payload["text"] == "boom":
        raise ValueError("no cost for boom")
    return len(payload["text"])

sizes.inputs = ("text",)
'''

TOPOLOGY = '''
name: costly
fields: [text]
agents:
  size:
    inputs: [$input]
    model: {runtime: python, entrypoint: "STEPS:sizes"}
    batch: {max_size: 16, max_wait_ms: auto, max_cost: 20, cost: "STEPS:cost"}
'''


def test_batches_stay_within_their_cost_and_a_failing_cost_is_dead_lettered(
        cli, deploy, write_topology, tmp_path):
    m = deploy(write_topology(TOPOLOGY, STEPS))
    texts = ["a" * n for n in (3, 4, 5, 30, 2, 9, 9, 1, 12, 6)] * 3 + ["boom"]
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"id": f"t{i}", "text": t}) + "\n"
                              for i, t in enumerate(texts)))
    cli("publish", m["name"], "--file", str(events))
    results = subscribe(cli, m["name"], len(texts) - 1, timeout=60)
    assert sorted(r["id"] for r in results) == sorted(f"t{i}" for i in range(len(texts) - 1))
    # published at once, the records queue up together: batches form, cut by cost
    assert max(r["payload"]["batch_n"] for r in results) > 1
    for r in results:
        p = r["payload"]
        # a batch over max_cost only when one item alone costs more
        assert p["batch_cost"] <= 20 or p["batch_n"] == 1, p
    (letter,) = subscribe(cli, m["dlq"], 1, timeout=30)
    assert letter["id"] == f"t{len(texts) - 1}"
    assert "batch.cost" in letter["payload"]["error"]
    assert "no cost for boom" in letter["payload"]["error"]
