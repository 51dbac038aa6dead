"""Running beyond one supervisor, against the real broker: one topology deployed as two
"hosts" (two supervisors with their own state folders), a worker in the foreground as a
container runs it, topic creation as a step of its own, and autoscaling on lag."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import CLI, ROOT, cli_runner, read_all, subscribe
from tests.test_deploy_lifecycle import STEPS, status, wait_for

pytestmark = pytest.mark.integration

CHAIN = '''
name: chain
fields: [x]
agents:
  first: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:Add", options: {step: 1}}}
  second: {inputs: [first], model: {runtime: python, entrypoint: "STEPS:Add", options: {step: 10}}}
'''

SCALED = '''
name: scaled
fields: [x]
partitions: 3
agents:
  slow:
    inputs: [$input]
    model: {runtime: python, entrypoint: "STEPS:slow"}
    batch: {max_size: 4, max_wait_ms: 1}
    autoscale: {min: 1, max: 3, lag_per_replica: 60, cooldown_s: 3}
'''


def host_cli(sc_env: dict[str, str], home: Path) -> Callable[..., subprocess.CompletedProcess]:
    """The CLI of another "host": its own STREAMCOMPOSE_HOME, the same broker."""
    return cli_runner({**sc_env, "STREAMCOMPOSE_HOME": str(home)})


def publish(cli: Callable[..., Any], name: str, folder: Path, ids: range) -> None:
    events = folder / f"events-{ids.start}.jsonl"
    events.write_text("".join(json.dumps({"id": f"r{i}", "x": i}) + "\n" for i in ids))
    cli("publish", name, "--file", str(events))


def members(state: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return {a["name"]: a["members"] for a in state["agents"]}


def test_two_hosts_run_one_topology(cli, sc_env, write_topology, unique, tmp_path):
    file = write_topology(CHAIN, STEPS)
    other = host_cli(sc_env, tmp_path / "host-b")
    name = f"{unique}-chain"
    try:
        cli("deploy", str(file), "--name", name, "--agents", "first")
        other("deploy", str(file), "--name", name, "--agents", "second")
        publish(cli, name, tmp_path, range(40))
        results = subscribe(cli, name, 40)
        assert sorted(r["payload"]["x"] for r in results) == [i + 11 for i in range(40)]
        assert {tuple(r["path"]) for r in results} == {("first", "second")}
        here, there = status(cli, name), json.loads(other("status", name, "--json").stdout)
        for state, local in ((here, {"first"}), (there, {"second"})):
            seen = members(state)
            assert set(seen) == {"first", "second"}
            for agent, found in seen.items():
                assert [m["client_id"] for m in found] == [f"{name}.{agent}.0"]
                assert found[0]["local"] == (agent in local)
                assert len(found[0]["partitions"]) == 3 and found[0]["host"]
            workers = {a["name"]: len(a["workers"]) for a in state["agents"]}
            assert workers == {a: int(a in local) for a in seen}
        text = cli("status", name).stdout
        assert "not on this host" in text and f"member {name}.second.0 on" in text
    finally:
        cli("stop", name, check=False)
        other("stop", name, check=False)


def test_topics_create_is_idempotent_and_deploy_agents_are_checked(cli, write_topology,
                                                                   unique):
    file = write_topology(CHAIN, STEPS)
    name = f"{unique}-topics"
    first = json.loads(cli("topics", "create", str(file), "--name", name, "--json").stdout)
    assert first[f"{name}.in"] == 3 and f"{name}.first" in first and f"{name}.dlq" in first
    again = json.loads(cli("topics", "create", str(file), "--name", name, "--json").stdout)
    assert again == first
    bad = cli("deploy", str(file), "--name", name, "--agents", "first,fourth", check=False)
    assert bad.returncode == 1 and "no agent 'fourth'" in bad.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_a_worker_in_the_foreground_serves_probes_and_drains_on_sigterm(
        cli, sc_env, write_topology, unique, tmp_path):
    file = write_topology(CHAIN, STEPS)
    name = f"{unique}-fg"
    cli("topics", "create", str(file), "--name", name)
    port = _free_port()
    worker = subprocess.Popen([*CLI, "worker", str(file), "first", "--name", name,
                               "--metrics-port", str(port), "--log-format", "json",
                               "--metrics-host", "127.0.0.1"],
                              env=sc_env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _get(port, "/healthz") == 200, 60, "/healthz answers")
        wait_for(lambda: _get(port, "/readyz") == 200, 90, "/readyz once the group is joined")
        publish(cli, name, tmp_path, range(10))
        results = subscribe(cli, f"{name}.first", 10)
        assert sorted(r["payload"]["x"] for r in results) == [i + 1 for i in range(10)]
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, err[-2000:]
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any("running" in e["message"] for e in logs)
    assert all({"time", "level", "logger", "message"} <= set(e) for e in logs)
    assert out == ""


def test_a_worker_that_cannot_start_exits_non_zero(cli, sc_env, write_topology, unique):
    file = write_topology(CHAIN.replace("STEPS:Add", "no_such_module_x:Add"), "")
    started = time.monotonic()
    done = subprocess.run([*CLI, "worker", str(file), "first", "--name", f"{unique}-bad",
                           "--metrics-port", "0"], env=sc_env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert "no_such_module_x" in done.stderr
    assert time.monotonic() - started < 60


def _decisions(state: dict[str, Any]) -> list[str]:
    scaling = state["agents"][0]["autoscale"] or {}
    return [d["direction"] for d in scaling.get("decisions", [])]


def test_autoscaling_adds_workers_for_a_backlog_and_removes_them_after(
        cli, deploy, write_topology, tmp_path):
    m = deploy(write_topology(SCALED, STEPS))
    name = m["name"]
    assert len(status(cli, name)["agents"][0]["workers"]) == 1
    publish(cli, name, tmp_path, range(400))
    grown = wait_for(lambda: (s := status(cli, name)) and len(s["agents"][0]["workers"]) == 3
                     and s, 60, "three workers for a backlog of 400 at 60 per worker")
    assert _decisions(grown)[0] == "up"
    shrunk = wait_for(lambda: (s := status(cli, name)) and len(s["agents"][0]["workers"]) == 1
                      and s, 120, "back to one worker once the backlog is consumed")
    assert _decisions(shrunk)[-1] == "down"
    assert all(w["alive"] for w in shrunk["agents"][0]["workers"])
    wait_for(lambda: [len(m["partitions"]) for m in members(status(cli, name))["slow"]] == [3],
             60, "the remaining worker takes every partition")
    publish(cli, name, tmp_path, range(400, 450))
    results = read_all(cli, name, quiet_s=5)
    counts = Counter(r["id"] for r in results)
    assert sorted(counts) == sorted(f"r{i}" for i in range(450)), "a request was lost"
    assert max(counts.values()) == 1, "a request was answered twice"
    assert sorted(r["payload"]["x"] for r in results) == [i + 1 for i in range(450)]
    port = shrunk["agents"][0]["autoscale"]["metrics_port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    for direction in ("up", "down"):  # exported at 0 from the start: counted once at least
        series = (f'streamcompose_autoscale_decisions_total{{agent="slow",'
                  f'direction="{direction}",topology="{name}"}} ')
        assert series in metrics and float(metrics.split(series)[1].split()[0]) >= 1, metrics
    assert os.path.exists(Path(status(cli, name)["snapshot"]))
