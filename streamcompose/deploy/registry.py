"""Where deployments keep their files, under ``$STREAMCOMPOSE_HOME/deployments/<name>/``:

* ``deployment.json`` – topology file, bootstrap, topics, supervisor pid,
* ``workers/<agent>-<replica>.json`` – each worker's own state (pid, status, metrics port),
* ``supervisor.json`` – worker pids and restart counts kept by the supervisor,
* ``logs/`` – one log file per worker and one for the supervisor.

>>> import os, tempfile
>>> os.environ["STREAMCOMPOSE_HOME"] = tempfile.mkdtemp()
>>> d = Deployment("demo")
>>> d.worker_state_file("inc", 0).name
'inc-0.json'
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from streamcompose.errors import DeploymentError


def home() -> Path:
    """streamcompose's own folder: ``$STREAMCOMPOSE_HOME`` or ``~/.streamcompose``."""
    return Path(os.environ.get("STREAMCOMPOSE_HOME") or Path.home() / ".streamcompose")


def pid_alive(pid: int | None) -> bool:
    """Whether a process with that pid runs (and is not a zombie)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


class Deployment:
    """The files of one deployed topology."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dir = home() / "deployments" / name

    @property
    def manifest_file(self) -> Path:
        return self.dir / "deployment.json"

    @property
    def supervisor_file(self) -> Path:
        return self.dir / "supervisor.json"

    def worker_state_file(self, agent: str, replica: int) -> Path:
        return self.dir / "workers" / f"{agent}-{replica}.json"

    def log_file(self, worker: str) -> Path:
        return self.dir / "logs" / f"{worker}.log"

    def manifest(self) -> dict[str, Any]:
        """The deployment's manifest; raises if it was never deployed or was stopped."""
        data = _read_json(self.manifest_file)
        if not data:
            known = ", ".join(list_deployments()) or "none"
            raise DeploymentError(f"no deployment named {self.name!r} (deployed: {known})",
                                  topology=self.name)
        return data

    def exists(self) -> bool:
        return self.manifest_file.exists()

    def write_manifest(self, data: dict[str, Any]) -> None:
        _write_json(self.manifest_file, data)

    def supervisor(self) -> dict[str, Any]:
        return _read_json(self.supervisor_file)

    def write_supervisor(self, data: dict[str, Any]) -> None:
        _write_json(self.supervisor_file, data)

    def worker_state(self, agent: str, replica: int) -> dict[str, Any]:
        return _read_json(self.worker_state_file(agent, replica))

    def clear_workers(self) -> None:
        for f in (self.dir / "workers").glob("*.json"):
            f.unlink()

    def remove_manifest(self) -> None:
        self.manifest_file.unlink(missing_ok=True)


def list_deployments() -> list[str]:
    """Names of the topologies deployed (running or not yet cleaned up)."""
    root = home() / "deployments"
    return sorted(p.parent.name for p in root.glob("*/deployment.json"))
