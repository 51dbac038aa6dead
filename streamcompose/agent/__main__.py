"""Run one agent worker: ``python -m streamcompose.agent TOPOLOGY AGENT --bootstrap H:P``.

Deploy starts these for you, from the deployment's snapshot of the topology (with
``--base-dir``, the original file's folder) and with ``--parent-pid``, the supervisor,
whose death stops the worker; run one by hand to debug an agent in the foreground.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import click

from streamcompose.agent.foreground import load_agent_topology, run_worker
from streamcompose.agent.group import worker_class
from streamcompose.agent.standby import Standby
from streamcompose.agent.state import WorkerState

PARENT_POLL_S = 0.5
PARENT_GONE_EXIT_S = 15.0


def _exit_with_parent(parent_pid: int) -> None:
    """Stop gracefully once ``parent_pid`` is no longer this process's parent (it died),
    and exit anyway ``PARENT_GONE_EXIT_S`` later: the fallback to the supervisor's
    ``PR_SET_PDEATHSIG``, which also covers a supervisor that died before setting it."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(PARENT_GONE_EXIT_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("topology_file", type=click.Path(exists=True, dir_okay=False))
@click.argument("agent")
@click.option("--name", default=None, help="Override the topology's name.")
@click.option("--bootstrap", default="127.0.0.1:9092", show_default=True)
@click.option("--replica", default=0, show_default=True, help="Replica index.")
@click.option("--state-file", type=click.Path(dir_okay=False), default=None,
              help="Where to write the worker's state for the supervisor.")
@click.option("--base-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Resolve relative model paths and python modules against this folder "
                   "instead of TOPOLOGY_FILE's.")
@click.option("--parent-pid", type=int, default=None,
              help="Exit when this process (the supervisor) is no longer the parent.")
@click.option("--metrics-port", default=0, show_default=True, help="0 picks a free port.")
@click.option("--standby", "standby_file", type=click.Path(dir_okay=False), default=None,
              help="Load and warm the model, write the state here, then wait for SIGUSR1 "
                   "before joining (a rolling upgrade's new worker).")
@click.option("--loglevel", default="INFO", show_default=True)
def main(topology_file: str, agent: str, name: str | None, bootstrap: str, replica: int,
         state_file: str | None, base_dir: str | None, parent_pid: int | None,
         metrics_port: int, standby_file: str | None, loglevel: str) -> None:
    """Run one replica of AGENT (an agent, or a co-located group of agents) from
    TOPOLOGY_FILE until SIGTERM."""
    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    topology = load_agent_topology(topology_file, agent, name, base_dir)
    state = WorkerState(Path(standby_file or state_file) if standby_file or state_file else None)
    standby = Standby(Path(state_file) if state_file else None) if standby_file else None
    run_worker(worker_class(topology, agent)(topology, agent, bootstrap, replica, state,
                                            metrics_port, standby=standby), loglevel)

if __name__ == "__main__":
    main()
