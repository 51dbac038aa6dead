"""Co-located groups on the real broker: the co-located digits ensemble answers as the
ensemble does, a member's dead letter names the member, every member has its metrics,
and a group's worker SIGKILLed mid-stream loses, duplicates and splits nothing under
exactly-once."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request

import numpy as np
import pytest
from fixtures import TOPOLOGIES, read_all, subscribe, trained
from probe import Probe, kill_worker

from streamcompose.testing import LocalRunner
from streamcompose.topology import load_topology

pytestmark = pytest.mark.integration

STEPS = '''
import time

def inc(batch):
    time.sleep(0.002)
    return [{"x": p["x"] + 1} for p in batch]

def double(batch):
    return [{"y": p["x"] * 2} for p in batch]

def square(batch):
    time.sleep(0.003)
    out = []
    for p in batch:
        if p["x"] < 0:
            raise ValueError("square refuses negative x")
        out.append({"y": p["x"] ** 2})
    return out
'''

FAN = '''
name: fan
fields: [x]
colocate: {all: [inc, double, square, mean]}
agents:
  inc: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:inc"},
        batch: {max_size: 16, max_wait_ms: 5}}
  double: {inputs: [inc], model: {runtime: python, entrypoint: "STEPS:double"},
           batch: {max_size: 8, max_wait_ms: 5}}
  square: {inputs: [inc], model: {runtime: python, entrypoint: "STEPS:square"},
           batch: {max_size: 16, max_wait_ms: 5}}
  mean:
    inputs: [double, square]
    join: {strategy: weighted_average, field: y}
'''


THREADS = '''
import threading
import time


def where(batch):
    return [{"quick": threading.current_thread().name} for _ in batch]


def slow(batch):
    time.sleep(0.05)
    return [{"slow": threading.current_thread().name} for _ in batch]


def same(batch):
    return [{} for _ in batch]
'''

QUICK_THEN_SLOW = '''
name: threads
fields: [x]
colocate: {quick: [a, b], slow: [c, d]}
agents:
  a: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:where"},
      batch: {max_size: 4, max_wait_ms: 1}}
  b: {inputs: [a], model: {runtime: python, entrypoint: "STEPS:same"}}
  c: {inputs: [b], model: {runtime: python, entrypoint: "STEPS:slow"},
      batch: {max_size: 4, max_wait_ms: 1}}
  d: {inputs: [c], model: {runtime: python, entrypoint: "STEPS:same"}}
'''


def test_a_quick_group_runs_on_the_event_loop_and_a_slow_one_on_its_model_thread(
        cli, deploy, write_topology):
    """A group whose step is expected to take less than ``group_inline_ms`` (20 ms) a
    batch runs it on the worker's event loop (the main thread) once it has timed a
    batch; one whose step sleeps 50 ms keeps it on the model thread, so that its loop
    goes on fetching."""
    m = deploy(write_topology(QUICK_THEN_SLOW, THREADS))
    rounds = 6  # a batch or more each: the first is timed on the model thread
    for n in range(rounds):
        cli("publish", m["name"], input="".join(
            f'{{"id": "r{n}-{i}", "x": {i}}}\n' for i in range(4)))
        subscribe(cli, m["name"], 4 * (n + 1))
    results = {r["id"]: r["payload"] for r in subscribe(cli, m["name"], 4 * rounds)}
    assert len(results) == 4 * rounds
    assert {results[f"r{rounds - 1}-{i}"]["quick"] for i in range(4)} == {"MainThread"}
    assert {p["slow"] for p in results.values()} == {"model-slow_0"}


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def test_colocated_digits_ensemble_answers_as_the_ensemble(cli, deploy):
    trained("digits")
    m = deploy(TOPOLOGIES / "digits_ensemble_colocated.yaml")
    assert [a["name"] for a in m["agents"]] == ["ensemble"]
    assert m["topics"] == [m["input"], m["output"], m["dlq"]]
    digits = np.load(TOPOLOGIES / "models" / "digits_test.npz")["X"][:60]
    lines = "\n".join(json.dumps({"id": f"d{i}", "pixels": x.tolist()})
                      for i, x in enumerate(digits))
    cli("publish", m["name"], input=lines + "\n")
    got = {r["id"]: r for r in subscribe(cli, m["name"], len(digits))}
    apart = LocalRunner(load_topology(TOPOLOGIES / "digits_ensemble.yaml")).run(
        [(f"d{i}", {"pixels": x.tolist()}) for i, x in enumerate(digits)])
    for want in apart.results:
        assert got[want.id]["payload"]["label"] == want.payload["label"]
        np.testing.assert_allclose(got[want.id]["payload"]["proba"], want.payload["proba"],
                                   rtol=1e-6)
        assert got[want.id]["path"] == list(want.path)
    (unit,) = json.loads(cli("status", m["name"], "--json").stdout)["agents"]
    assert unit["colocated"] == ["features", "logreg", "forest", "mlp", "cnn", "vote"]
    (worker,) = unit["workers"]
    text = _metrics(worker["metrics_port"])
    for member in ("features", "logreg", "forest", "mlp", "cnn", "vote"):
        assert f'streamcompose_records_in_total{{agent="{member}"' in text
    # torch, the models and the libraries are out of the collector's reach (freeze_heap)
    (frozen,) = re.findall(r'streamcompose_frozen_objects\{agent="ensemble"[^}]*\} (\S+)', text)
    assert float(frozen) > 100_000


def test_a_dead_letter_inside_a_group_names_the_member(cli, deploy, write_topology):
    inspected = "colocate: {all: {agents: [inc, double, square, mean], inspect: true}}"
    m = deploy(write_topology(FAN.replace("colocate: {all: [inc, double, square, mean]}",
                                          inspected), STEPS))
    cli("publish", m["name"], input='{"id": "bad", "x": -5}\n{"id": "good", "x": 1}\n')
    results = {r["id"]: r["payload"] for r in subscribe(cli, m["name"], 2)}
    assert results["good"] == {"x": 2, "y": 4.0}
    assert results["bad"]["missing"] == ["square"]
    (letter,) = read_all(cli, m["dlq"])
    assert letter["id"] == "bad"
    assert letter["payload"]["agent"] == "square"
    assert "square refuses negative x" in letter["payload"]["error"]
    assert letter["payload"]["topic"] == m["input"]
    assert letter["path"] == ["inc", "square"]
    # inspect: true writes what passes in memory to its topic too
    shown = cli("inspect", m["name"], "square", "--from-beginning", "--count", "1",
                "--timeout", "30").stdout.splitlines()
    square = json.loads(shown[0])
    assert (square["id"], square["payload"]) == ("good", {"x": 2, "y": 4})


@pytest.mark.reliability
def test_group_worker_killed_exactly_once(cli, deploy, write_topology, bootstrap):
    requests, rate = 2000, 250.0
    m = deploy(write_topology(FAN, STEPS))
    probe = Probe(bootstrap, m, requests, rate, lambda i: {"x": i}).start()

    def kill_twice() -> None:
        for n in (1, 2):
            while probe.sent < requests * n / 3:
                time.sleep(0.05)
            kill_worker(cli, m["name"], "all")

    killer = threading.Thread(target=kill_twice)
    killer.start()
    seen = probe.wait(240)
    killer.join()
    assert seen.lost(probe.ids) == []
    assert seen.duplicated() == []
    assert seen.dead == []
    partial = [rid for rid, p, _ in seen.results if "missing" in p]
    assert partial == []
    for rid, payload, _ in seen.results:
        x = int(rid[1:]) + 1
        assert payload == {"x": x, "y": (2 * x + x * x) / 2}
    assert seen.longest_gap() < 3.0, f"output stalled {seen.longest_gap():.1f}s after a kill"
