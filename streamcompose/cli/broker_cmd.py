"""``streamcompose broker start|stop|status``: the local Kafka broker or cluster.

Example::

    $ streamcompose broker start --port 29092
    broker started on 127.0.0.1:29092 (pid 4242, data ~/.streamcompose/broker-29092)
    $ streamcompose broker start --port 29192 --nodes 3
    $ streamcompose broker status --port 29092 --json
    {"running": true, "pid": 4242, "port": 29092, ..., "nodes": [{"node_id": 1, ...}]}
    $ streamcompose broker stop --port 29092
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from streamcompose.cli.main import kafka_config_option
from streamcompose.kafka.broker import (
    BrokerInfo,
    SecureListeners,
    broker_status,
    start_broker,
    stop_broker,
)
from streamcompose.kafka.security import load_security

port_option = click.option(
    "--port", type=click.IntRange(1, 65534), default=9092, show_default=True,
    help="Broker port on 127.0.0.1 (of the first node); the controller uses PORT + 1, "
         "node k of a cluster PORT + 2(k-1) and the port after it.",
)
data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Config, data, pid file and logs.  [default: $STREAMCOMPOSE_HOME/broker-PORT]",
)
pem = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group()
def broker() -> None:
    """Run a local Apache Kafka broker, or a cluster of them (KRaft mode), on 127.0.0.1."""


@broker.command()
@port_option
@data_dir_option
@click.option("--nodes", type=click.IntRange(1, 9), default=None,
              help="Nodes of the cluster, each broker and controller.  [default: 1, or as "
                   "the data dir was started]")
@click.option("--fresh", is_flag=True, help="Stop the broker and wipe its data dir first.")
@click.option("--timeout", type=float, default=90.0, show_default=True,
              help="Seconds to wait for the broker to answer.")
@click.option("--sasl-port", type=click.IntRange(1, 65535), default=None,
              help="Also listen with SASL_PLAINTEXT (SCRAM-SHA-512/256) here; the user of "
                   "the Kafka client settings (sasl.username) is created.")
@click.option("--ssl-port", type=click.IntRange(1, 65535), default=None,
              help="Also listen with TLS here (needs --ssl-cert and --ssl-key).")
@click.option("--ssl-cert", type=pem, help="The broker's certificate chain (PEM).")
@click.option("--ssl-key", type=pem, help="The broker's private key (PEM, unencrypted PKCS#8).")
@click.option("--ssl-client-ca", type=pem,
              help="Require client certificates signed by this CA (PEM) on the TLS port.")
@kafka_config_option
def start(port: int, data_dir: Path | None, nodes: int | None, fresh: bool, timeout: float,
          sasl_port: int | None, ssl_port: int | None, ssl_cert: Path | None,
          ssl_key: Path | None, ssl_client_ca: Path | None) -> None:
    """Start the broker (no-op if it runs; a cluster's nodes that are down are started
    again) and wait until every node answers."""
    if ssl_port is not None and (ssl_cert is None or ssl_key is None):
        raise click.UsageError("--ssl-port needs --ssl-cert and --ssl-key")
    secure = None
    if sasl_port is not None or ssl_port is not None:
        users = {}
        if sasl_port is not None:
            settings = load_security()
            if not settings.sasl:
                raise click.UsageError("--sasl-port creates the SASL user of the Kafka client "
                                       "settings: set sasl.username and sasl.password with "
                                       "--kafka-config or STREAMCOMPOSE_KAFKA_SASL_*")
            users = {settings.username: settings.password}
        secure = SecureListeners(sasl_port, users, ssl_port, ssl_cert, ssl_key, ssl_client_ca)
    was_running = not fresh and broker_status(port, data_dir).running
    info = start_broker(port, data_dir, fresh=fresh, timeout=timeout, nodes=nodes,
                        secure=secure)
    state = "already running" if was_running else "started"
    pids = ", ".join(str(n.pid) for n in info.nodes if n.pid)
    pid = f"pid {pids}, " if pids else ""
    click.echo(f"broker {state} on {info.bootstrap} ({pid}data {info.data_dir})")


@broker.command()
@port_option
@data_dir_option
def stop(port: int, data_dir: Path | None) -> None:
    """Stop the broker (every node) started from the data dir (SIGTERM, SIGKILL after 30 s)."""
    if stop_broker(port, data_dir):  # found by its data dir, whatever port it listened on
        click.echo(f"broker started from {broker_status(port, data_dir).data_dir} stopped")
    else:
        click.echo(f"no broker started from {broker_status(port, data_dir).data_dir} is running")


@broker.command()
@port_option
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@kafka_config_option
def status(port: int, data_dir: Path | None, as_json: bool) -> None:
    """Show whether the broker (each node) runs; exit code 1 when one does not."""
    info = broker_status(port, data_dir)
    click.echo(json.dumps(_as_dict(info)) if as_json else _as_text(info))
    if not info.running:
        raise SystemExit(1)


def _plain(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _as_dict(info: BrokerInfo) -> dict[str, object]:
    return {k: _plain(v) for k, v in dataclasses.asdict(info).items()}


def _as_text(info: BrokerInfo) -> str:
    rows = {"broker": "running" if info.running else "not running", **_as_dict(info)}
    del rows["running"], rows["nodes"]
    lines = [f"{key}: {value}" for key, value in rows.items() if value is not None]
    if len(info.nodes) > 1:
        lines += [f"node {n.node_id}: {'running' if n.running else 'NOT RUNNING'}, pid "
                  f"{n.pid or '-'}, port {n.port}, controller {n.controller_port}, "
                  f"log {n.log_file}" for n in info.nodes]
    return "\n".join(lines)


COMMANDS = [broker]
