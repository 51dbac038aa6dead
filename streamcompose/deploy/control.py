"""Deploying, inspecting and stopping topologies.

Example (needs a broker)::

    manifest = deploy("topologies/digits_cascade.yaml", "127.0.0.1:9092", name="digits-a")
    print(status("digits-a")[0]["agents"])
    stop("digits-a")
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from streamcompose.deploy.hosts import hosted_agents, local_replicas, merge_group
from streamcompose.deploy.registry import (
    Deployment,
    check_name,
    list_deployments,
    runs_deployment,
    signal_deployment_process,
)
from streamcompose.errors import DeploymentError
from streamcompose.kafka.admin import broker_count, ensure_topics
from streamcompose.runtimes import check_models
from streamcompose.topology import Topology, load_topology
from streamcompose.topology.colocate import manifest_fields

JOIN_TIMEOUT_S = 180.0
ORPHAN_STOP_TIMEOUT_S = 30.0


def _manifest(t: Topology, bootstrap: str, supervisor_pid: int | None,
              here: Sequence[str]) -> dict[str, Any]:
    return {
        "name": t.name, "file": str(t.source), "bootstrap": bootstrap,
        "base_dir": str(t.base_dir),
        "input": t.input_topic, "output": t.output_topic, "dlq": t.dlq_topic,
        "topics": list(t.topics()), "partitions": t.partitions,
        "control": t.control_topic, "lanes": t.lane_topics(),
        "default_lane": t.priorities.default if t.priorities else None,
        "agents": [{"name": a.name, "kind": a.kind, "replicas": a.replicas,
                    "group": t.group_id(a.name),
                    "targets": list(t.targets(a.name)),
                    "edges": [t.edge_topic(a.name, x) for x in t.targets(a.name)],
                    "inputs": list(t.input_topics(a.name)), "output": t.topic_of(a.name),
                    "here": a.name in here,
                    "autoscale": asdict(a.autoscale) if a.autoscale else None,
                    **manifest_fields(t, a.name)}
                   for a in map(t.agent, t.units())],
        "supervisor_pid": supervisor_pid, "deployed_at": time.time(),
    }


def create_topics(t: Topology, bootstrap: str) -> dict[str, int]:
    """Create the topology's topics that do not exist yet (idempotent), replicated as the
    cluster allows (``replication:``), and return every topic's partition count; joiners
    need their branch topics co-partitioned."""
    factor, min_insync = t.replication.resolve(asyncio.run(broker_count(bootstrap)), t.name)
    replicated = {"min.insync.replicas": str(min_insync)}
    counts = asyncio.run(ensure_topics(bootstrap, dict.fromkeys([*t.topics(),
                                                                 *t.cache_topics()],
                                                                t.partitions),
                                       (t.control_topic, *t.cache_topics()),
                                       {"max.message.bytes": str(t.max_message_bytes),
                                        **replicated}, factor))
    for agent in t.agents:
        if not t.is_stateful(agent.name) or t.group_of(agent.name) is not None:
            continue
        # a stateful step's entry holds up to one record of each of its inputs
        entry_bytes = t.max_message_bytes * (len(t.input_topics(agent.name)) + 1)
        changelog = t.changelog_topic(agent.name)
        counts.update(asyncio.run(ensure_topics(bootstrap, {changelog: t.partitions},
                                                (changelog,),
                                                {"max.message.bytes": str(entry_bytes),
                                                 **replicated}, factor)))
        topics = (*t.input_topics(agent.name), t.changelog_topic(agent.name))
        if len({counts[topic] for topic in topics}) > 1:
            found = ", ".join(f"{topic}: {counts[topic]}" for topic in topics)
            raise DeploymentError(f"agent {agent.name!r} needs its input topics and changelog "
                                  f"co-partitioned (equal partition counts), found {found}; "
                                  "delete the old topics or deploy under another --name",
                                  topology=t.name)
    return counts


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def deploy(file: str | Path, bootstrap: str = "127.0.0.1:9092", name: str | None = None,
           timeout: float = JOIN_TIMEOUT_S, progress: Any = None,
           agents: Sequence[str] | None = None,
           base_dir: str | Path | None = None) -> dict[str, Any]:
    """Create the topology's topics, start its workers under a supervisor and return its
    manifest once every worker has joined its consumer group. ``name`` overrides the
    file's topology name; ``agents`` runs only those agents here (another host runs the
    rest). Every worker runs a snapshot of the file taken now: editing the file later
    changes nothing for this deployment. ``base_dir`` resolves its model paths and python
    modules instead of the file's folder."""
    path = Path(file).resolve()
    t = check_models(load_topology(path, check_name(name) if name is not None else None,
                                   base_dir))
    here = hosted_agents(t, agents)
    d = Deployment(t.name)
    live = d.processes()
    if live:
        pids = ", ".join(f"{role} (pid {pid})" for pid, role in sorted(live.items()))
        raise DeploymentError(f"{t.name!r} is still running: {pids}; run `streamcompose stop "
                              f"{t.name}` first", topology=t.name)
    create_topics(t, bootstrap)
    for left in (d.next_snapshot_file, d.upgrade_file, d.history_file):  # a former life's
        left.unlink(missing_ok=True)
    d.write_snapshot(_snapshot(path, t.name))
    d.write_manifest(_manifest(t, bootstrap, None, here))
    d.clear_workers()
    log = d.log_file("supervisor")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "streamcompose.deploy.supervisor", t.name],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    manifest = _manifest(t, bootstrap, proc.pid, here)
    d.write_manifest(manifest)
    _wait_joined(d, t, proc, timeout, progress, here)
    return manifest


