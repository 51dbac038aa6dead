"""The ``server.properties`` of the local brokers: one node or a KRaft cluster, plus
optional secured listeners (SASL/SCRAM, TLS) for trying out secured clients.

A cluster of N nodes runs N processes, each a broker *and* a controller (KRaft combined
mode, the N controllers forming the quorum). Node k (from 1) listens for clients on
``port + 2(k-1)`` and for the controllers on the port after it, so ``port`` itself is the
first node's client port and a working bootstrap address. Internal topics are replicated
``min(3, N)`` times with ``min.insync.replicas`` 2 from three nodes on.

>>> [(n.node_id, n.port, n.controller_port) for n in cluster_nodes(9292, 3)]
[(1, 9292, 9293), (2, 9294, 9295), (3, 9296, 9297)]
>>> replication_of(3), replication_of(1)
(3, 1)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

__all__ = ["HOST", "Node", "SecureListeners", "cluster_nodes", "min_insync_of",
           "replication_of", "server_properties"]

HOST = "127.0.0.1"
SCRAM_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")


@dataclasses.dataclass(frozen=True)
class Node:
    """One broker process of the local cluster."""

    node_id: int
    port: int
    controller_port: int

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"


@dataclasses.dataclass(frozen=True)
class SecureListeners:
    """Extra listeners of a single local broker. ``sasl_port``: SASL_PLAINTEXT with SCRAM
    (SHA-512 and SHA-256) for ``scram_users`` (name -> password), created when the
    storage is formatted. ``ssl_port``: TLS with ``ssl_cert`` (PEM, the broker's
    certificate chain) and ``ssl_key`` (PEM, an unencrypted PKCS#8 key); with
    ``ssl_client_ca`` clients must present a certificate that CA signed."""

    sasl_port: int | None = None
    scram_users: Mapping[str, str] = dataclasses.field(default_factory=dict, repr=False)
    ssl_port: int | None = None
    ssl_cert: Path | None = None
    ssl_key: Path | None = None
    ssl_client_ca: Path | None = None

    def ports(self) -> list[int]:
        return [p for p in (self.sasl_port, self.ssl_port) if p is not None]

    def scram_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments creating the SCRAM users."""
        return [arg for name, password in self.scram_users.items()
                for mechanism in SCRAM_MECHANISMS
                for arg in ("--add-scram", f"{mechanism}=[name={name},password={password}]")]


def cluster_nodes(port: int, nodes: int) -> list[Node]:
    return [Node(k, port + 2 * (k - 1), port + 2 * (k - 1) + 1) for k in range(1, nodes + 1)]


def replication_of(nodes: int) -> int:
    """The replication factor of topics on a cluster of ``nodes`` brokers."""
    return min(3, nodes)


def min_insync_of(nodes: int) -> int:
    """``min.insync.replicas`` of topics on a cluster of ``nodes`` brokers."""
    return 2 if nodes >= 3 else 1


def server_properties(node: Node, nodes: list[Node], log_dir: Path,
                      secure: SecureListeners | None = None,
                      keystore: Path | None = None) -> str:
    """The configuration of ``node``; ``keystore`` is the PEM file (key, then certificate
    chain) the TLS listener serves."""
    voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in nodes)
    listeners = {"PLAINTEXT": node.port, "CONTROLLER": node.controller_port}
    extra: list[str] = []
    if secure and secure.sasl_port is not None:
        listeners["SASL_PLAINTEXT"] = secure.sasl_port
        mechanisms = ",".join(SCRAM_MECHANISMS)
        extra += [f"sasl.enabled.mechanisms={mechanisms}",
                  f"listener.name.sasl_plaintext.sasl.enabled.mechanisms={mechanisms}",
                  *(f"listener.name.sasl_plaintext.{m.lower()}.sasl.jaas.config="
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                    for m in SCRAM_MECHANISMS)]
    if secure and secure.ssl_port is not None:
        listeners["SSL"] = secure.ssl_port
        extra += ["listener.name.ssl.ssl.keystore.type=PEM",
                  f"listener.name.ssl.ssl.keystore.location={keystore}"]
        if secure.ssl_client_ca is not None:
            extra += ["listener.name.ssl.ssl.truststore.type=PEM",
                      f"listener.name.ssl.ssl.truststore.location={secure.ssl_client_ca}",
                      "listener.name.ssl.ssl.client.auth=required"]
    if len(nodes) > 1:  # a dead node is fenced, and its partitions led elsewhere, in seconds
        extra += ["broker.session.timeout.ms=4000", "broker.heartbeat.interval.ms=1000"]
    replication, min_isr = replication_of(len(nodes)), min_insync_of(len(nodes))
    advertised = {name: port for name, port in listeners.items() if name != "CONTROLLER"}
    lines = [
        "process.roles=broker,controller",
        f"node.id={node.node_id}",
        f"controller.quorum.voters={voters}",
        "listeners=" + ",".join(f"{name}://{HOST}:{p}" for name, p in listeners.items()),
        "advertised.listeners=" + ",".join(f"{name}://{HOST}:{p}"
                                           for name, p in advertised.items()),
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=" + ",".join(
            f"{name}:{'PLAINTEXT' if name == 'CONTROLLER' else name}" for name in listeners),
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={log_dir}",
        f"offsets.topic.replication.factor={replication}",
        f"transaction.state.log.replication.factor={replication}",
        f"transaction.state.log.min.isr={min_isr}",
        f"default.replication.factor={replication}",
        "group.initial.rebalance.delay.ms=0",
        "num.partitions=1",
        "transaction.partition.verification.enable=false",
        *extra,
    ]
    return "\n".join(lines) + "\n"
