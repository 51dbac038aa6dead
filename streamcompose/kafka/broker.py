"""Control of a local single-node Apache Kafka broker (KRaft mode) on 127.0.0.1.

The jars of ``org.apache.kafka:kafka_2.13:4.1.1`` come from ``$KAFKA_HOME/libs``, or else
Maven resolves them once (``broker_pom.xml``) into ``$STREAMCOMPOSE_HOME/kafka-4.1.1/libs``
(``STREAMCOMPOSE_HOME`` defaults to ``~/.streamcompose``). The broker listens on ``PORT``,
its controller on ``PORT + 1``; config, data, pid file and logs live in the data dir,
``$STREAMCOMPOSE_HOME/broker-PORT`` by default. ``start_broker(29092).bootstrap`` is
``'127.0.0.1:29092'``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

from streamcompose.errors import BrokerError

__all__ = ["BrokerInfo", "broker_status", "ensure_kafka_classpath", "start_broker", "stop_broker"]

KAFKA_VERSION = "4.1.1"
HOST = "127.0.0.1"
STOP_TIMEOUT_S = 30.0

_SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{host}:{controller_port}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir}/kraft
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
num.partitions=1
transaction.partition.verification.enable=false
"""

_LOG4J2_PROPERTIES = """\
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
"""


@dataclasses.dataclass(frozen=True)
class BrokerInfo:
    """What is known about the broker on ``port`` (``pid`` is None when we did not start it).

    >>> BrokerInfo(False, None, 9092, "127.0.0.1:9092", Path("d"), Path("d/broker.log")).running
    False
    """

    running: bool
    pid: int | None
    port: int
    bootstrap: str
    data_dir: Path
    log_file: Path


def ensure_kafka_classpath() -> str:
    """The Java classpath of the broker, downloading its jars with Maven on first use.

    Example (downloads the jars once)::

        classpath = ensure_kafka_classpath()
    """
    kafka_home = os.environ.get("KAFKA_HOME")
    libs = Path(kafka_home) / "libs" if kafka_home else _home() / f"kafka-{KAFKA_VERSION}/libs"
    if kafka_home and not libs.is_dir():
        raise BrokerError(f"KAFKA_HOME={kafka_home} has no libs/ folder: not a Kafka release")
    if not libs.is_dir():
        _download_jars(libs)
    return str(libs / "*")


def start_broker(port: int = 9092, data_dir: Path | None = None, fresh: bool = False,
                 timeout: float = 90.0) -> BrokerInfo:
    """Start the broker, or reuse the one answering on ``port``; returns once it answers.
    ``fresh`` first stops the broker started from ``data_dir`` and wipes ``data_dir``.

    Example (needs Java and Maven)::

        info = start_broker(port=29092, fresh=True)
    """
    status = broker_status(port, data_dir)
    if fresh:
        stop_broker(port, status.data_dir)
        if any(status.data_dir.glob("*")) and not (status.data_dir / "server.properties").exists():
            raise BrokerError(f"refusing to wipe {status.data_dir}: not a broker data dir")
        shutil.rmtree(status.data_dir, ignore_errors=True)
    elif status.running:
        _wait_ready(status, time.monotonic() + timeout)
        return status
    _check_ports_free(port, status.data_dir)
    pid = _launch(port, status.data_dir, ensure_kafka_classpath())
    info = dataclasses.replace(status, running=True, pid=pid)
    _wait_ready(info, time.monotonic() + timeout)
    return info


def stop_broker(port: int = 9092, data_dir: Path | None = None) -> bool:
    """Stop the broker started from ``data_dir``; False when none was running.

    >>> stop_broker(port=29093, data_dir=Path("/nonexistent/streamcompose-doc"))
    False
    """
    data_dir = _data_dir(port, data_dir)
    pid = _read_pid(data_dir)
    if pid is not None:
        _terminate(pid)
    (data_dir / "broker.pid").unlink(missing_ok=True)
    return pid is not None


def broker_status(port: int = 9092, data_dir: Path | None = None) -> BrokerInfo:
    """The broker started from ``data_dir``, or any Kafka broker answering on ``port``.

    >>> broker_status(port=29092).bootstrap
    '127.0.0.1:29092'
    """
    data_dir, bootstrap = _data_dir(port, data_dir), f"{HOST}:{port}"
    pid = _read_pid(data_dir)
    running = pid is not None or _answers(bootstrap)
    return BrokerInfo(running, pid, port, bootstrap, data_dir, data_dir / "broker.log")


def _home() -> Path:
    return Path(os.environ.get("STREAMCOMPOSE_HOME") or Path.home() / ".streamcompose")


def _data_dir(port: int, data_dir: Path | None) -> Path:
    return Path(data_dir).absolute() if data_dir else _home() / f"broker-{port}"


def _require(tool: str, install: str) -> str:
    if path := shutil.which(tool):
        return path
    raise BrokerError(f"`{tool}` not found on PATH: install {install}")


