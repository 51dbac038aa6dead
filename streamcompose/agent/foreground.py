"""Running one worker in the foreground: the entry point of a container
(``streamcompose worker``) and of the workers a supervisor starts. Logs go to stderr, as
text or as one JSON object a line for log collectors; a worker that cannot start (its
model does not load, say) exits 1, one whose output cannot be stored exits 3, and
SIGTERM drains what was fetched, commits and exits 0.

>>> import logging
>>> record = logging.LogRecord("streamcompose.agent", logging.INFO, "f.py", 1,
...                            "agent %s running", ("cnn",), None)
>>> JsonFormatter().format(record)  # doctest: +ELLIPSIS
'{"time": "...", "level": "INFO", "logger": "streamcompose.agent", "message": "agent cnn running"}'
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click
import mode

from streamcompose.agent.base import WorkerBase
from streamcompose.topology import Topology, load_topology, load_topology_text

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, and the
    exception's traceback when there is one."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` writing to stderr in ``log_format``."""
    formatter = ({"()": f"{__name__}.JsonFormatter"} if log_format == "json"
                 else {"format": TEXT_FORMAT})
    return {"version": 1, "disable_existing_loggers": False,
            "formatters": {"default": formatter},
            "handlers": {"default": {"class": "logging.StreamHandler", "level": level.upper(),
                                     "stream": "ext://sys.stderr", "formatter": "default"}},
            "root": {"level": level.upper(), "handlers": ["default"]}}


def load_agent_topology(topology_file: str, agent: str, name: str | None,
                        base_dir: str | None) -> Topology:
    """The topology a worker runs: from its file, or from a deployment's snapshot whose
    relative paths resolve against ``base_dir``; raises a usage error for an unknown
    agent or a snapshot of another name."""
    if base_dir is None:
        topology = load_topology(topology_file, name)
    else:
        topology = load_topology_text(Path(topology_file).read_text(encoding="utf-8"), base_dir)
        if name is not None and name != topology.name:
            raise click.BadParameter(f"{topology_file} is topology {topology.name!r}, not "
                                     f"{name!r}", param_hint="--name")
    if agent not in topology.units():
        group = topology.group_of(agent)
        raise click.BadParameter(
            f"agent {agent!r} runs in the co-located group {group.name!r}: run the group"
            if group is not None else f"no agent {agent!r} in {topology_file} "
            f"(agents: {', '.join(topology.units())})")
    return topology


def run_worker(worker: WorkerBase, loglevel: str = "INFO", log_format: str = "text") -> None:
    """Run ``worker`` until SIGTERM or SIGINT; exits the process (1 if it failed)."""
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    sys.setswitchinterval(worker.settings.gil_switch_ms / 1000)
    mode.Worker(worker, loglevel=loglevel, daemon=True, stdout=None,
                logging_config=logging_config(log_format, loglevel),
                redirect_stdouts=False).execute_from_commandline()
