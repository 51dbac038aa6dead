"""Prometheus scraping of a deployment's workers.

Each deployed worker writes, once its metrics endpoint is up, a file-based service
discovery file ``<deployment>/targets/<agent>-<replica>.json`` naming its address and
labels (``topology``, ``agent``, ``replica``). A worker started again (on another port)
rewrites its file, and Prometheus follows such changes by itself, so the scrape
configuration of :func:`scrape_config` never goes stale.

>>> [line for line in scrape_config("digits", Path("/d/digits")).splitlines() if "- job" in line]
['- job_name: streamcompose-digits']
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

TARGETS_DIR = "targets"


def targets_file(state_file: Path) -> Path:
    """Where the worker whose state file is ``state_file`` (``<deployment>/workers/
    <agent>-<replica>.json``) announces its metrics endpoint."""
    return state_file.parent.parent / TARGETS_DIR / state_file.name


def write_target(state_file: Path, port: int, topology: str, agent: str, replica: int,
                 host: str = "127.0.0.1") -> Path:
    """Announce a worker's metrics endpoint for Prometheus's file service discovery."""
    path = targets_file(state_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": [f"{host}:{port}"], "labels": {
        "topology": topology, "agent": agent, "replica": str(replica)}}]))
    tmp.replace(path)
    return path


def scrape_config(name: str, deployment_dir: Path, interval: str = "15s") -> str:
    """A Prometheus configuration that scrapes every worker of deployment ``name``
    (whose files are in ``deployment_dir``); paste its job into an existing
    configuration, or run Prometheus with it as it is."""
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [{
            "job_name": f"streamcompose-{name}",
            "scrape_interval": interval,
            "honor_labels": True,  # the workers' own topology/agent/replica labels
            "file_sd_configs": [{
                "files": [str(deployment_dir / TARGETS_DIR / "*.json")],
                "refresh_interval": interval}],
        }],
    }
    return (f"# Prometheus scrape configuration of streamcompose deployment {name!r}\n"
            f"# (streamcompose render prometheus {name}); targets are discovered from the\n"
            "# files its workers write, so restarts on new ports need no new configuration.\n"
            + yaml.safe_dump(config, sort_keys=False))
