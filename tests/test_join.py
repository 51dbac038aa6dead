"""Joiners on the real broker: every strategy and mode, timeouts, duplicates, a joiner
killed mid-stream, two joiner replicas, and a backlog that one branch drains slowly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections import Counter

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from fixtures import read_all, subscribe
from probe import worker

from streamcompose.codec import encode_payload
from streamcompose.codec.record import Trace

pytestmark = pytest.mark.integration

STEPS = '''
import numpy as np

BASE = {"a": [0.6, 0.3, 0.1], "b": [0.2, 0.5, 0.3], "c": [0.1, 0.2, 0.7]}

def _branch(name, batch, factor):
    out = []
    for p in batch:
        if name == "c" and p["x"] % 4 == 3:
            raise ValueError("c fails on x % 4 == 3")
        proba = np.roll(np.array(BASE[name], dtype=np.float32), p["x"] % 3)
        out.append({"proba": proba, "label": int(proba.argmax()), "y": float(p["x"] * factor)})
    return out

def a(batch):
    return _branch("a", batch, 1.0)

def b(batch):
    return _branch("b", batch, 2.0)

def c(batch):
    return _branch("c", batch, 4.0)

def slow(batch):
    import time
    time.sleep(0.002 * len(batch))
    return _branch("b", batch, 2.0)

def meta(batch):
    return [{"label": int(np.argmax(np.asarray(p["features"]).reshape(3, 3).sum(axis=0))),
             "width": len(p["features"])} for p in batch]

def count(branches, spec):
    return {"answered": sorted(branches), "n": len(branches)}
'''

HEAD = '''
name: join
fields: [x]
partitions: 2
agents:
  a: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:a"}}
  b: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:b"}}
  c: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:c"}}
'''

STRATEGIES = HEAD + '''
  soft: {inputs: [a, b, c], join: {strategy: soft_vote, weights: {a: 1, b: 2, c: 1},
         timeout_ms: 1500}}
  major: {inputs: [a, b, c], join: {strategy: majority_vote, field: label, timeout_ms: 1500}}
  wavg: {inputs: [a, b, c], join: {strategy: weighted_average, field: y,
         weights: {a: 1, b: 1, c: 2}, timeout_ms: 1500}}
  maxc: {inputs: [a, b, c], join: {strategy: max_confidence, timeout_ms: 1500}}
  ent: {inputs: [a, b, c], join: {strategy: entropy_weighted, timeout_ms: 1500,
        keep_branches: true}}
  merged: {inputs: [a, b], join: {strategy: merge, timeout_ms: 1500}}
  py: {inputs: [a, b, c], join: {strategy: python, entrypoint: "STEPS:count",
       timeout_ms: 1500}}
  stack: {inputs: [a, b, c], join: {strategy: stacking, timeout_ms: 1500, on_timeout: dlq,
          model: {runtime: python, entrypoint: "STEPS:meta"}}}
'''

MODES = HEAD + '''
  every: {inputs: [a, b, c], join: {strategy: soft_vote, timeout_ms: 1500}}
  strict: {inputs: [a, b, c], join: {strategy: soft_vote, timeout_ms: 1500, on_timeout: dlq}}
  first: {inputs: [a, b, c], join: {strategy: merge, mode: any, timeout_ms: 1500}}
  two: {inputs: [a, b, c], join: {strategy: merge, mode: {quorum: 2}, timeout_ms: 1500}}
'''

BASE = {"a": [0.6, 0.3, 0.1], "b": [0.2, 0.5, 0.3], "c": [0.1, 0.2, 0.7]}


def proba(branch: str, x: int) -> np.ndarray:
    return np.roll(np.array(BASE[branch], dtype=np.float32), x % 3).astype(np.float64)


def publish(cli, tmp_path, target: str, xs: list[int], prefix: str = "r") -> None:
    events = tmp_path / f"{prefix}.jsonl"
    events.write_text("".join(json.dumps({"id": f"{prefix}{x}", "x": x}) + "\n" for x in xs))
    cli("publish", target, "--file", str(events))


def by_joiner(results: list[dict]) -> dict[str, dict[int, dict]]:
    out: dict[str, dict[int, dict]] = {}
    for r in results:
        out.setdefault(r["path"][-1], {})[int(r["id"][1:])] = r["payload"]
    return out


def test_every_strategy(cli, deploy, write_topology, tmp_path):
    m = deploy(write_topology(STRATEGIES, STEPS))
    xs = list(range(12))
    publish(cli, tmp_path, m["name"], xs)
    complete = [x for x in xs if x % 4 != 3]
    results = by_joiner(subscribe(cli, m["name"], 7 * len(xs) + len(complete), timeout=60))

    for x in xs:
        answered = ["a", "b", "c"] if x in complete else ["a", "b"]
        weights = {"a": 1, "b": 2, "c": 1}
        soft = sum(weights[n] * proba(n, x) for n in answered) / sum(weights[n] for n in answered)
        np.testing.assert_allclose(results["soft"][x]["proba"], soft)
        assert results["soft"][x]["label"] == int(soft.argmax())
        assert results["soft"][x].get("missing", []) == [n for n in "abc" if n not in answered]

        labels = [int(proba(n, x).argmax()) for n in answered]
        votes = Counter(labels)
        top = max(votes.values())
        tied = [lbl for lbl in dict.fromkeys(labels) if votes[lbl] == top]
        summed = sum(proba(n, x) for n in answered)
        expected = max(tied, key=lambda lbl: (summed[lbl], -tied.index(lbl)))
        assert results["major"][x]["label"] == expected

        ys = {"a": x * 1.0, "b": x * 2.0, "c": x * 4.0}
        wavg_w = {"a": 1, "b": 1, "c": 2}
        assert results["wavg"][x]["y"] == pytest.approx(
            sum(wavg_w[n] * ys[n] for n in answered) / sum(wavg_w[n] for n in answered))

        conf = [proba(n, x).max() for n in answered]
        assert results["maxc"][x]["chosen"] == answered[int(np.argmax(conf))]

        entropy = [-(proba(n, x) * np.log(proba(n, x))).sum() for n in answered]
        w = [1 / (h + 1e-6) for h in entropy]
        ent = sum(wi * proba(n, x) for wi, n in zip(w, answered, strict=True)) / sum(w)
        np.testing.assert_allclose(results["ent"][x]["proba"], ent, rtol=1e-9)
        assert sorted(results["ent"][x]["branches"]) == answered

        merged = results["merged"][x]
        assert merged["a"]["y"] == x and merged["b"]["y"] == 2 * x

        assert results["py"][x]["answered"] == answered and results["py"][x]["n"] == len(answered)

    for x in complete:
        summed = proba("a", x) + proba("b", x) + proba("c", x)
        assert results["stack"][x] == {**results["stack"][x], "label": int(summed.argmax()),
                                       "width": 9}
    assert set(results["stack"]) == set(complete)
    letters = subscribe(cli, m["dlq"], 3 + 3, timeout=30)
    stack_letters = [r for r in letters if r["payload"]["agent"] == "stack"]
    assert {int(r["id"][1:]) for r in stack_letters} == {3, 7, 11}
    assert all("missing: c" in r["payload"]["error"] for r in stack_letters)


def test_modes_and_timeouts(cli, deploy, write_topology, tmp_path):
    m = deploy(write_topology(MODES, STEPS))
    xs = list(range(8))
    publish(cli, tmp_path, m["name"], xs)
    started = time.monotonic()
    results = by_joiner(subscribe(cli, m["name"], 8 * 3 + 6, timeout=60))
    assert time.monotonic() - started < 30, "timers fire without new records"

    assert set(results["every"]) == set(xs)
    assert results["every"][3]["missing"] == ["c"] and "missing" not in results["every"][0]
    assert set(results["strict"]) == set(xs) - {3, 7}
    for x in xs:
        assert len([k for k in results["first"][x] if k in "abc"]) == 1
        assert len([k for k in results["two"][x] if k in "abc"]) == 2
    letters = [r for r in subscribe(cli, m["dlq"], 2 + 2, timeout=30)
               if r["payload"]["agent"] == "strict"]
    assert sorted(int(r["id"][1:]) for r in letters) == [3, 7]
    assert all("join timed out" in r["payload"]["error"] for r in letters)


SIMPLE = '''
name: join
fields: [x]
agents:
  a: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:a"}}
  b: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:b"}}
  vote: {inputs: [a, b], join: {strategy: soft_vote, timeout_ms: 30000}, replicas: REPLICAS}
'''


def test_duplicated_branch_records_give_one_result(cli, deploy, write_topology, bootstrap,
                                                   tmp_path):
    m = deploy(write_topology(SIMPLE.replace("REPLICAS", "1"), STEPS))
    x = 5
    redelivered = {"x": x, "proba": proba("a", x).astype(np.float32), "y": float(x),
                   "label": int(proba("a", x).argmax())}

    async def redeliver() -> None:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await p.start()
        trace = Trace("dup5", int(time.time() * 1000), ("a",))
        for _ in range(2):
            await p.send_and_wait(f"{m['name']}.a", encode_payload(redelivered),
                                  key=trace.key, headers=trace.headers())
        await p.stop()

    asyncio.run(redeliver())
    publish(cli, tmp_path, m["name"], [x], prefix="dup")
    subscribe(cli, m["name"], 1, timeout=30)
    results = read_all(cli, m["name"])
    assert [r["id"] for r in results] == ["dup5"]
    np.testing.assert_allclose(results[0]["payload"]["proba"],
                               (proba("a", x) + proba("b", x)) / 2)


@pytest.mark.parametrize("replicas", [1, 2])
def test_killed_joiner_emits_each_request_exactly_once(cli, deploy, write_topology, tmp_path,
                                                       replicas):
    m = deploy(write_topology(SIMPLE.replace("REPLICAS", str(replicas)), STEPS))
    status = json.loads(cli("status", m["name"], "--json").stdout)
    joiner = status["agents"][-1]
    assert len(joiner["workers"]) == replicas
    publish(cli, tmp_path, m["name"], list(range(300)))
    time.sleep(0.5)
    os.kill(joiner["workers"][0]["pid"], signal.SIGKILL)
    publish(cli, tmp_path, m["name"], list(range(300, 600)), prefix="s")

    subscribe(cli, m["name"], 600, timeout=90)
    results = read_all(cli, m["name"])
    ids = Counter(r["id"] for r in results)
    assert len(ids) == 600
    assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1][:10]
    for r in results:
        x = int(r["id"][1:])
        expected = (proba("a", x) + proba("b", x)) / 2
        np.testing.assert_allclose(r["payload"]["proba"], expected)


BACKLOG = '''
name: join
fields: [x]
agents:
  a: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:a"}}
  slow: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:slow"},
         batch: {max_size: 1}}
  vote: {inputs: [a, slow], join: {strategy: soft_vote, timeout_ms: 2000, max_pending: 1200}}
'''


def whole_once(cli, name: str, count: int) -> list[dict]:
    """The ``count`` answers after the warm-up request ``w0``: each request answered
    once, with every branch."""
    subscribe(cli, name, 1 + count, timeout=90)
    results = [r for r in read_all(cli, name) if r["id"] != "w0"]
    ids = Counter(r["id"] for r in results)
    assert len(ids) == count and max(ids.values()) == 1
    partial = [r["id"] for r in results if "missing" in r["payload"]]
    assert partial == [], f"{len(partial)} partial answers, e.g. {partial[:5]}"
    return results


def test_a_backlog_a_branch_drains_slowly_gets_complete_answers(cli, deploy, write_topology,
                                                                tmp_path):
    """``slow`` takes 2 ms a request, so 2000 requests published at once keep it busy for
    over 4 s, twice the joiner's timeout_ms, while ``a`` answers them all at once, more
    than the joiner's max_pending: the joiner waits for ``slow`` while it delivers and
    stops reading ``a`` while too many requests are open, and every answer is whole."""
    m = deploy(write_topology(BACKLOG, STEPS))
    publish(cli, tmp_path, m["name"], [0], prefix="w")  # every worker warm, as in service
    subscribe(cli, m["name"], 1, timeout=30)
    xs = list(range(2000))
    publish(cli, tmp_path, m["name"], xs)
    results = whole_once(cli, m["name"], len(xs))
    for r in results:
        x = int(r["id"][1:])
        np.testing.assert_allclose(r["payload"]["proba"], (proba("a", x) + proba("b", x)) / 2)


def test_a_joiner_behind_its_branches_waits_for_what_it_has_not_read(cli, deploy,
                                                                     write_topology, tmp_path):
    """The joiner is frozen while both branches answer 3000 requests, so that when it
    goes on, every request's branch results are older than its timeout_ms (300) and take
    it longer than that to read: records it has not read yet are not a silent branch,
    and every answer is whole. (A joiner that judged silence by the wall clock alone
    answered nearly all of them partially.)"""
    m = deploy(write_topology(SIMPLE.replace("timeout_ms: 30000", "timeout_ms: 300")
                              .replace("REPLICAS", "1"), STEPS))
    publish(cli, tmp_path, m["name"], [0], prefix="w")
    subscribe(cli, m["name"], 1, timeout=30)
    joiner = worker(cli, m["name"], "vote")["pid"]
    xs = list(range(3000))
    os.kill(joiner, signal.SIGSTOP)
    try:
        publish(cli, tmp_path, m["name"], xs)
        deadline = time.monotonic() + 60
        while not all(a["lag"] == 0 for a in json.loads(
                cli("status", m["name"], "--json").stdout)["agents"] if a["name"] != "vote"):
            assert time.monotonic() < deadline, "the branches never answered every request"
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        os.kill(joiner, signal.SIGCONT)
    whole_once(cli, m["name"], len(xs))


def test_a_joiner_stopped_while_it_waits_for_room_stops_soon_and_loses_nothing(
        cli, deploy, write_topology, tmp_path):
    """Stopped while it holds ``a``'s records back for room (``slow`` is frozen while the
    requests come and while the deployment stops), the joiner leaves them to its
    successor instead of waiting for them; redeployed, every request is answered once,
    whole."""
    file = write_topology(BACKLOG.replace("timeout_ms: 2000", "timeout_ms: 10000"), STEPS)
    m = deploy(file)
    publish(cli, tmp_path, m["name"], [0], prefix="w")
    subscribe(cli, m["name"], 1, timeout=30)
    status = json.loads(cli("status", m["name"], "--json").stdout)
    (slow,) = [w["pid"] for a in status["agents"] if a["name"] == "slow" for w in a["workers"]]
    log = tmp_path / "sc-home" / "deployments" / m["name"] / "logs" / "vote-0.log"

    def wait_for(line: str) -> None:
        deadline = time.monotonic() + 30
        while line not in log.read_text():
            assert time.monotonic() < deadline, f"the joiner never logged {line!r}"
            time.sleep(0.1)

    xs = list(range(2000))
    os.kill(slow, signal.SIGSTOP)
    try:
        publish(cli, tmp_path, m["name"], xs)
        wait_for("waits with the inputs running ahead")
        stopping = threading.Thread(target=cli, args=("stop", m["name"]))
        started = time.monotonic()
        stopping.start()
        wait_for("records not taken for room")
        assert time.monotonic() - started < 10
    finally:
        os.kill(slow, signal.SIGCONT)
    stopping.join()
    deploy(file, name=m["name"])
    whole_once(cli, m["name"], len(xs))
