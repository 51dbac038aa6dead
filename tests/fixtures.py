"""Shared fixtures: the real broker, an isolated streamcompose home, and deployments made
through the CLI with names unique to each test; helpers importing the example modules of
the topologies folder, their models trained where missing."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "streamcompose.cli"]
TOPOLOGIES = ROOT / "topologies"


@pytest.fixture(scope="session")
def bootstrap() -> str:
    """The broker `make test` (and so CI) started. Absent, integration tests fail."""
    from streamcompose.errors import BrokerError
    from streamcompose.kafka.admin import ensure_topics

    address = os.environ.get("STREAMCOMPOSE_BOOTSTRAP", "127.0.0.1:9092")
    try:
        asyncio.run(ensure_topics(address, {}))
    except BrokerError as exc:
        pytest.fail(f"the Kafka broker is not reachable at {address}: start it with "
                    f"`make broker` (or `streamcompose broker start`): {exc}")
    return address


@pytest.fixture
def unique() -> str:
    """A name no other test uses, for topics and groups."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def sc_env(tmp_path: Path, bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment of a test's CLI calls: its own deployments folder and the broker."""
    home = tmp_path / "sc-home"
    monkeypatch.setenv("STREAMCOMPOSE_HOME", str(home))
    monkeypatch.setenv("STREAMCOMPOSE_BOOTSTRAP", bootstrap)
    return {**os.environ, "STREAMCOMPOSE_HOME": str(home), "STREAMCOMPOSE_BOOTSTRAP": bootstrap}


def cli_runner(env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``streamcompose ARGS`` as a user would, in ``env``; returns the completed
    process (an AssertionError with its output when it fails and ``check``)."""

    def run(*args: str, input: str | None = None, timeout: float = 240,
            check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([*CLI, *args], env=env, cwd=ROOT, input=input, text=True,
                              capture_output=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"streamcompose {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done

    return run


@pytest.fixture
def cli(sc_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``streamcompose ARGS`` as a user would; returns the completed process."""
    return cli_runner(sc_env)


@pytest.fixture
def deploy(cli: Callable[..., subprocess.CompletedProcess], unique: str
           ) -> Iterator[Callable[..., dict[str, Any]]]:
    """Deploy a topology file under a unique name; stopped when the test ends."""
    names: list[str] = []

    def run(file: str | Path, name: str | None = None) -> dict[str, Any]:
        name = name or f"{unique}-{len(names)}"
        names.append(name)
        return json.loads(cli("deploy", str(file), "--name", name, "--json").stdout)

    yield run
    for name in names:
        cli("stop", name, check=False)


@pytest.fixture
def write_topology(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a topology file (and optional steps module) into the test's folder."""

    def write(yaml_text: str, steps: str = "") -> Path:
        if steps:
            (tmp_path / f"steps_{tmp_path.name}.py").write_text(steps)
        path = tmp_path / "topology.yaml"
        path.write_text(yaml_text.replace("STEPS", f"steps_{tmp_path.name}"))
        return path

    return write


def subscribe(cli: Callable[..., subprocess.CompletedProcess], target: str, count: int,
              *extra: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Read ``count`` results of a target from the beginning as parsed JSON lines."""
    done = cli("subscribe", target, "--from-beginning", "--count", str(count),
               "--timeout", str(timeout), *extra, check=False, timeout=timeout + 60)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) >= count, f"got {len(lines)} of {count} results: {done.stderr}"
    return lines


def read_all(cli: Callable[..., subprocess.CompletedProcess], target: str,
             quiet_s: float = 5) -> list[dict[str, Any]]:
    """Every record of a target from the beginning, until none came for ``quiet_s``."""
    done = cli("subscribe", target, "--from-beginning", "--timeout", str(quiet_s),
               timeout=quiet_s + 120)
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def import_topology_module(module: str) -> ModuleType:
    """A module of the topologies folder, imported as the runtimes import the steps."""
    if str(TOPOLOGIES) not in sys.path:
        sys.path.insert(0, str(TOPOLOGIES))
    return importlib.import_module(module)


def trained(example: str) -> ModuleType:
    """``topologies/<example>/train.py``, with every model of the example trained into
    ``topologies/models`` where missing."""
    train = import_topology_module(f"{example}.train")
    train.train_all(train.MODELS_DIR)
    return train


def write_double_onnx(path: Path) -> Path:
    """A tiny ONNX model at ``path``: ``x`` float32 [N, 3] -> ``y = x * 2``."""
    from onnx import TensorProto, helper, save

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])], "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        initializer=[helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    save(model, str(path))
    return path


def free_ports(count: int, pin_variable: str, first: int) -> int:
    """The first of ``count`` consecutive free ports from ``first`` on, for a broker a test
    starts itself; ``$pin_variable`` pins it (on a machine where ports are shared out)."""
    if pinned := os.environ.get(pin_variable):
        return int(pinned)
    for base in range(first, 32700, 2 * count):
        try:
            for port in range(base, base + count):
                socket.create_server(("127.0.0.1", port)).close()
        except OSError:
            continue
        return base
    raise AssertionError(f"no {count} consecutive free ports from {first}")
