"""A python-step cascade deployed through the CLI on the real broker: results, request
ids, batching, dead letters, JSON output, supervision and at-least-once delivery."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import msgpack
import pytest
from aiokafka import AIOKafkaProducer
from fixtures import subscribe

from streamcompose.client import Client

pytestmark = pytest.mark.integration

STEPS = '''
import time

def inc(batch):
    out = []
    for p in batch:
        if p["x"] == -13:
            raise ValueError("unlucky -13")
        out.append({"x": p["x"] + 1, "batch": len(batch)})
    return out

inc.inputs = ("x",)
inc.outputs = ("x", "batch")

def slow_double(batch):
    time.sleep(0.02)
    return [{"x": p["x"] * 2, "batch": len(batch)} for p in batch]

slow_double.inputs = ("x",)
slow_double.outputs = ("x", "batch")
'''

CASCADE = '''
name: cascade
fields: [x]
output_format: OUTPUT_FORMAT
agents:
  inc:
    inputs: [$input]
    model: {runtime: python, entrypoint: "STEPS:inc"}
    batch: {max_size: 8, max_wait_ms: 5}
  double:
    inputs: [inc]
    model: {runtime: python, entrypoint: "STEPS:slow_double"}
    batch: {max_size: 32, max_wait_ms: 50}
    replicas: REPLICAS
'''


def cascade(write_topology, output_format: str = "msgpack", replicas: int = 1):
    text = CASCADE.replace("OUTPUT_FORMAT", output_format).replace("REPLICAS", str(replicas))
    return write_topology(text, STEPS)


def test_results_ids_batching_and_status(cli, deploy, write_topology, tmp_path):
    m = deploy(cascade(write_topology))
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"id": f"r{i}", "x": i}) + "\n" for i in range(200)))
    ids = cli("publish", m["name"], "--file", str(events)).stdout.split()
    assert ids == [f"r{i}" for i in range(200)]

    results = {r["id"]: r for r in subscribe(cli, m["name"], 200)}
    assert set(results) == set(ids)
    for i in range(200):
        r = results[f"r{i}"]
        assert r["payload"]["x"] == (i + 1) * 2
        assert r["path"] == ["inc", "double"]
        assert r["topic"] == m["output"]
    assert max(r["payload"]["batch"] for r in results.values()) > 1, "no micro-batch formed"

    status = json.loads(cli("status", m["name"], "--json").stdout)
    assert [a["name"] for a in status["agents"]] == ["inc", "double"]
    for agent in status["agents"]:
        assert agent["lag"] == 0
        assert all(w["alive"] and w["status"] == "running" for w in agent["workers"])


def test_dead_letters_never_stop_the_agent(cli, deploy, write_topology, bootstrap):
    m = deploy(cascade(write_topology))

    async def produce() -> None:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await p.start()
        await p.send_and_wait(m["input"], b"\xc1not msgpack", key=b"garbage")
        await p.send_and_wait(m["input"], msgpack.packb({"y": 1}), key=b"no-field")
        await p.send_and_wait(m["input"], msgpack.packb({"x": -13}), key=b"raises")
        await p.send_and_wait(m["input"], b'{"x": 40}', key=b"json-in")
        await p.send_and_wait(m["input"], msgpack.packb({"x": 1}), key=None)
        await p.stop()

    asyncio.run(produce())
    letters = {r["id"]: r["payload"] for r in subscribe(cli, m["dlq"], 3)}
    assert set(letters) == {"garbage", "no-field", "raises"}
    assert letters["garbage"]["error_type"] == "CodecError"
    assert "msgpack" in letters["garbage"]["error"]
    assert "missing field" in letters["no-field"]["error"] and "x" in letters["no-field"]["error"]
    assert letters["raises"]["error"] == "ValueError: unlucky -13"
    for letter in letters.values():
        assert letter["agent"] == "inc" and letter["topic"] == m["input"]
        assert isinstance(letter["offset"], int)
    assert letters["garbage"]["original"]  # base64 of the original bytes in JSON output

    results = subscribe(cli, m["name"], 2)
    by_x = {r["payload"]["x"]: r for r in results}
    assert set(by_x) == {82, 4}
    assert len(by_x[4]["id"]) == 32, "a keyless request gets an id at the first agent"


def test_json_output_and_infer(cli, deploy, write_topology, bootstrap):
    m = deploy(cascade(write_topology, output_format="json"))
    reply = json.loads(cli("infer", m["name"], "--data", '{"x": 20}').stdout)
    assert reply["payload"]["x"] == 42

    async def raw() -> bytes:
        async with Client(bootstrap) as client:
            async for result in client.subscribe(m["output"], from_beginning=True):
                return result.payload

    assert asyncio.run(asyncio.wait_for(raw(), 30)) == {"x": 42, "batch": 1}
    failed = cli("infer", m["name"], "--data", '{"x": -13}', check=False)
    assert failed.returncode == 1 and "unlucky -13" in failed.stderr


def test_killed_worker_restarts_without_losing_requests(cli, deploy, write_topology, tmp_path):
    m = deploy(cascade(write_topology, replicas=2))
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"id": f"k{i}", "x": i}) + "\n" for i in range(300)))
    cli("publish", m["name"], "--file", str(events))
    status = json.loads(cli("status", m["name"], "--json").stdout)
    victim = status["agents"][1]["workers"][0]["pid"]
    os.kill(victim, signal.SIGKILL)

    results = subscribe(cli, m["name"], 300, timeout=90)
    assert {r["id"] for r in results} == {f"k{i}" for i in range(300)}
    assert all(r["payload"]["x"] == (int(r["id"][1:]) + 1) * 2 for r in results)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = json.loads(cli("status", m["name"], "--json", check=False).stdout)
        workers = status["agents"][1]["workers"]
        if workers[0]["restarts"] >= 1 and all(w["alive"] for w in workers):
            break
        time.sleep(0.5)
    assert workers[0]["restarts"] >= 1 and workers[0]["pid"] != victim


def test_stop_drains_and_redeploy_resumes(cli, deploy, write_topology, tmp_path, unique):
    file = cascade(write_topology)
    name = f"{unique}-drain"
    m = deploy(file, name)
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"id": f"d{i}", "x": i}) + "\n" for i in range(400)))
    cli("publish", name, "--file", str(events))
    cli("stop", name)
    deploy(file, name)
    results = subscribe(cli, m["output"], 400, timeout=90)
    assert {r["id"] for r in results} == {f"d{i}" for i in range(400)}
