"""Control of a local Apache Kafka broker or cluster (KRaft mode) on 127.0.0.1.

The jars of ``org.apache.kafka:kafka_2.13:4.1.1`` come from ``$KAFKA_HOME/libs``, or else
Maven resolves them once (``broker_pom.xml``) into ``$STREAMCOMPOSE_HOME/kafka-4.1.1/libs``
(``STREAMCOMPOSE_HOME`` defaults to ``~/.streamcompose``). The broker listens on ``PORT``,
its controller on ``PORT + 1``; config, data, pid file and logs live in the data dir,
``$STREAMCOMPOSE_HOME/broker-PORT`` by default. ``start_broker(29092).bootstrap`` is
``'127.0.0.1:29092'``. ``nodes=3`` starts a 3-node cluster instead (one process per node,
each broker and controller, see :mod:`streamcompose.kafka.broker_config`), node k in
``DATA_DIR/node-k``; its bootstrap lists every node.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

from streamcompose.errors import BrokerError
from streamcompose.kafka.broker_config import HOST, Node, SecureListeners, cluster_nodes
from streamcompose.kafka.broker_process import (
    alive,
    cluster_id,
    ensure_kafka_classpath,
    home,
    launch,
    read_pid,
    tail,
    terminate,
)
from streamcompose.kafka.security import client_options

__all__ = ["BrokerInfo", "NodeInfo", "SecureListeners", "broker_status", "ensure_kafka_classpath",
           "start_broker", "stop_broker"]

CLUSTER_FILE = "cluster.json"


@dataclasses.dataclass(frozen=True)
class NodeInfo:
    """One node of a local broker (``pid`` is None when we did not start it)."""

    node_id: int
    running: bool
    pid: int | None
    port: int
    controller_port: int
    data_dir: Path
    log_file: Path


@dataclasses.dataclass(frozen=True)
class BrokerInfo:
    """What is known about the broker on ``port``: for a cluster, ``running`` when every
    node runs, ``pid`` the first node's, ``nodes`` each of them.

    >>> BrokerInfo(False, None, 9092, "127.0.0.1:9092", Path("d"), Path("d/broker.log")).running
    False
    """

    running: bool
    pid: int | None
    port: int
    bootstrap: str
    data_dir: Path
    log_file: Path
    nodes: tuple[NodeInfo, ...] = ()


def start_broker(port: int = 9092, data_dir: Path | None = None, fresh: bool = False,
                 timeout: float = 90.0, nodes: int | None = None,
                 secure: SecureListeners | None = None) -> BrokerInfo:
    """Start the broker (``nodes`` > 1: the cluster; default: as the data dir was, else
    1), or reuse the one answering on ``port``; returns once every node answers. Nodes
    of a cluster that are down are started again. ``fresh`` first stops the broker
    started from ``data_dir`` and wipes ``data_dir``.

    Example (needs Java and Maven)::

        info = start_broker(port=29092, fresh=True)
    """
    status = broker_status(port, data_dir)
    if fresh:
        stop_broker(port, status.data_dir)
        if any(status.data_dir.glob("*")) and not (status.data_dir / "server.properties").exists() \
                and not (status.data_dir / CLUSTER_FILE).exists():
            raise BrokerError(f"refusing to wipe {status.data_dir}: not a broker data dir")
        shutil.rmtree(status.data_dir, ignore_errors=True)
        status = broker_status(port, data_dir)
    count = _node_count(status.data_dir, port, nodes)
    if secure and secure.ports() and count > 1:
        raise BrokerError("secured listeners are for a single-node broker (nodes=1)")
    if status.running and len(status.nodes) == count:
        _wait_ready(status, time.monotonic() + timeout)
        return status
    layout = cluster_nodes(port, count)
    classpath = ensure_kafka_classpath()
    down = [n for n in layout if not _node_running(status, n.node_id)]
    _check_ports_free([p for n in down for p in (n.port, n.controller_port)]
                      + (secure.ports() if secure else []), status.data_dir)
    status.data_dir.mkdir(parents=True, exist_ok=True)
    if count > 1:
        (status.data_dir / CLUSTER_FILE).write_text(json.dumps({"nodes": count, "port": port}))
    identity = cluster_id(status.data_dir)

    def start(node: Node) -> int:
        return launch(node, layout, _node_dir(status.data_dir, node.node_id, count), classpath,
                      identity, secure)

    with ThreadPoolExecutor(max(1, len(down))) as pool:  # each formats its storage first: a JVM run
        list(pool.map(start, down))
    info = broker_status(port, data_dir)
    _wait_ready(info, time.monotonic() + timeout)
    return info


def stop_broker(port: int = 9092, data_dir: Path | None = None) -> bool:
    """Stop the broker (every node of the cluster) started from ``data_dir``; False when
    none was running.

    >>> stop_broker(port=29093, data_dir=Path("/nonexistent/streamcompose-doc"))
    False
    """
    data_dir = _data_dir(port, data_dir)
    count = _node_count(data_dir, port, None)
    dirs = [_node_dir(data_dir, k, count) for k in range(1, count + 1)]
    pids = [pid for d in dirs if (pid := read_pid(d)) is not None]
    with ThreadPoolExecutor(len(dirs)) as pool:  # nodes stop side by side
        list(pool.map(terminate, pids))
    for d in dirs:
        (d / "broker.pid").unlink(missing_ok=True)
    return bool(pids)


def broker_status(port: int = 9092, data_dir: Path | None = None) -> BrokerInfo:
    """The broker started from ``data_dir``, or any Kafka broker answering on ``port``.

    >>> broker_status(port=29092).bootstrap
    '127.0.0.1:29092'
    """
    data_dir = _data_dir(port, data_dir)
    count = _node_count(data_dir, port, None)
    infos = []
    for node in cluster_nodes(port, count):
        node_dir = _node_dir(data_dir, node.node_id, count)
        pid = read_pid(node_dir)
        running = pid is not None or (count == 1 and _answers(node.bootstrap, secured=True))
        infos.append(NodeInfo(node.node_id, running, pid, node.port, node.controller_port,
                              node_dir, node_dir / "broker.log"))
    bootstrap = ",".join(f"{HOST}:{n.port}" for n in infos)
    return BrokerInfo(all(n.running for n in infos), infos[0].pid, port, bootstrap, data_dir,
                      infos[0].log_file, tuple(infos))


def _data_dir(port: int, data_dir: Path | None) -> Path:
    return Path(data_dir).absolute() if data_dir else home() / f"broker-{port}"


def _node_dir(data_dir: Path, node_id: int, count: int) -> Path:
    return data_dir / f"node-{node_id}" if count > 1 else data_dir


def _node_count(data_dir: Path, port: int, asked: int | None) -> int:
    """The nodes of the broker of ``data_dir`` (1 unless a cluster was started there)."""
    try:
        found = json.loads((data_dir / CLUSTER_FILE).read_text())
    except (OSError, ValueError):
        found = {"nodes": 1, "port": port} if (data_dir / "server.properties").exists() else {}
    if not found:
        return asked or 1
    if asked is not None and asked != found["nodes"]:
        raise BrokerError(f"{data_dir} holds a {found['nodes']}-node broker, not {asked} "
                          "nodes: pass --fresh to wipe it, or another --data-dir")
    if found["port"] != port:
        raise BrokerError(f"{data_dir} holds a cluster on port {found['port']}, not {port}")
    return int(found["nodes"])


def _node_running(status: BrokerInfo, node_id: int) -> bool:
    return any(n.node_id == node_id and n.running for n in status.nodes)


def _check_ports_free(ports: list[int], data_dir: Path) -> None:
    for taken in ports:
        try:  # with SO_REUSEADDR, as Kafka binds: a port in TIME_WAIT is free
            socket.create_server((HOST, taken)).close()
        except OSError:
            raise BrokerError(f"{HOST}:{taken} is in use, and not by a Kafka broker started "
                              f"from {data_dir}: free it or pick another --port") from None


def _wait_ready(info: BrokerInfo, deadline: float) -> None:
    """Return once every node answers metadata requests listing all the cluster's brokers;
    raise if a node dies or the deadline passes."""
    for node in info.nodes:
        while not _answers(f"{HOST}:{node.port}", brokers=len(info.nodes)):
            died = node.pid is not None and not alive(node.pid)
            if died or time.monotonic() > deadline:
                why = ("exited while starting" if died
                       else f"did not answer on port {node.port} in time")
                logs = [node.data_dir / "console.log", node.log_file]
                logged = "\n".join(tail(log.read_text(errors="replace")) for log in logs
                                   if log.exists())
                raise BrokerError(f"broker node {node.node_id} {why}:\n{logged}",
                                  bootstrap=info.bootstrap, retriable=not died)
            time.sleep(0.5)


def _answers(bootstrap: str, timeout: float = 3.0, brokers: int = 1,
             secured: bool = False) -> bool:
    """Whether a Kafka broker answers a metadata request on ``bootstrap`` naming at least
    ``brokers`` brokers; ``secured``: over the connection's security settings, for a
    broker we did not start (ours listen in plain text on their port)."""
    quiet = logging.getLogger("aiokafka")  # it logs each failed try: here that is an answer
    level = quiet.level
    quiet.setLevel(logging.CRITICAL + 1)
    options = client_options() if secured else {}
    try:
        with ThreadPoolExecutor(1) as pool:  # keeps the caller's event loop, if any, aside
            return pool.submit(asyncio.run, _bootstraps(bootstrap, timeout, brokers,
                                                        options)).result()
    finally:
        quiet.setLevel(level)


async def _bootstraps(bootstrap: str, timeout: float, brokers: int,
                      options: dict[str, object]) -> bool:
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000),
                            **options)
    try:
        await client.bootstrap()
        return len(client.cluster.brokers()) >= brokers
    except KafkaError:
        return False
    finally:
        await client.close()
