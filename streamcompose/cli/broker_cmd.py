"""``streamcompose broker start|stop|status``: the local single-node Kafka broker.

Example::

    $ streamcompose broker start --port 29092
    broker started on 127.0.0.1:29092 (pid 4242, data ~/.streamcompose/broker-29092)
    $ streamcompose broker status --port 29092 --json
    {"running": true, "pid": 4242, "port": 29092, ...}
    $ streamcompose broker stop --port 29092
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from streamcompose.kafka.broker import BrokerInfo, broker_status, start_broker, stop_broker

port_option = click.option(
    "--port", type=click.IntRange(1, 65534), default=9092, show_default=True,
    help="Broker port on 127.0.0.1; the controller uses PORT + 1.",
)
data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Config, data, pid file and logs.  [default: $STREAMCOMPOSE_HOME/broker-PORT]",
)


@click.group()
def broker() -> None:
    """Run a local single-node Apache Kafka broker (KRaft mode) on 127.0.0.1."""


@broker.command()
@port_option
@data_dir_option
@click.option("--fresh", is_flag=True, help="Stop the broker and wipe its data dir first.")
@click.option("--timeout", type=float, default=90.0, show_default=True,
              help="Seconds to wait for the broker to answer.")
def start(port: int, data_dir: Path | None, fresh: bool, timeout: float) -> None:
    """Start the broker (no-op if one answers) and wait until it answers."""
    was_running = not fresh and broker_status(port, data_dir).running
    info = start_broker(port, data_dir, fresh=fresh, timeout=timeout)
    state = "already running" if was_running else "started"
    pid = f"pid {info.pid}, " if info.pid else ""
    click.echo(f"broker {state} on {info.bootstrap} ({pid}data {info.data_dir})")


@broker.command()
@port_option
@data_dir_option
def stop(port: int, data_dir: Path | None) -> None:
    """Stop the broker started from the data dir (SIGTERM, SIGKILL after 30 s)."""
    if stop_broker(port, data_dir):  # found by its data dir, whatever port it listened on
        click.echo(f"broker started from {broker_status(port, data_dir).data_dir} stopped")
    else:
        click.echo(f"no broker started from {broker_status(port, data_dir).data_dir} is running")


@broker.command()
@port_option
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(port: int, data_dir: Path | None, as_json: bool) -> None:
    """Show whether the broker runs; exit code 1 when it does not."""
    info = broker_status(port, data_dir)
    click.echo(json.dumps(_as_dict(info)) if as_json else _as_text(info))
    if not info.running:
        raise SystemExit(1)


def _as_dict(info: BrokerInfo) -> dict[str, object]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(info).items()}


def _as_text(info: BrokerInfo) -> str:
    rows = {"broker": "running" if info.running else "not running", **_as_dict(info)}
    del rows["running"]
    return "\n".join(f"{key}: {value}" for key, value in rows.items() if value is not None)


COMMANDS = [broker]
