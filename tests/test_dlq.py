"""Dead letters on the real broker: list and show them with their reasons, redrive them to
the agent that failed them, each exactly once even when a redrive is killed mid-way."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections import Counter

import pytest
from fixtures import CLI, ROOT, read_all

from streamcompose.codec.redrive import read_redrive
from streamcompose.deadletters.redrive import progress_topic
from streamcompose.errors import BrokerError
from streamcompose.kafka.ranges import read_range

pytestmark = pytest.mark.integration

STEPS = '''
import os

class Flaky:
    """Doubles x, except while the flag file exists."""

    def __init__(self, flag):
        self.flag = flag

    def __call__(self, batch):
        if os.path.exists(self.flag):
            raise RuntimeError("the flag file is set")
        return [{"doubled": p["x"] * 2} for p in batch]

def echo(batch):
    return [{"echo": p["x"]} for p in batch]
'''

TOPOLOGY = '''
name: flaky
agents:
  flaky:
    inputs: [$input]
    model: {runtime: python, entrypoint: "STEPS:Flaky", options: {flag: "FLAG"}}
    batch: {max_size: 8, max_wait_ms: 5}
  echo:
    inputs: [$input]
    model: {runtime: python, entrypoint: "STEPS:echo"}
'''
FAILED = 20


def _publish(cli, tmp_path, name: str, ids: list[str]) -> None:
    path = tmp_path / f"{ids[0]}.jsonl"
    path.write_text("".join(json.dumps({"id": i, "x": n}) + "\n" for n, i in enumerate(ids)))
    cli("publish", name, "--file", str(path))


def _dead_letters(cli, name: str, count: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        letters = json.loads(cli("dlq", "list", name, "--json").stdout)
        if len(letters) >= count or time.monotonic() > deadline:
            return letters
        time.sleep(0.5)


def _answers(cli, name: str, quiet_s: float = 4) -> dict[str, Counter]:
    """Per agent, how many results each request id got."""
    by_agent: dict[str, Counter] = {}
    for r in read_all(cli, name, quiet_s):
        by_agent.setdefault(r["path"][-1], Counter())[r["id"]] += 1
    return by_agent


@pytest.fixture
def failing(cli, deploy, write_topology, tmp_path):
    """A deployment whose agent `flaky` dead-lettered FAILED requests (f0..), its flag
    cleared since, and a request (g0) answered after; `echo` reads the same input."""
    flag = tmp_path / "flag"
    flag.write_text("fail")
    m = deploy(write_topology(TOPOLOGY.replace("FLAG", str(flag)), STEPS))
    failed = [f"f{i}" for i in range(FAILED)]
    _publish(cli, tmp_path, m["name"], failed)
    letters = _dead_letters(cli, m["name"], FAILED)
    assert sorted(d["id"] for d in letters) == sorted(failed)
    flag.unlink()
    _publish(cli, tmp_path, m["name"], ["g0"])
    return m, failed


def test_list_show_and_redrive_each_dead_letter_once(cli, failing):
    m, failed = failing
    name = m["name"]
    letters = json.loads(cli("dlq", "list", name, "--agent", "flaky", "--reason", "FLAG FILE",
                             "--json").stdout)
    assert len(letters) == FAILED
    assert {d["agent"] for d in letters} == {"flaky"}
    assert all(d["error"].endswith("the flag file is set") and d["redriven"] is None
               for d in letters)
    assert json.loads(cli("dlq", "list", name, "--reason", "no such reason",
                          "--json").stdout) == []
    shown = json.loads(cli("dlq", "show", name, letters[0]["ref"], "--json").stdout)
    assert shown["original"] == {"x": failed.index(shown["id"])}
    assert shown["source"]["topic"] == m["input"]

    dry = json.loads(cli("dlq", "redrive", name, "--dry-run", "--json").stdout)
    assert len(dry["redriven"]) == FAILED
    done = json.loads(cli("dlq", "redrive", name, "--json").stdout)
    assert sorted(d["id"] for d in done["redriven"]) == sorted(failed)
    assert {d["to"] for d in done["redriven"]} == {m["input"]}

    answers = _answers(cli, name)
    assert answers["flaky"] == Counter({i: 1 for i in [*failed, "g0"]})
    # echo reads the same topic: a request redriven for flaky is not echo's again
    assert answers["echo"] == Counter({i: 1 for i in [*failed, "g0"]})
    outputs = asyncio.run(read_range(m["bootstrap"], [m["output"]], None, None))
    provenance = {r.key.decode(): read_redrive(r.headers) for r in outputs
                  if r.headers and dict(r.headers).get("sc-path") == b"flaky"}
    assert {rid for rid, p in provenance.items() if p is not None} == set(failed)
    assert {p.dlq for p in provenance.values() if p is not None} == {m["dlq"]}

    again = json.loads(cli("dlq", "redrive", name, "--json").stdout)
    assert again["redriven"] == []
    assert len(again["skipped"]) == FAILED
    assert all(s["reason"].startswith("redriven already") for s in again["skipped"])
    listed = json.loads(cli("dlq", "list", name, "--json").stdout)
    assert all(d["redriven"] is not None for d in listed)
    assert _answers(cli, name, quiet_s=2)["flaky"] == Counter({i: 1 for i in [*failed, "g0"]})


def _progress(m: dict) -> list:
    """The records of the deployment's redrive progress topic (none before it exists)."""
    try:
        return asyncio.run(read_range(m["bootstrap"], [progress_topic(m["name"])], None, None))
    except BrokerError:
        return []


@pytest.mark.reliability
def test_a_killed_redrive_run_again_redrives_each_dead_letter_once(cli, failing, sc_env):
    m, failed = failing
    name = m["name"]
    slow = subprocess.Popen([*CLI, "dlq", "redrive", name, "--rate", "5", "--json"],
                            env=sc_env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(_progress(m)) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        slow.send_signal(signal.SIGKILL)
    finally:
        slow.wait(30)
    partial = [d for d in json.loads(cli("dlq", "list", name, "--json").stdout)
               if d["redriven"] is not None]
    assert 0 < len(partial) < FAILED, "the killed run should have redriven some, not all"
    rest = json.loads(cli("dlq", "redrive", name, "--json").stdout)
    assert len(rest["redriven"]) == FAILED - len(partial)
    assert not {d["id"] for d in rest["redriven"]} & {d["id"] for d in partial}
    assert _answers(cli, name)["flaky"] == Counter({i: 1 for i in [*failed, "g0"]})
