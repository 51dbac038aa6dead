"""Reliability on the real broker: workers of every kind SIGKILLed mid-stream under
exactly-once (0 lost, 0 duplicated, 0 partial) and at-least-once (0 lost), a result too
large for its topic, and the output gap after a kill."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from probe import Probe, kill_worker

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

REQUESTS = 2000
RATE = 250.0

STEPS = '''
import time

def inc(batch):
    time.sleep(0.002)
    return [{"x": p["x"] + 1} for p in batch]

def double(batch):
    time.sleep(0.004)
    return [{"x": p["x"] * 2} for p in batch]

def votes(label):
    def vote(batch):
        return [{"proba": [0.5, 0.5] if label == "even" else [0.25, 0.75]} for _ in batch]
    return vote

a = votes("even")
b = votes("odd")
c = votes("even")

def big(batch):
    return [{"blob": b"z" * (1100 * 1024) if p["x"] == 7 else b"z" * (20000 if p["x"] == 8
                                                                        else 0)}
            for p in batch]

def failing(batch):
    out = []
    for p in batch:
        if p["x"] % 5 == 0:
            raise ValueError("primary refuses multiples of 5")
        out.append({"by": "primary"})
    return out

def backup(batch):
    return [{"by": "backup"} for _ in batch]

for f in (inc, double, a, b, c):
    f.inputs = ("x",)
'''

CASCADE = '''
name: cascade
fields: [x]
delivery: DELIVERY
agents:
  inc:
    inputs: [$input]
    model: {runtime: python, entrypoint: "STEPS:inc"}
    batch: {max_size: 16, max_wait_ms: 5}
  double:
    inputs: [inc]
    model: {runtime: python, entrypoint: "STEPS:double"}
    batch: {max_size: 16, max_wait_ms: 5}
'''

SWITCH = '''
name: switched
fields: [x]
agents:
  pick:
    inputs: [$input]
    switch:
      cases: [{when: "x < 1000", to: even}]
      default: odd
  even: {inputs: [pick], model: {runtime: python, entrypoint: "STEPS:inc"}}
  odd: {inputs: [pick], model: {runtime: python, entrypoint: "STEPS:double"}}
'''

ENSEMBLE = '''
name: voted
fields: [x]
agents:
  a: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:a"},
      batch: {max_size: 16, max_wait_ms: 5}}
  b: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:b"},
      batch: {max_size: 16, max_wait_ms: 5}}
  c: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:c"},
      batch: {max_size: 16, max_wait_ms: 5}}
  vote:
    inputs: [a, b, c]
    join: {strategy: soft_vote, timeout_ms: 8000}
'''

FALLBACK = '''
name: fallen
fields: [x]
agents:
  serve:
    inputs: [$input]
    fallback: {primary: primary, backup: spare, deadline_ms: 3000}
  primary: {inputs: [serve], model: {runtime: python, entrypoint: "STEPS:failing"}}
  spare: {inputs: [serve], model: {runtime: python, entrypoint: "STEPS:backup"}}
'''


def _kill_during(probe: Probe, cli, name: str, agents: list[str | tuple[str, float]]
                 ) -> None:
    """Kill the agents one after another while the probe publishes, each once the
    previous victim's successor runs; ``(agent, seconds)`` freezes it that long first."""
    for n, victim in enumerate(agents, 1):
        agent, frozen_s = victim if isinstance(victim, tuple) else (victim, 0.0)
        while probe.sent < REQUESTS * n / (len(agents) + 1):
            time.sleep(0.05)
        kill_worker(cli, name, agent, frozen_s=frozen_s)


def _run(cli, deploy, write_topology, bootstrap, topology: str,
         victims: list[str | tuple[str, float]]):
    m = deploy(write_topology(topology, STEPS))
    probe = Probe(bootstrap, m, REQUESTS, RATE, lambda i: {"x": i}).start()
    killer = threading.Thread(target=_kill_during, args=(probe, cli, m["name"], victims))
    killer.start()
    seen = probe.wait(240)
    killer.join()
    return probe, seen


@pytest.mark.parametrize("victims", [["double", "double", "inc"]])
def test_model_agents_killed_exactly_once(cli, deploy, write_topology, bootstrap, victims):
    probe, seen = _run(cli, deploy, write_topology, bootstrap,
                       CASCADE.replace("DELIVERY", "exactly_once"), victims)
    assert seen.lost(probe.ids) == []
    assert seen.duplicated() == []
    assert seen.dead == []
    assert all(p["x"] == (int(rid[1:]) + 1) * 2 for rid, p, _ in seen.results)
    assert seen.longest_gap() < 3.0, f"output stalled {seen.longest_gap():.1f}s after a kill"


