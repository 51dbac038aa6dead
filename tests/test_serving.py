"""Serving quality on the real broker: requests past their deadline never reach the
model, priority lanes overtake a backlog without starving it, and repeated requests are
answered from the cache."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamcompose.client import Client, Result
from streamcompose.serving.deadline import DEADLINE

pytestmark = pytest.mark.integration

STEPS = '''
import json
import time
from pathlib import Path

CALLS = Path(__file__).with_suffix(".calls")


def _record(batch):
    with CALLS.open("a") as f:
        for p in batch:
            f.write(json.dumps({"n": p["n"], "at": time.time() * 1000}) + "\\n")


def slow(batch):
    _record(batch)
    time.sleep(0.25 * len(batch))
    return [{"y": p["n"] * 2} for p in batch]


def tag(batch):
    return [{"tagged": True} for _ in batch]


def steady(batch):
    time.sleep(0.004 * len(batch))
    return [{"y": p["n"]} for p in batch]


def square(batch):
    _record(batch)
    return [{"y": p["n"] ** 2} for p in batch]
'''


def calls(path: Path) -> list[dict]:
    file = path.parent / f"steps_{path.parent.name}.calls"
    return [json.loads(line) for line in file.read_text().splitlines()] if file.exists() else []


async def collect(client: Client, topics: list[str], count: int, timeout: float
                  ) -> list[Result]:
    """Every record of the topics from the beginning, until ``count`` or ``timeout``."""
    found: list[Result] = []

    async def read() -> None:
        async for result in client.read(topics, from_beginning=True):
            found.append(result)
            if len(found) >= count:
                return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(), timeout)
    return found


def metric(cli, name: str, agent: str, series: str, **labels: str) -> float:
    """A series of an agent's (first) worker, read from its metrics port."""
    status = json.loads(cli("status", name, "--json").stdout)
    status = status[0] if isinstance(status, list) else status
    [port] = [a["workers"][0]["metrics_port"] for a in status["agents"] if a["name"] == agent]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                timeout=5) as response:
        text = response.read().decode()
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples
               if s.name == series and all(s.labels.get(k) == v for k, v in labels.items()))


DEADLINES = '''
name: deadlines
partitions: 1
agents:
  slow:
    inputs: [$input]
    model: {runtime: python, entrypoint: "STEPS:slow"}
  after:
    inputs: [slow]
    model: {runtime: python, entrypoint: "STEPS:tag"}
'''


def test_expired_requests_never_reach_the_model(cli, deploy, write_topology, bootstrap):
    path = write_topology(DEADLINES, STEPS)
    m = deploy(path)
    backlog = 24

    async def run() -> tuple[list[Result], Result, float]:
        async with Client(bootstrap) as client:
            await client.publish(m["name"], [{"n": i} for i in range(backlog)],
                                 ids=[f"r{i}" for i in range(backlog)], deadline_ms=2500)
            latest_deadline = time.time() * 1000 + 2500
            found = await collect(client, [m["output"], m["dlq"]], backlog, 60)
            fresh = await client.infer(m["name"], {"n": 100}, timeout=20)
            return found, fresh, latest_deadline

    # 24 requests of 0.25 s each: about 10 are served within their 2.5 s
    found, fresh, latest_deadline = asyncio.run(run())
    assert sorted(r.id for r in found) == sorted(f"r{i}" for i in range(backlog))
    answered = {r.id: r for r in found if r.topic == m["output"]}
    letters = {r.id: r.payload for r in found if r.topic == m["dlq"]}
    assert len(letters) >= backlog // 3, (len(answered), len(letters))
    for letter in letters.values():
        assert letter["error_type"] == "expired" and letter["agent"] in ("slow", "after")
        assert f"agent {letter['agent']!r}" in letter["error"]
    model_calls = calls(path)
    called = {c["n"] for c in model_calls}
    expired_at_slow = {int(rid[1:]) for rid, letter in letters.items()
                       if letter["agent"] == "slow"}
    assert expired_at_slow and not expired_at_slow & called
    for result in answered.values():  # the deadline travels downstream
        assert result.payload["tagged"] and int(result.headers[DEADLINE]) <= latest_deadline
    for call in model_calls:
        if call["n"] < backlog:  # every model call was made before the deadline
            assert call["at"] < latest_deadline
    assert fresh.payload == {"n": 100, "y": 200, "tagged": True}
    assert len(model_calls) == len(called) == backlog - len(expired_at_slow) + 1
    assert metric(cli, m["name"], "slow", "streamcompose_expired_total") == len(expired_at_slow)
    assert metric(cli, m["name"], "slow", "streamcompose_errors_total",
                  reason="expired") == len(expired_at_slow)


LANES = '''
name: lanes
priorities: [high, normal, low]
agents:
  work:
    inputs: [$input]
    model: {runtime: python, entrypoint: "STEPS:steady"}
    batch: {max_size: 8, max_wait_ms: 2}
'''


