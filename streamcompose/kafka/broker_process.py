"""The processes of the local broker: its jars, launching a node, finding and stopping it.

A node's data dir holds its ``server.properties``, ``log4j2.properties``, storage
(``kraft/``), ``broker.pid``, ``broker.log`` and ``console.log``.

>>> alive(0)
False
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from importlib import resources
from pathlib import Path

from streamcompose.errors import BrokerError
from streamcompose.kafka.broker_config import Node, SecureListeners, server_properties

__all__ = ["KAFKA_VERSION", "alive", "cluster_id", "ensure_kafka_classpath", "home", "launch",
           "read_pid", "tail", "terminate"]

KAFKA_VERSION = "4.1.1"
STOP_TIMEOUT_S = 30.0

_LOG4J2_PROPERTIES = """\
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
"""


def ensure_kafka_classpath() -> str:
    """The Java classpath of the broker, downloading its jars with Maven on first use.

    Example (downloads the jars once)::

        classpath = ensure_kafka_classpath()
    """
    kafka_home = os.environ.get("KAFKA_HOME")
    libs = Path(kafka_home) / "libs" if kafka_home else home() / f"kafka-{KAFKA_VERSION}/libs"
    if kafka_home and not libs.is_dir():
        raise BrokerError(f"KAFKA_HOME={kafka_home} has no libs/ folder: not a Kafka release")
    if not libs.is_dir():
        _download_jars(libs)
    return str(libs / "*")



def home() -> Path:
    return Path(os.environ.get("STREAMCOMPOSE_HOME") or Path.home() / ".streamcompose")



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



def launch(node: Node, layout: list[Node], data_dir: Path, classpath: str, cluster_id: str,
            secure: SecureListeners | None) -> int:
    """Write the node's configuration, format its storage once, and spawn it detached."""
    java = _require("java", "a Java 17+ runtime (e.g. `apt-get install openjdk-17-jre-headless`)")
    data_dir.mkdir(parents=True, exist_ok=True)
    keystore = data_dir / "ssl-keystore.pem"
    if secure and secure.ssl_port is not None:
        if secure.ssl_cert is None or secure.ssl_key is None:
            raise BrokerError("a TLS listener needs the broker's certificate and key (PEM)")
        try:
            keystore.write_text(Path(secure.ssl_key).read_text()
                                + Path(secure.ssl_cert).read_text())
        except OSError as exc:
            raise BrokerError(f"cannot read the broker's TLS key and certificate: {exc}") from exc
        keystore.chmod(0o600)
    config = data_dir / "server.properties"
    config.write_text(server_properties(node, layout, data_dir / "kraft", secure, keystore))
    log4j = data_dir / "log4j2.properties"
    log4j.write_text(_LOG4J2_PROPERTIES.format(log_file=data_dir / "broker.log"))
    heap = "-Xmx512m" if len(layout) == 1 else "-Xmx384m"
    jvm = [java, heap, f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]
    if not (data_dir / "kraft" / "meta.properties").exists():
        _run([*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config),
              "--ignore-formatted", *(secure.scram_arguments() if secure else [])],
             "formatting the broker storage failed")
    # Detached in its own session; posix_spawn leaves no Popen to warn that it outlives us.
    with open(data_dir / "console.log", "ab") as console:
        out = console.fileno()
        pid = os.posix_spawn(java, [*jvm, "kafka.Kafka", str(config)], os.environ, setsid=True,
                             file_actions=[(os.POSIX_SPAWN_DUP2, out, 1),
                                           (os.POSIX_SPAWN_DUP2, out, 2),
                                           (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)])
    (data_dir / "broker.pid").write_text(f"{pid}\n")
    return pid


def cluster_id(data_dir: Path) -> str:
    """The persisted cluster id, a base64url 16-byte uuid as ``StorageTool random-uuid`` makes."""
    path = data_dir / "cluster.id"
    while not path.exists() or path.read_text().startswith("-"):  # as Kafka: no option-like id
        path.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
    return path.read_text()


def _run(command: list[str], failure: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BrokerError(f"{failure}:\n{tail(done.stdout + done.stderr)}")




def read_pid(data_dir: Path) -> int | None:
    """The pid in the data dir's pid file, if that process is a live Kafka broker."""
    with contextlib.suppress(OSError, ValueError):
        pid = int((data_dir / "broker.pid").read_text())
        return pid if alive(pid) else None
    return None


def alive(pid: int) -> bool:
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


def terminate(pid: int) -> None:
    """SIGTERM ``pid``, SIGKILL it after ``STOP_TIMEOUT_S``; return once it is gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):  # it may have just exited
            os.kill(pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not alive(pid):
            break
    with contextlib.suppress(ChildProcessError):  # our child: wait until its ports are closed
        os.waitpid(pid, 0)


def tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
