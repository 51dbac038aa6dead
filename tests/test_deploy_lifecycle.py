"""The life of a deployment on the real broker: consumer lag read from the broker,
workers that die with their supervisor, deploys refused while a deployment's processes
live, stop signalling only its own processes, plain names only, and workers (restarted
ones included) that run the topology snapshot taken at deploy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamcompose.deploy.registry import pid_alive, runs_deployment

pytestmark = pytest.mark.integration

STEPS = '''
import time


def slow(batch):
    time.sleep(0.05)
    return [{"x": p["x"] + 1} for p in batch]


slow.inputs = ("x",)
slow.outputs = ("x",)


class Add:
    inputs = ("x",)
    outputs = ("x",)

    def __init__(self, step):
        self.step = step

    def __call__(self, batch):
        return [{"x": p["x"] + self.step} for p in batch]
'''

SLOW = '''
name: slow
fields: [x]
partitions: 1
agents:
  slow:
    inputs: [$input]
    model: {runtime: python, entrypoint: "STEPS:slow"}
    batch: {max_size: 1, max_wait_ms: 1}
'''

ADD = '''
name: add
fields: [x]
agents:
  add:
    inputs: [$input]
    model: {runtime: python, entrypoint: "STEPS:Add", options: {step: 1}}
    replicas: REPLICAS
'''


def add_topology(write_topology: Callable[[str, str], Path], replicas: int = 1) -> Path:
    return write_topology(ADD.replace("REPLICAS", str(replicas)), STEPS)


def status(cli: Callable[..., subprocess.CompletedProcess], name: str) -> dict[str, Any]:
    return json.loads(cli("status", name, "--json", check=False).stdout)


def worker_pids(state: dict[str, Any]) -> list[int]:
    return [w["pid"] for a in state["agents"] for w in a["workers"]]


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def infer_x(cli: Callable[..., subprocess.CompletedProcess], name: str, x: int) -> int:
    return json.loads(cli("infer", name, "--data", json.dumps({"x": x})).stdout)["payload"]["x"]


@pytest.fixture
def sleeper() -> Callable[..., subprocess.Popen]:
    """Start long sleeping processes (extra ``args`` show in their command line); killed
    when the test ends."""
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(100)", *args])
        started.append(proc)
        cmdline = Path(f"/proc/{proc.pid}/cmdline")
        deadline = time.monotonic() + 30
        while b"time.sleep(100)" not in cmdline.read_bytes():  # until it has exec'd
            assert time.monotonic() < deadline, "the sleeper did not start"
            time.sleep(0.01)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def test_status_shows_the_lag_of_a_backlog(cli, deploy, write_topology, tmp_path):
    m = deploy(write_topology(SLOW, STEPS))
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"id": f"l{i}", "x": i}) + "\n" for i in range(300)))
    cli("publish", m["name"], "--file", str(events))
    first = status(cli, m["name"])["agents"][0]["lag"]
    assert first > 0, "a backlog of 300 requests at 20 per second shows no lag"
    wait_for(lambda: status(cli, m["name"])["agents"][0]["lag"] == 0, 90,
             "the lag falls to 0 once the backlog is consumed")


@pytest.mark.reliability
def test_workers_exit_with_their_supervisor_and_redeploy_works(cli, deploy, write_topology):
    file = add_topology(write_topology, replicas=2)
    m = deploy(file)
    before = status(cli, m["name"])
    pids = worker_pids(before)
    assert len(pids) == 2 and all(pid_alive(pid) for pid in pids)
    os.kill(before["supervisor"]["pid"], signal.SIGKILL)
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), 15,
             f"workers {pids} exit after their supervisor was killed")
    assert cli("status", m["name"], check=False).returncode == 1

    deploy(file, m["name"])
    assert infer_x(cli, m["name"], 1) == 2


def test_deploy_refused_while_a_worker_lives_and_stop_ends_it(cli, deploy, write_topology):
    file = add_topology(write_topology)
    m = deploy(file)
    before = status(cli, m["name"])
    [worker] = worker_pids(before)
    os.kill(worker, signal.SIGSTOP)  # it cannot act on its supervisor's death
    os.kill(before["supervisor"]["pid"], signal.SIGKILL)
    wait_for(lambda: not pid_alive(before["supervisor"]["pid"]), 10, "supervisor gone")

    refused = cli("deploy", str(file), "--name", m["name"], check=False)
    assert refused.returncode == 1
    assert "still running" in refused.stderr and f"add-0 (pid {worker})" in refused.stderr
    assert pid_alive(worker)

    assert "stopped" in cli("stop", m["name"]).stdout
    wait_for(lambda: not pid_alive(worker), 10, "stop ends a worker its supervisor left")
    deploy(file, m["name"])
    assert infer_x(cli, m["name"], 5) == 6


def test_names_are_plain_names(cli, sc_env, write_topology, sleeper):
    home = Path(sc_env["STREAMCOMPOSE_HOME"])
    foreign = home.parent / "x"  # what deployments/../../x points at
    victim = sleeper("-m", "streamcompose.deploy.supervisor", "../../x")
    foreign.mkdir(parents=True)
    (foreign / "deployment.json").write_text(json.dumps({"name": "x",
                                                         "supervisor_pid": victim.pid}))
    file = add_topology(write_topology)
    for args in (["stop", "../../x"], ["status", "../x"], ["stop", ".."],
                 ["deploy", str(file), "--name", "a/b"], ["deploy", str(file), "--name", ".."]):
        done = cli(*args, check=False)
        assert done.returncode == 2, (args, done.stderr)
        assert "not a deployment name" in done.stderr
    assert victim.poll() is None
    assert (foreign / "deployment.json").exists()
    assert not (home / "deployments").exists()


def test_stop_signals_no_pid_that_is_not_its_worker(cli, sc_env, unique, sleeper):
    stranger = sleeper()
    # a worker of another deployment, whose agent has this deployment's name
    other = sleeper("-m", "streamcompose.agent", "t.yaml", unique, "--name", f"{unique}-x")
    mine = sleeper("-m", "streamcompose.agent", "--name", unique)
    assert runs_deployment(mine.pid, unique)
    assert not runs_deployment(other.pid, unique) and not runs_deployment(stranger.pid, unique)

    d = Path(sc_env["STREAMCOMPOSE_HOME"]) / "deployments" / unique
    (d / "workers").mkdir(parents=True)
    (d / "deployment.json").write_text(json.dumps({"name": unique,
                                                   "supervisor_pid": stranger.pid}))
    (d / "supervisor.json").write_text(json.dumps({"workers": {
        "a-0": {"pid": stranger.pid}, "a-1": {"pid": other.pid}}}))
    (d / "workers" / "a-2.json").write_text(json.dumps({"pid": mine.pid}))

    assert "stopped" in cli("stop", unique).stdout
    assert stranger.poll() is None and other.poll() is None
    assert mine.wait(10) == -signal.SIGTERM
    assert not (d / "deployment.json").exists()


def test_restarted_worker_runs_the_snapshot(cli, deploy, write_topology, sc_env):
    file = add_topology(write_topology)
    m = deploy(file)
    snapshot = Path(sc_env["STREAMCOMPOSE_HOME"]) / "deployments" / m["name"] / "topology.yaml"
    assert yaml.safe_load(snapshot.read_text())["name"] == m["name"]
    assert infer_x(cli, m["name"], 1) == 2

    file.write_text(file.read_text().replace("step: 1", "step: 100"))
    [victim] = worker_pids(status(cli, m["name"]))
    environ = Path(f"/proc/{victim}/environ").read_bytes().split(b"\0")
    engines = snapshot.parent / "engines"
    assert f"STREAMCOMPOSE_ENGINE_CACHE={engines}".encode() in environ
    os.kill(victim, signal.SIGKILL)

    def restarted() -> bool:
        [w] = status(cli, m["name"])["agents"][0]["workers"]
        return w["restarts"] >= 1 and w["alive"] and w["status"] == "running"

    wait_for(restarted, 60, "the killed worker is running again")
    assert infer_x(cli, m["name"], 1) == 2, "the restarted worker read the edited file"
