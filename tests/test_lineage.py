"""Lineage on the real broker: every result names each agent that handled it (version,
replica, micro-batch), a joiner merges its branches' lineage, `subscribe` and `Client`
show it, and `trace` reads a request's journey back from Kafka: input, results, join,
dead letter."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from fixtures import subscribe

from streamcompose import Client
from streamcompose.topology import load_topology
from streamcompose.topology.versions import agent_version

pytestmark = pytest.mark.integration

STEPS = '''
class Inc:
    inputs = ("x",)
    outputs = ("x",)

    def __call__(self, batch):
        return [{"x": p["x"] + 1} for p in batch]
'''

FAN = '''
name: fan
fields: [x]
partitions: 2
agents:
  pre:
    inputs: [$input]
    model: {runtime: python, entrypoint: "STEPS:Inc", version: "7"}
  a:
    inputs: [pre]
    model: {runtime: python, entrypoint: "STEPS:Inc"}
    batch: {max_size: 8, max_wait_ms: 20}
  b:
    inputs: [pre]
    model: {runtime: python, entrypoint: "STEPS:Inc"}
  j:
    inputs: [a, b]
    join: {strategy: merge}
'''

BATCH = re.compile(r"^0-\d+-\d+$")


def test_lineage_through_a_join_and_trace(cli: Callable[..., subprocess.CompletedProcess],
                                          write_topology: Callable[[str, str], Path],
                                          deploy: Callable[..., dict], bootstrap: str):
    file = write_topology(FAN, STEPS)
    name = deploy(file)["name"]
    steps_version = agent_version(load_topology(file), "a")

    async def run() -> list:
        async with Client(bootstrap) as client:
            await client.send_and_wait(name, {"x": "not a number"}, "bad")
            return [await client.infer(name, {"x": i}, request_id=f"ok{i}", timeout=60)
                    for i in range(3)]

    results = asyncio.run(run())
    for r in results:
        agents = [e["agent"] for e in r.lineage]
        assert agents[0] == "pre" and agents[-1] == "j" and sorted(agents[1:3]) == ["a", "b"]
        assert len(agents) == 4  # the branches' shared "pre" entry merged into one
        by_agent = {e["agent"]: e for e in r.lineage}
        assert by_agent["pre"]["version"] == "7"
        assert by_agent["a"]["version"] == by_agent["b"]["version"] == steps_version
        assert all(BATCH.match(e["batch"]) and e["replica"] == 0 and e["size"] >= 1
                   for e in r.lineage)
    shown = subscribe(cli, name, 3)
    assert {tuple(e["agent"] for e in line["lineage"])[-1] for line in shown} == {"j"}

    journey = json.loads(cli("trace", name, "ok1", "--json").stdout)
    hops = journey["hops"]
    assert hops[0]["kind"] == "input" and hops[-1]["kind"] == "join"
    assert sorted((h["kind"], h["agent"]) for h in hops[1:]) == [
        ("join", "j"), ("result", "a"), ("result", "b"), ("result", "pre")]
    assert len({h["partition"] for h in hops}) == 1
    assert hops[-1]["lineage"] == list(results[1].lineage)
    assert "x" in hops[0]["fields"] and hops[-1]["version"]

    bad = json.loads(cli("trace", name, "bad", "--json").stdout)["hops"]
    assert [(h["kind"], h["agent"]) for h in bad] == [("input", None), ("dead letter", "pre")]
    assert "TypeError" in bad[1]["detail"]
    table = cli("trace", name, "bad").stdout
    assert "dead letter" in table and f"{name}.dlq[" in table

    missing = cli("trace", name, "nobody", check=False)
    assert missing.returncode == 1 and "no record of request 'nobody'" in missing.stderr
