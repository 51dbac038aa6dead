"""Run one agent worker: ``python -m streamcompose.agent TOPOLOGY AGENT --bootstrap H:P``.

Deploy starts these for you; run one by hand to debug an agent in the foreground.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click
import mode

from streamcompose.agent.state import WorkerState
from streamcompose.agent.worker import AgentWorker
from streamcompose.join.worker import JoinWorker
from streamcompose.route.fallback import FallbackWorker
from streamcompose.topology import load_topology


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("topology_file", type=click.Path(exists=True, dir_okay=False))
@click.argument("agent")
@click.option("--name", default=None, help="Override the topology's name.")
@click.option("--bootstrap", default="127.0.0.1:9092", show_default=True)
@click.option("--replica", default=0, show_default=True, help="Replica index.")
@click.option("--state-file", type=click.Path(dir_okay=False), default=None,
              help="Where to write the worker's state for the supervisor.")
@click.option("--metrics-port", default=0, show_default=True, help="0 picks a free port.")
@click.option("--loglevel", default="INFO", show_default=True)
def main(topology_file: str, agent: str, name: str | None, bootstrap: str, replica: int,
         state_file: str | None, metrics_port: int, loglevel: str) -> None:
    """Run one replica of AGENT from TOPOLOGY_FILE until SIGTERM."""
    topology = load_topology(topology_file, name)
    if agent not in topology.agent_names:
        raise click.BadParameter(f"no agent {agent!r} in {topology_file} "
                                 f"(agents: {', '.join(topology.agent_names)})")
    state = WorkerState(Path(state_file) if state_file else None)
    worker_class = {"join": JoinWorker, "fallback": FallbackWorker}.get(
        topology.agent(agent).kind, AgentWorker)
    worker = worker_class(topology, agent, bootstrap, replica, state, metrics_port)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    mode.Worker(worker, loglevel=loglevel, daemon=True).execute_from_commandline()


if __name__ == "__main__":
    main()