def test_high_priority_overtakes_a_low_backlog_which_still_progresses(
        cli, deploy, write_topology, tmp_path, bootstrap):
    m = deploy(write_topology(LANES, STEPS))
    assert m["lanes"] == {"high": f"{m['input']}.high", "normal": m["input"],
                          "low": f"{m['input']}.low"}

    async def run() -> list[Result]:
        async with Client(bootstrap) as client:
            await client.publish(m["name"], [{"n": i} for i in range(2000)],
                                 ids=[f"low{i}" for i in range(2000)], priority="low")
            seen = await collect(client, [m["output"]], 20, 60)  # the backlog is being served
            assert len(seen) == 20
            await client.publish(m["name"], [{"n": i, "priority": "high"} for i in range(50)],
                                 ids=[f"high{i}" for i in range(50)])
            return await collect(client, [m["output"]], 2050, 90)

    results = sorted(asyncio.run(run()), key=lambda r: (r.timestamp_ms, r.offset))
    assert len(results) == 2050 and len({r.id for r in results}) == 2050
    last_high = max(i for i, r in enumerate(results) if r.id.startswith("high"))
    low_before = sum(1 for r in results[:last_high] if r.id.startswith("low"))
    assert low_before < 1000, f"{low_before} low requests were answered before the last high"
    assert {r.headers.get("sc-priority") for r in results} == {b"low", b"high"}
    assert results[-1].id.startswith("low")  # the low lane went on to the end
    publish_routes_by_priority_and_sets_deadlines(cli, m, tmp_path, bootstrap)


CACHED = '''
name: cached
agents:
  square:
    inputs: [$input]
    model: {runtime: python, entrypoint: "STEPS:square"}
    cache: {key: [n], ttl_s: 60, max_entries: 100}
'''


def test_a_repeated_request_is_answered_from_the_cache(cli, deploy, write_topology, bootstrap):
    path = write_topology(CACHED, STEPS)
    m = deploy(path)

    async def run() -> list[Result]:
        async with Client(bootstrap) as client:
            first = await client.infer(m["name"], {"n": 7, "note": "a"}, timeout=20)
            second = await client.infer(m["name"], {"n": 7, "note": "b"}, timeout=20)
            other = await client.infer(m["name"], {"n": 8}, timeout=20)
            return [first, second, other]

    first, second, other = asyncio.run(run())
    assert first.payload == {"n": 7, "note": "a", "y": 49}
    assert second.payload == {"n": 7, "note": "b", "y": 49}
    assert "sc-cache" not in first.headers and second.headers["sc-cache"] == b"hit"
    assert other.payload["y"] == 64 and "sc-cache" not in other.headers
    assert [e.get("cached", False) for e in first.lineage] == [False]
    assert [(e["agent"], e.get("cached")) for e in second.lineage] == [("square", True)]
    assert [c["n"] for c in calls(path)] == [7, 8]
    hits = metric(cli, m["name"], "square", "streamcompose_cache_requests_total", result="hit")
    misses = metric(cli, m["name"], "square", "streamcompose_cache_requests_total",
                    result="miss")
    assert (hits, misses) == (1, 2)


def publish_routes_by_priority_and_sets_deadlines(cli, m, tmp_path, bootstrap):
    """``streamcompose publish``: a line's priority or --priority picks the lane topic,
    --deadline-ms the deadline; an unknown priority is a usage error."""
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"id": "h", "n": 1, "priority": 9}) + "\n"
                      + json.dumps({"id": "n", "n": 2}) + "\n")
    before = time.time() * 1000
    cli("publish", m["name"], "--file", str(events), "--deadline-ms", "60000")
    cli("publish", m["name"], "--priority", "1", input=json.dumps({"id": "l", "n": 3}))
    bad = cli("publish", m["name"], "--priority", "urgent", input="{}\n", check=False)
    assert bad.returncode == 2 and "lanes of" in bad.stderr

    async def run() -> list[Result]:
        async with Client(bootstrap) as client:
            return await collect(client, list(m["lanes"].values()), 2053, 30)

    by_id = {r.id: r for r in asyncio.run(run())}
    assert [(by_id[i].topic, by_id[i].headers["sc-priority"]) for i in "hnl"] == [
        (m["lanes"]["high"], b"high"), (m["input"], b"normal"), (m["lanes"]["low"], b"low")]
    assert before + 60000 <= int(by_id["n"].headers[DEADLINE]) <= time.time() * 1000 + 60000
    assert DEADLINE not in by_id["l"].headers


SHARED = '''
name: shared
partitions: 2
agents:
  square:
    inputs: [$input]
    model: {runtime: python, entrypoint: "STEPS:square"}
    cache: {key: [n], shared: true}
    replicas: 2
'''


def ids_on_partitions(count: int) -> list[str]:
    """Request ids that the client's producer puts on partitions 0 and 1 of a topic."""
    from aiokafka.partitioner import DefaultPartitioner
    found: dict[int, str] = {}
    for i in range(1000):
        found.setdefault(DefaultPartitioner()(f"q{i}".encode(), [0, 1], [0, 1]), f"q{i}")
    return [found[p % 2] for p in range(count)]


def test_replicas_and_restarted_workers_share_the_cache(cli, deploy, write_topology,
                                                        bootstrap):
    path = write_topology(SHARED, STEPS)
    m = deploy(path)
    first_id, second_id = ids_on_partitions(2)

    async def ask(request_id: str, note: str) -> Result:
        async with Client(bootstrap) as client:
            return await client.infer(m["name"], {"n": 5, "note": note}, timeout=20,
                                      request_id=request_id)

    first = asyncio.run(ask(first_id, "a"))
    time.sleep(2.5)  # the other replica reads the answer from the cache topic
    second = asyncio.run(ask(second_id, "b"))
    assert first.partition != second.partition  # answered by the two replicas
    assert second.payload == {"n": 5, "note": "b", "y": 25}
    assert second.headers["sc-cache"] == b"hit" and len(calls(path)) == 1
    cli("stop", m["name"])
    deploy(path, m["name"])  # new workers load the cache topic before consuming
    third = asyncio.run(ask("again", "c"))
    assert third.payload["y"] == 25 and third.headers["sc-cache"] == b"hit"
    assert len(calls(path)) == 1