def _snapshot(path: Path, name: str) -> str:
    """The topology file's YAML as deployed under ``name``."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["name"] = name
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _wait_joined(d: Deployment, t: Topology, proc: subprocess.Popen, timeout: float,
                 progress: Any, here: Sequence[str]) -> None:
    workers = [(u, r) for u in t.units() if u in here for r in range(t.agent(u).replicas)]
    deadline = time.monotonic() + timeout
    joined: set[tuple[str, int]] = set()
    while len(joined) < len(workers):
        if proc.poll() is not None:
            raise DeploymentError(f"the supervisor of {t.name!r} exited:\n"
                                  f"{_log_tail(d.log_file('supervisor'))}", topology=t.name)
        for w in workers:
            state = d.worker_state(*w)
            if w not in joined and state.get("joined") and state.get("status") == "running":
                joined.add(w)
                if progress is not None:
                    progress(f"{w[0]}-{w[1]}")
        if time.monotonic() > deadline:
            waiting = [f"{a}-{r}" for a, r in workers if (a, r) not in joined]
            tails = "\n".join(f"--- {w} ---\n{_log_tail(d.log_file(w))}" for w in waiting[:3])
            stop(t.name)
            raise DeploymentError(f"workers did not join within {timeout:.0f}s: "
                                  f"{', '.join(waiting)}\n{tails}", topology=t.name)
        time.sleep(0.2)


def stop(name: str, timeout: float = 90.0) -> bool:
    """Stop a deployment's workers gracefully; True if any of its processes ran. Only
    processes checked to be this deployment's own are signalled."""
    d = Deployment(name)
    supervisor = d.manifest().get("supervisor_pid")
    running = _terminate(d, [supervisor] if supervisor else [], timeout)
    # workers a dead supervisor left behind (they exit by themselves, normally)
    running = _terminate(d, list(d.processes()), ORPHAN_STOP_TIMEOUT_S) or running
    d.remove_manifest()
    return running


def _terminate(d: Deployment, pids: list[int], timeout: float) -> bool:
    """SIGTERM (and SIGCONT, should one be stopped), then SIGKILL after ``timeout``, the
    processes of ``d`` among ``pids``; True if any was signalled."""
    signalled = [pid for pid in pids if signal_deployment_process(pid, d.name, signal.SIGTERM)]
    for pid in signalled:
        signal_deployment_process(pid, d.name, signal.SIGCONT)
    deadline = time.monotonic() + timeout
    while any(runs_deployment(pid, d.name) for pid in signalled) and (
            time.monotonic() < deadline):
        time.sleep(0.1)
    for pid in signalled:
        signal_deployment_process(pid, d.name, signal.SIGKILL)
    return bool(signalled)


def set_weights(name: str, agent: str, weights: dict[str, float]) -> dict[str, float]:
    """Change a running traffic split's weights; its workers apply them between batches.
    Returns the weights sent."""
    from streamcompose.agent.control import publish_control
    from streamcompose.route.policies import check_weights

    m = Deployment(name).manifest()
    spec = next((a for a in m["agents"] if a["name"] == agent), None)
    if spec is None or spec.get("kind") != "split":
        splits = [a["name"] for a in m["agents"] if a.get("kind") == "split"]
        raise DeploymentError(f"{agent!r} is not a traffic split of {name!r} (splits: "
                              f"{', '.join(splits) or 'none'})", topology=name)
    try:
        weights = check_weights(weights, spec["targets"])
    except ValueError as exc:
        raise DeploymentError(f"{agent!r}: {exc}", topology=name) from None
    asyncio.run(publish_control(m["bootstrap"], m["control"], agent, {"weights": weights}))
    return weights


def status(name: str | None = None, with_lag: bool = True) -> list[dict[str, Any]]:
    """Agents, worker processes (pid, alive, restarts, metrics port) and consumer lag of
    one deployment or of all."""
    names = [name] if name else list_deployments()
    return [_status_of(Deployment(n), with_lag) for n in names]


def _status_of(d: Deployment, with_lag: bool) -> dict[str, Any]:
    m = d.manifest()
    sup = d.supervisor().get("workers", {})
    agents = []
    for a in m["agents"]:
        workers = []
        for r in local_replicas(a, sup):
            state = d.worker_state(a["name"], r)
            kept = sup.get(f"{a['name']}-{r}", {})
            pid = kept.get("pid") or state.get("pid")
            workers.append({"replica": r, "pid": pid, "alive": runs_deployment(pid, d.name),
                            "status": state.get("status", "unknown"),
                            "version": state.get("version"),
                            "restarts": kept.get("restarts", 0),
                            "metrics_port": state.get("metrics_port"),
                            "partitions": state.get("partitions", []),
                            "log": str(d.log_file(f"{a['name']}-{r}"))})
        agents.append(merge_group({"name": a["name"], "inputs": a["inputs"],
                                   "output": a["output"], "here": a.get("here", True),
                                   "colocated": list(a.get("members", ())),
                                   "lag": None, "workers": workers},
                                  m, a, with_lag, d.supervisor().get("autoscale", {})))
    return {"name": m["name"], "file": m["file"], "bootstrap": m["bootstrap"],
            "input": m["input"], "output": m["output"], "dlq": m["dlq"],
            "snapshot": str(d.snapshot_file),
            "upgrade": d.supervisor().get("upgrade"),
            "supervisor": {"pid": m["supervisor_pid"],
                           "alive": runs_deployment(m["supervisor_pid"], d.name)},
            "agents": agents}
