"""Prometheus scraping of a deployment's workers.

Each deployed worker writes, once its metrics endpoint is up, a file-based service
discovery file ``<deployment>/targets/<agent>-<replica>.json`` naming its address and
labels (``topology``, ``agent``, ``replica``); a supervisor that autoscales announces its
own endpoint (``streamcompose_autoscale_decisions_total``) in ``targets/supervisor.json``
(labels ``topology`` and ``role="supervisor"``). A worker started again (on another
port) rewrites its file, and Prometheus follows such changes by itself, so the scrape
configuration of :func:`scrape_config` never goes stale.

>>> [line for line in scrape_config("digits", Path("/d/digits")).splitlines() if "- job" in line]
['- job_name: streamcompose-digits']
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

TARGETS_DIR = "targets"
SUPERVISOR_TARGET = "supervisor.json"  # worker files are <agent>-<replica>.json


def targets_file(state_file: Path) -> Path:
    """Where the worker whose state file is ``state_file`` (``<deployment>/workers/
    <agent>-<replica>.json``) announces its metrics endpoint."""
    return state_file.parent.parent / TARGETS_DIR / state_file.name


def write_target(state_file: Path, port: int, topology: str, agent: str, replica: int,
                 host: str = "127.0.0.1") -> Path:
    """Announce a worker's metrics endpoint for Prometheus's file service discovery."""
    return _announce(targets_file(state_file), f"{host}:{port}", {
        "topology": topology, "agent": agent, "replica": str(replica)})


def write_supervisor_target(deployment_dir: Path, port: int, topology: str,
                            host: str = "127.0.0.1") -> Path:
    """Announce the metrics endpoint of a deployment's (autoscaling) supervisor.

    >>> import json, tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> json.loads(write_supervisor_target(d, 9200, "digits").read_text())[0]["labels"]
    {'topology': 'digits', 'role': 'supervisor'}
    """
    return _announce(deployment_dir / TARGETS_DIR / SUPERVISOR_TARGET, f"{host}:{port}",
                     {"topology": topology, "role": "supervisor"})


def _announce(path: Path, address: str, labels: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": [address], "labels": labels}]))
    tmp.replace(path)
    return path


def scrape_config(name: str, deployment_dir: Path, interval: str = "15s") -> str:
    """A Prometheus configuration that scrapes every worker of deployment ``name``
    (whose files are in ``deployment_dir``), and its supervisor when it autoscales;
    paste its job into an existing configuration, or run Prometheus with it as it is."""
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [{
            "job_name": f"streamcompose-{name}",
            "scrape_interval": interval,
            "honor_labels": True,  # the metrics' own topology/agent/replica labels
            "file_sd_configs": [{
                "files": [str(deployment_dir / TARGETS_DIR / "*.json")],
                "refresh_interval": interval}],
        }],
    }
    return (f"# Prometheus scrape configuration of streamcompose deployment {name!r}\n"
            f"# (streamcompose render prometheus {name}); targets are discovered from the\n"
            "# files its workers (and supervisor) write, so restarts on new ports need no new\n"
            "# configuration.\n"
            + yaml.safe_dump(config, sort_keys=False))
