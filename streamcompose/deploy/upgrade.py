"""Upgrading one agent's model on a running deployment, and rolling it back.

The new model is checked first (the topology it makes is loaded and its model files read,
no user code run); then the supervisor carries the upgrade out replica by replica
(:mod:`streamcompose.deploy.rolling`) while this waits and reports progress.

Example (needs a running deployment)::

    upgrade("digits", "cnn", path="/tmp/v2/digits_cnn.pt", version="2")
    rollback("digits", "cnn")
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from streamcompose.deploy.registry import Deployment, signal_deployment_process
from streamcompose.errors import DeploymentError
from streamcompose.runtimes import check_models
from streamcompose.topology import colocate
from streamcompose.topology.loader import topology_from_document
from streamcompose.topology.model import Topology
from streamcompose.topology.versions import agent_version
from streamcompose.topology.yamlsource import read_yaml_text

UPGRADE_TIMEOUT_S = 900.0
POLL_S = 0.2


def upgrade(name: str, agent: str, *, path: str | Path | None = None,
            entrypoint: str | None = None, version: str | None = None,
            options: dict[str, Any] | None = None, timeout: float = UPGRADE_TIMEOUT_S,
            progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Replace ``agent``'s model in deployment ``name``: a new model file (``path``) or
    ``entrypoint``, ``options`` merged over the current ones (a key set to None is
    removed), ``version`` (else the content hash). Returns the upgrade's summary once every
    replica runs the new model; raises :class:`DeploymentError` if it cannot."""
    d = Deployment(name)
    data = _snapshot(d)
    model = dict(_model(data, agent, name))
    if path is not None:
        model.pop("entrypoint", None)
        model["path"] = str(Path(path).resolve())
    if entrypoint is not None:
        model.pop("path", None)
        model["entrypoint"] = entrypoint
    for key, value in (options or {}).items():
        merged = dict(model.get("options") or {})
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
        model["options"] = merged
    model.pop("version", None)
    if version is not None:
        model["version"] = version
    return _roll(d, data, agent, model, "upgrade", timeout, progress)


def rollback(name: str, agent: str, *, timeout: float = UPGRADE_TIMEOUT_S,
             progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Return ``agent`` of deployment ``name`` to the model its last upgrade replaced,
    the same way as an upgrade."""
    d = Deployment(name)
    data = _snapshot(d)
    _model(data, agent, name)
    stack = d.read(d.history_file).get("previous", {}).get(agent, [])
    if not stack:
        raise DeploymentError(f"{agent!r} of {name!r} has no earlier version to roll back "
                              "to (it was never upgraded, or every upgrade was rolled back)",
                              topology=name)
    return _roll(d, data, agent, stack[-1]["model"], "rollback", timeout, progress)


def _snapshot(d: Deployment) -> dict[str, Any]:
    d.manifest()  # raises when there is no such deployment
    return yaml.safe_load(d.snapshot_file.read_text(encoding="utf-8"))


def _model(data: dict[str, Any], agent: str, name: str) -> dict[str, Any]:
    agents = data.get("agents") or {}
    if agent not in agents:
        raise DeploymentError(f"no agent {agent!r} in {name!r} (agents: "
                              f"{', '.join(agents)})", topology=name)
    model = agents[agent].get("model")
    if not isinstance(model, dict):
        with_models = [a for a, spec in agents.items() if isinstance(spec.get("model"), dict)]
        raise DeploymentError(f"{agent!r} of {name!r} has no model to upgrade (agents with "
                              f"a model: {', '.join(with_models) or 'none'})", topology=name)
    return model


def _roll(d: Deployment, data: dict[str, Any], agent: str, model: dict[str, Any], kind: str,
          timeout: float, progress: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    m = d.manifest()
    current = _load(yaml.safe_dump(data, sort_keys=False), d.snapshot_file, m["base_dir"])
    old_model = data["agents"][agent]["model"]
    data["agents"][agent]["model"] = model
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    nxt = check_models(_load(text, d.next_snapshot_file, m["base_dir"]))
    old, new = agent_version(current, agent), agent_version(nxt, agent)
    if old == new:
        raise DeploymentError(f"{agent!r} of {d.name!r} already runs version {old}; give "
                              "another model or --version", topology=d.name)
    sup = m.get("supervisor_pid")
    running = d.supervisor().get("upgrade", {})
    if running and running.get("state") not in ("done", "failed"):
        raise DeploymentError(f"an upgrade of {running.get('agent')!r} is under way in "
                              f"{d.name!r}; wait for it (streamcompose status {d.name})",
                              topology=d.name)
    request = {"id": uuid.uuid4().hex, "kind": kind, "agent": agent,
               "unit": colocate.unit_of(nxt, agent), "from_version": old,
               "to_version": new, "from_model": old_model, "asked_at": time.time()}
    d.next_snapshot_file.write_text(text, encoding="utf-8")
    d.write(d.upgrade_file, request)
    if not signal_deployment_process(sup, d.name, signal.SIGHUP):
        d.upgrade_file.unlink(missing_ok=True)
        d.next_snapshot_file.unlink(missing_ok=True)
        raise DeploymentError(f"the supervisor of {d.name!r} is not running; deploy it again",
                              topology=d.name)
    return _wait(d, request["id"], timeout, progress)


def _load(text: str, file: Path, base_dir: str) -> Topology:
    """The topology in ``text``, its errors naming ``file`` (where it is, or will be)."""
    return topology_from_document(read_yaml_text(text, str(file)), Path(base_dir).resolve())


def _wait(d: Deployment, request_id: str, timeout: float,
          progress: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        summary = d.supervisor().get("upgrade", {})
        if summary.get("id") == request_id:
            if summary != seen and progress is not None:
                progress(summary)
            seen = summary
            if summary["state"] == "done":
                return summary
            if summary["state"] == "failed":
                raise DeploymentError(f"{summary['kind']} of {summary['agent']!r} failed: "
                                      f"{summary['error']}", topology=d.name)
        time.sleep(POLL_S)
    raise DeploymentError(f"the upgrade is still under way after {timeout:.0f}s "
                          f"(streamcompose status {d.name} shows its progress)",
                          topology=d.name)