def test_model_agents_killed_at_least_once(cli, deploy, write_topology, bootstrap):
    probe, seen = _run(cli, deploy, write_topology, bootstrap,
                       CASCADE.replace("DELIVERY", "at_least_once"), ["double", "inc"])
    assert seen.lost(probe.ids) == []
    assert seen.dead == []


def test_switch_router_killed_exactly_once(cli, deploy, write_topology, bootstrap):
    probe, seen = _run(cli, deploy, write_topology, bootstrap, SWITCH, ["pick", "pick"])
    assert seen.lost(probe.ids) == []
    assert seen.duplicated() == []
    for rid, payload, _ in seen.results:
        x = int(rid[1:])
        assert payload["x"] == (x + 1 if x < 1000 else x * 2)


def test_joiner_killed_gives_no_partial_answer(cli, deploy, write_topology, bootstrap):
    # the second time the joiner hangs longer than its timeout before it dies: its
    # successor must not take the requests it restores for timed out
    probe, seen = _run(cli, deploy, write_topology, bootstrap, ENSEMBLE,
                       ["vote", ("vote", 10.0)])
    assert seen.lost(probe.ids) == []
    assert seen.duplicated() == []
    partial = [rid for rid, p, _ in seen.results if p.get("missing")]
    assert partial == [], f"{len(partial)} partial answers, e.g. {partial[:5]}"
    assert all(p["label"] == 1 for _, p, _ in seen.results)


def test_fallback_router_killed_answers_once(cli, deploy, write_topology, bootstrap):
    probe, seen = _run(cli, deploy, write_topology, bootstrap, FALLBACK, ["serve", "serve"])
    assert seen.lost(probe.ids) == []
    assert seen.duplicated() == []
    for rid, payload, _ in seen.results:
        expected = "spare" if int(rid[1:]) % 5 == 0 else "primary"
        assert payload["served_by"] == expected


def test_result_too_large_is_dead_lettered_and_the_partition_moves_on(
        cli, deploy, write_topology, bootstrap):
    m = deploy(write_topology('''
name: sized
fields: [x]
agents:
  grow: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:big"}}
''', STEPS))
    # r8's request fits its topic (1 MiB) but its result does not, and neither would a
    # dead letter holding all of it
    pad = {8: 1_048_000}
    probe = Probe(bootstrap, m, 20, 50.0,
                  lambda i: {"x": i, "pad": b"p" * pad.get(i, 1000)}).start()
    seen = probe.wait(120)
    assert seen.lost(probe.ids) == []
    assert seen.duplicated() == []
    letters = {rid: letter for rid, letter, _ in seen.dead}
    assert sorted(letters) == ["r7", "r8"]
    for letter in letters.values():
        assert "max.message.bytes" in letter["error"] and letter["agent"] == "grow"
    assert not letters["r7"].get("truncated")
    assert letters["r8"]["truncated"] and letters["r8"]["original_bytes"] > 1_048_000
    assert len(letters["r8"]["original"]) < letters["r8"]["original_bytes"]
    status = cli("status", m["name"], "--json", "--no-lag").stdout
    assert '"restarts": 0' in status


def _free_port_pair() -> int:
    """A port whose successor is free too (the broker's controller listens there)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port + 1)) != 0 and port < 65000:
                return port
    raise AssertionError("no free port pair")


@pytest.fixture
def own_broker(cli, tmp_path):
    """A broker of this test's own, which it may stop and start again."""
    port = _free_port_pair()
    args = ["--port", str(port), "--data-dir", str(tmp_path / "broker")]
    cli("broker", "start", *args, "--fresh")
    yield f"127.0.0.1:{port}", args
    cli("broker", "stop", *args, check=False)


def test_broker_outage_of_a_minute(cli, write_topology, own_broker, unique):
    bootstrap, args = own_broker
    file = write_topology(CASCADE.replace("DELIVERY", "exactly_once"), STEPS)
    m = json.loads(cli("deploy", str(file), "--name", unique, "--bootstrap", bootstrap,
                       "--json").stdout)
    try:
        before = Probe(bootstrap, m, 200, 200.0, lambda i: {"x": i}, "a").start().wait(120)
        assert before.lost([f"a{i}" for i in range(200)]) == []
        cli("broker", "stop", *args)
        time.sleep(60)
        cli("broker", "start", *args)
        back = time.monotonic()
        after = Probe(bootstrap, m, 200, 200.0, lambda i: {"x": i}, "b").start().wait(180)
        first = min(t for _, _, t in after.results)
        assert after.lost([f"b{i}" for i in range(200)]) == []
        assert after.duplicated() == [] and after.dead == []
        assert first - back < 5.0, f"results resumed {first - back:.1f}s after the broker"
    finally:
        cli("stop", unique, check=False)