def _download_jars(libs: Path) -> None:
    """Resolve the broker jars into ``libs`` (via a temporary folder, so never half-filled)."""
    mvn = _require("mvn", "Apache Maven (e.g. `apt-get install maven`) or set KAFKA_HOME")
    libs.parent.mkdir(parents=True, exist_ok=True)
    print(f"downloading Apache Kafka {KAFKA_VERSION} jars into {libs} ...", file=sys.stderr)
    pom = resources.files(__package__) / "broker_pom.xml"
    with tempfile.TemporaryDirectory(dir=libs.parent) as tmp, resources.as_file(pom) as pom_file:
        _run([mvn, "-q", "-B", "-f", str(pom_file), "dependency:copy-dependencies",
              f"-DoutputDirectory={tmp}/libs"], "maven could not resolve the Kafka jars")
        with contextlib.suppress(OSError):  # else another process filled libs meanwhile
            Path(tmp, "libs").rename(libs)


def _check_ports_free(port: int, data_dir: Path) -> None:
    for taken in (port, port + 1):
        try:  # with SO_REUSEADDR, as Kafka binds: a port in TIME_WAIT is free
            socket.create_server((HOST, taken)).close()
        except OSError:
            raise BrokerError(f"{HOST}:{taken} is in use, and not by a Kafka broker started "
                              f"from {data_dir}: free it or pick another --port") from None


def _launch(port: int, data_dir: Path, classpath: str) -> int:
    """Write the configuration, format the storage once, and spawn the broker detached."""
    java = _require("java", "a Java 17+ runtime (e.g. `apt-get install openjdk-17-jre-headless`)")
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "server.properties"
    config.write_text(_SERVER_PROPERTIES.format(
        host=HOST, port=port, controller_port=port + 1, data_dir=data_dir))
    log4j = data_dir / "log4j2.properties"
    log4j.write_text(_LOG4J2_PROPERTIES.format(log_file=data_dir / "broker.log"))
    jvm = [java, "-Xmx512m", f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]
    if not (data_dir / "kraft" / "meta.properties").exists():
        _run([*jvm, "kafka.tools.StorageTool", "format", "-t", _cluster_id(data_dir),
              "-c", str(config), "--ignore-formatted"], "formatting the broker storage failed")
    # Detached in its own session; posix_spawn leaves no Popen to warn that it outlives us.
    with open(data_dir / "console.log", "ab") as console:
        out = console.fileno()
        pid = os.posix_spawn(java, [*jvm, "kafka.Kafka", str(config)], os.environ, setsid=True,
                             file_actions=[(os.POSIX_SPAWN_DUP2, out, 1),
                                           (os.POSIX_SPAWN_DUP2, out, 2),
                                           (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)])
    (data_dir / "broker.pid").write_text(f"{pid}\n")
    return pid


def _cluster_id(data_dir: Path) -> str:
    """The persisted cluster id, a base64url 16-byte uuid as ``StorageTool random-uuid`` makes."""
    path = data_dir / "cluster.id"
    while not path.exists() or path.read_text().startswith("-"):  # as Kafka: no option-like id
        path.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
    return path.read_text()


def _run(command: list[str], failure: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BrokerError(f"{failure}:\n{_tail(done.stdout + done.stderr)}")


def _wait_ready(info: BrokerInfo, deadline: float) -> None:
    """Return once the broker answers metadata requests; raise if it dies or the deadline passes."""
    while not _answers(info.bootstrap):
        died = info.pid is not None and not _alive(info.pid)
        if died or time.monotonic() > deadline:
            why = "exited while starting" if died else f"did not answer on {info.bootstrap} in time"
            logs = [info.data_dir / "console.log", info.log_file]
            tail = "\n".join(_tail(log.read_text(errors="replace")) for log in logs if log.exists())
            raise BrokerError(f"the broker {why}:\n{tail}", bootstrap=info.bootstrap,
                              retriable=not died)
        time.sleep(0.5)


def _answers(bootstrap: str, timeout: float = 3.0) -> bool:
    """Whether a Kafka broker answers a metadata request on ``bootstrap``."""
    quiet = logging.getLogger("aiokafka")  # it logs each failed try: here that is an answer
    level = quiet.level
    quiet.setLevel(logging.CRITICAL + 1)
    try:
        with ThreadPoolExecutor(1) as pool:  # keeps the caller's event loop, if any, aside
            return pool.submit(asyncio.run, _bootstraps(bootstrap, timeout)).result()
    finally:
        quiet.setLevel(level)


async def _bootstraps(bootstrap: str, timeout: float) -> bool:
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await client.bootstrap()
    except KafkaError:
        return False
    finally:
        await client.close()
    return True


def _read_pid(data_dir: Path) -> int | None:
    """The pid in the data dir's pid file, if that process is a live Kafka broker."""
    with contextlib.suppress(OSError, ValueError):
        pid = int((data_dir / "broker.pid").read_text())
        return pid if _alive(pid) else None
    return None


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs a Kafka broker (reaping it first if it is our exited child)."""
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
        os.readlink(f"/proc/{pid}/exe")  # fails for zombies and kernel threads
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc").is_dir()  # no procfs (macOS): trust the pid
    except OSError:
        return False
    return not cmdline or b"kafka.Kafka" in cmdline  # empty while it is still exec-ing


def _terminate(pid: int) -> None:
    """SIGTERM ``pid``, SIGKILL it after ``STOP_TIMEOUT_S``; return once it is gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):  # it may have just exited
            os.kill(pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _alive(pid):
            break
    with contextlib.suppress(ChildProcessError):  # our child: wait until its ports are closed
        os.waitpid(pid, 0)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
