"""``streamcompose worker`` (one worker in the foreground, a container's entry point) and
``streamcompose topics create`` (the topology's topics, idempotent: an init job's step)."""

from __future__ import annotations

import json
import socket
import zlib

import click

from streamcompose.agent.foreground import LOG_FORMATS, load_agent_topology, run_worker
from streamcompose.cli.deploy_cmd import plain_name
from streamcompose.cli.main import bootstrap_option
from streamcompose.topology import load_topology

DEFAULT_METRICS_PORT = 9100


def replica_number(value: str) -> int:
    """``--replica``: a number, or ``auto``: a stable number from the host name (a pod's
    name), so that the pods of one Deployment are distinct group members.

    >>> replica_number("2")
    2
    >>> replica_number("auto") == replica_number("auto") < 1_000_000
    True
    """
    if value == "auto":
        return zlib.crc32(socket.gethostname().encode()) % 1_000_000
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise click.BadParameter(f"{value!r} is neither a number >= 0 nor 'auto'",
                                 param_hint="--replica")
    return number


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.argument("agent")
@bootstrap_option
@click.option("--name", default=None, callback=plain_name,
              help="Run the agent of FILE deployed under this name (with --base-dir, "
                   "FILE must already bear it, as a deployment snapshot does).")
@click.option("--base-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Resolve relative model paths and python modules against this folder "
                   "instead of FILE's (a topology mounted apart from the models).")
@click.option("--replica", default="0", show_default=True,
              help="Replica number, or 'auto' (from the host name: one per pod).")
@click.option("--metrics-port", default=DEFAULT_METRICS_PORT, show_default=True,
              help="Port of /metrics, /healthz and /readyz (0: a free one).")
@click.option("--metrics-host", default="0.0.0.0", show_default=True,
              help="Interface the metrics port listens on.")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text",
              show_default=True, help="Logs on stderr as text or one JSON object a line.")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(file: str, agent: str, bootstrap: str, name: str | None, base_dir: str | None,
           replica: str,
           metrics_port: int, metrics_host: str, log_format: str, loglevel: str) -> None:
    """Run one worker of AGENT from FILE in the foreground until SIGTERM.

    The entry point of a container: logs go to stderr, SIGTERM drains the records
    fetched, commits and exits 0; a worker that cannot start exits 1. Its metrics port
    serves /metrics, /healthz (alive) and /readyz (model loaded and warmed, group joined).

    Example: streamcompose worker topologies/digits_cascade.yaml cnn --log-format json
    """
    from streamcompose.agent.group import worker_class

    topology = load_agent_topology(file, agent, name, base_dir)
    w = worker_class(topology, agent)(topology, agent, bootstrap, replica_number(replica),
                                      None, metrics_port)
    w.metrics_host = metrics_host
    run_worker(w, loglevel, log_format)


@click.group()
def topics() -> None:
    """The Kafka topics of a topology."""


@topics.command("create")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@bootstrap_option
@click.option("--name", default=None, callback=plain_name,
              help="Create the topics of FILE deployed under this name.")
@click.option("--json", "as_json", is_flag=True, help="Print topic -> partitions as JSON.")
def create(file: str, bootstrap: str, name: str | None, as_json: bool) -> None:
    """Create the topics of FILE that do not exist yet (idempotent; deploy runs it too).

    Example: streamcompose topics create topologies/digits_cascade.yaml
    """
    from streamcompose.deploy.control import create_topics

    counts = create_topics(load_topology(file, name), bootstrap)
    if as_json:
        click.echo(json.dumps(counts))
        return
    for topic, partitions in counts.items():
        click.echo(f"{topic}\t{partitions} partitions")


COMMANDS = [worker, topics]
