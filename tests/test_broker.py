"""Integration tests of the local broker control: a real Kafka broker on a spare port.

They never touch the broker on 9092: each test runs its own on a free high port, in a
temporary data dir, and stops it afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from click.testing import CliRunner

from streamcompose.cli.broker_cmd import broker
from streamcompose.errors import BrokerError
from streamcompose.kafka.broker import (
    broker_status,
    ensure_kafka_classpath,
    start_broker,
    stop_broker,
)

pytestmark = pytest.mark.integration


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def port() -> int:
    """A free port pair (broker, controller) above 29092, below the ephemeral ports
    (``$STREAMCOMPOSE_TEST_PORT`` pins it, on a machine where ports are shared out)."""
    if pinned := os.environ.get("STREAMCOMPOSE_TEST_PORT"):
        return int(pinned)
    while True:
        port = random.randrange(29100, 32700, 2)
        if _bindable(port) and _bindable(port + 1):
            return port


@pytest.fixture
def data_dir(tmp_path: Path, port: int) -> Iterator[Path]:
    """A temporary data dir whose broker, if any, is stopped after the test."""
    yield tmp_path / "broker"
    stop_broker(port, tmp_path / "broker")


async def _create_and_produce(bootstrap: str, topic: str, value: bytes) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def _topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return await admin.list_topics()
    finally:
        await admin.close()


async def _first_value(bootstrap: str, topic: str) -> bytes:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        return (await asyncio.wait_for(consumer.getone(), timeout=30)).value
    finally:
        await consumer.stop()


async def test_data_survives_restart_until_fresh(port: int, data_dir: Path) -> None:
    info = start_broker(port, data_dir)
    assert info.running and info.pid is not None
    assert info.bootstrap == f"127.0.0.1:{port}"
    assert info.data_dir == data_dir and info.log_file.is_file()
    assert "Kafka Server started" in info.log_file.read_text()
    assert await _topics(info.bootstrap) == []
    await _create_and_produce(info.bootstrap, "persisted", b"hello")

    assert stop_broker(port, data_dir) is True
    assert not (data_dir / "broker.pid").exists()
    assert broker_status(port, data_dir).running is False
    assert stop_broker(port, data_dir) is False

    again = start_broker(port, data_dir)
    assert again.pid not in (None, info.pid)
    assert "persisted" in await _topics(again.bootstrap)
    assert await _first_value(again.bootstrap, "persisted") == b"hello"

    fresh = start_broker(port, data_dir, fresh=True)
    assert fresh.pid not in (None, again.pid)
    assert "persisted" not in await _topics(fresh.bootstrap)


def test_cli_start_status_stop(port: int, data_dir: Path) -> None:
    runner = CliRunner()
    where = ["--port", str(port), "--data-dir", str(data_dir)]

    stopped = runner.invoke(broker, ["status", "--json", *where])
    assert stopped.exit_code == 1
    assert json.loads(stopped.stdout)["running"] is False

    started = runner.invoke(broker, ["start", *where])
    assert started.exit_code == 0, started.output
    assert f"broker started on 127.0.0.1:{port}" in started.stdout
    again = runner.invoke(broker, ["start", *where])
    assert again.exit_code == 0 and "already running" in again.stdout

    status = runner.invoke(broker, ["status", "--json", *where])
    assert status.exit_code == 0
    assert json.loads(status.stdout) == {
        "running": True, "pid": int((data_dir / "broker.pid").read_text()), "port": port,
        "bootstrap": f"127.0.0.1:{port}", "data_dir": str(data_dir),
        "log_file": str(data_dir / "broker.log"),
        "nodes": [{"node_id": 1, "running": True, "pid": int((data_dir / "broker.pid").read_text()),
                   "port": port, "controller_port": port + 1, "data_dir": str(data_dir),
                   "log_file": str(data_dir / "broker.log")}],
    }

    assert "stopped" in runner.invoke(broker, ["stop", *where]).stdout
    assert runner.invoke(broker, ["status", *where]).stdout.startswith("broker: not running")


def test_start_refuses_a_port_taken_by_something_else(port: int, data_dir: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(BrokerError, match=f"127.0.0.1:{port} is in use"):
            start_broker(port, data_dir, timeout=10)
    assert not (data_dir / "broker.pid").exists()


def test_cli_reports_errors_with_exit_code_1(port: int, data_dir: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port + 1))
        squatter.listen()
        done = subprocess.run(
            [sys.executable, "-m", "streamcompose.cli", "broker", "start", "--port", str(port),
             "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=60, check=False,
        )
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: 127.0.0.1:{port + 1} is in use")


def test_missing_maven_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_HOME", raising=False)
    monkeypatch.setenv("STREAMCOMPOSE_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(BrokerError, match="`mvn` not found on PATH: install Apache Maven"):
        ensure_kafka_classpath()


def test_maven_failure_shows_its_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mvn").write_text("#!/bin/sh\necho '[ERROR] Could not resolve kafka_2.13'\nexit 1\n")
    (bin_dir / "mvn").chmod(0o755)
    monkeypatch.delenv("KAFKA_HOME", raising=False)
    monkeypatch.setenv("STREAMCOMPOSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(BrokerError, match=r"(?s)maven could not.*Could not resolve kafka_2\.13"):
        ensure_kafka_classpath()
    assert list((tmp_path / "home" / "kafka-4.1.1").iterdir()) == []


def test_kafka_home_replaces_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "libs").mkdir()
    monkeypatch.setenv("KAFKA_HOME", str(tmp_path))
    assert ensure_kafka_classpath() == str(tmp_path / "libs" / "*")
    monkeypatch.setenv("KAFKA_HOME", str(tmp_path / "nowhere"))
    with pytest.raises(BrokerError, match="not a Kafka release"):
        ensure_kafka_classpath()
