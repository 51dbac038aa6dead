"""Where deployments keep their files, under ``$STREAMCOMPOSE_HOME/deployments/<name>/``:

* ``deployment.json`` – topology file, bootstrap, topics, supervisor pid,
* ``topology.yaml`` – the topology as deployed (a snapshot every worker runs),
* ``topology.next.yaml``, ``upgrade.json`` – an upgrade asked for, until the supervisor
  takes it; ``history.json`` – the models each upgrade replaced, for rollbacks,
* ``workers/<agent>-<replica>.json`` – each worker's own state (pid, status, metrics port),
* ``supervisor.json`` – worker pids and restart counts kept by the supervisor,
* ``logs/`` – one log file per worker and one for the supervisor.

>>> import os, tempfile
>>> os.environ["STREAMCOMPOSE_HOME"] = tempfile.mkdtemp()
>>> d = Deployment("demo")
>>> d.worker_state_file("inc", 0).name
'inc-0.json'
>>> Deployment("../x")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamcompose.errors.DeploymentError: '../x' is not a deployment name (letters, digits, ...)
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

from streamcompose.errors import DeploymentError
from streamcompose.observe.prometheus_config import TARGETS_DIR

NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")
SUPERVISOR_MODULE = "streamcompose.deploy.supervisor"
WORKER_MODULE = "streamcompose.agent"


def check_name(name: str) -> str:
    """A deployment name is a plain name, never a path; returns it or raises."""
    if not _plain(name):
        raise DeploymentError(f"{name!r} is not a deployment name (letters, digits, '.', '_' "
                              "and '-'; no '/', no '..')", topology=name)
    return name


def _plain(name: str) -> bool:
    return bool(NAME_RE.match(name)) and ".." not in name and name != "."


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


def runs_deployment(pid: int | None, name: str) -> bool:
    """Whether ``pid`` is a live supervisor or worker of deployment ``name``, as its
    command line says: ``-m SUPERVISOR_MODULE NAME`` or ``-m WORKER_MODULE ... --name
    NAME``. A pid the system has since given to another process is not."""
    if not pid_alive(pid):
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    for i, arg in enumerate(args[:-1]):
        rest = args[i + 2:]
        if arg == "-m" and args[i + 1] == SUPERVISOR_MODULE:
            return rest[:1] == [name]
        if arg == "-m" and args[i + 1] == WORKER_MODULE:
            return ["--name", name] in (rest[j:j + 2] for j in range(len(rest)))
    return False


def signal_deployment_process(pid: int | None, name: str, signum: int) -> bool:
    """Send ``signum`` to ``pid`` if it is a process of deployment ``name``; True if sent.
    The check and the signal go through one pidfd, so a reused pid is never signalled."""
    if not pid:
        return False
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if not runs_deployment(pid, name):
            return False
        signal.pidfd_send_signal(fd, signum)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


class Deployment:
    """The files of one deployed topology."""

    def __init__(self, name: str) -> None:
        self.name = check_name(name)
        self.dir = home() / "deployments" / name

    @property
    def manifest_file(self) -> Path:
        return self.dir / "deployment.json"

    @property
    def snapshot_file(self) -> Path:
        return self.dir / "topology.yaml"

    @property
    def supervisor_file(self) -> Path:
        return self.dir / "supervisor.json"

    @property
    def next_snapshot_file(self) -> Path:
        return self.dir / "topology.next.yaml"

    @property
    def upgrade_file(self) -> Path:
        return self.dir / "upgrade.json"

    @property
    def history_file(self) -> Path:
        return self.dir / "history.json"

    def worker_state_file(self, agent: str, replica: int) -> Path:
        return self.dir / "workers" / f"{agent}-{replica}.json"

    def standby_state_file(self, agent: str, replica: int) -> Path:
        """The state file of a worker warming up to take over ``agent-replica``."""
        return self.dir / "workers" / f"{agent}-{replica}.standby.json"

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
        _write_text(self.manifest_file, json.dumps(data, indent=1))

    def write_snapshot(self, text: str) -> None:
        _write_text(self.snapshot_file, text)

    def supervisor(self) -> dict[str, Any]:
        return _read_json(self.supervisor_file)

    def read(self, path: Path) -> dict[str, Any]:
        """One of the deployment's JSON files, or ``{}``."""
        return _read_json(path)

    def write(self, path: Path, data: dict[str, Any]) -> None:
        _write_text(path, json.dumps(data, indent=1))

    def write_supervisor(self, data: dict[str, Any]) -> None:
        _write_text(self.supervisor_file, json.dumps(data, indent=1))

    def worker_state(self, agent: str, replica: int) -> dict[str, Any]:
        return _read_json(self.worker_state_file(agent, replica))

    def processes(self) -> dict[int, str]:
        """The live processes of this deployment, pid -> role (``supervisor`` or a
        worker's ``agent-replica``), from every pid its files record, each checked to be
        its own."""
        recorded = [("supervisor", _read_json(self.manifest_file).get("supervisor_pid"))]
        recorded += [(worker, info.get("pid"))
                     for worker, info in self.supervisor().get("workers", {}).items()]
        recorded += [(f.stem, _read_json(f).get("pid"))
                     for f in sorted((self.dir / "workers").glob("*.json"))]
        return {pid: role for role, pid in reversed(recorded)
                if pid and runs_deployment(pid, self.name)}

    def clear_workers(self) -> None:
        """Forget the workers' state files and their Prometheus targets."""
        for folder in ("workers", TARGETS_DIR):
            for f in (self.dir / folder).glob("*.json"):
                f.unlink()

    def remove_manifest(self) -> None:
        self.manifest_file.unlink(missing_ok=True)


def list_deployments() -> list[str]:
    """Names of the topologies deployed (running or not yet cleaned up)."""
    root = home() / "deployments"
    return sorted(p.parent.name for p in root.glob("*/deployment.json")
                  if _plain(p.parent.name))
