"""Deployments spread over hosts: which agents run on this host (``deploy --agents``),
and the status of every agent merged from what the broker knows of its consumer group
(members on every host, their partitions, lag per partition) and what the local
supervisor knows of its own workers (pids, restarts, autoscaling decisions).

>>> from streamcompose.topology import load_topology_text
>>> t = load_topology_text('''
... name: demo
... agents:
...   a: {inputs: [$input], model: {runtime: python, entrypoint: "math:floor"}}
...   b: {inputs: [a], model: {runtime: python, entrypoint: "math:floor"}}
... ''')
>>> hosted_agents(t, ["b"]), hosted_agents(t, None)
(('b',), ('a', 'b'))
>>> hosted_agents(t, ["c"])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamcompose.errors.DeploymentError: no agent 'c' in topology 'demo' (agents: a, b)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from streamcompose.errors import DeploymentError
from streamcompose.kafka.groups import describe_group
from streamcompose.topology import Topology


def hosted_agents(t: Topology, agents: Sequence[str] | None) -> tuple[str, ...]:
    """The worker units this host runs: ``agents`` (checked to exist; an agent of a
    co-located group stands for its group), or all of them."""
    units = t.units()
    if agents is None:
        return units
    named = {g.name if (g := t.group_of(a)) is not None else a for a in agents}
    unknown = [a for a in named if a not in units]
    if unknown or not agents:
        raise DeploymentError(f"no agent {', '.join(map(repr, unknown)) or 'given'} in "
                              f"topology {t.name!r} (agents: {', '.join(units)})",
                              topology=t.name)
    return tuple(u for u in units if u in named)


def local_replicas(agent: dict[str, Any], supervised: dict[str, Any]) -> list[int]:
    """The replica numbers this host's supervisor runs of an agent of the manifest: those
    it records (autoscaling changes them), else the topology's."""
    if not agent.get("here", True):
        return []
    recorded = sorted(w["replica"] for w in supervised.values() if w["agent"] == agent["name"])
    return recorded or list(range(agent["replicas"]))


def merge_group(status: dict[str, Any], manifest: dict[str, Any], agent: dict[str, Any],
                with_lag: bool, autoscale: dict[str, Any]) -> dict[str, Any]:
    """An agent's local status with its consumer group as the broker sees it: ``lag``
    (total), ``partition_lag``, ``group_state`` and ``members`` (client id, host,
    partitions, and whether it is one of this host's workers)."""
    status["autoscale"] = autoscale.get(agent["name"])
    if not with_lag:
        return status
    info = asyncio.run(describe_group(manifest["bootstrap"], agent["group"], agent["inputs"]))
    ours = {f"{manifest['name']}.{agent['name']}.{w['replica']}": w for w in status["workers"]
            if w["alive"]}
    status.update(lag=info.total_lag, partition_lag=info.lag, group_state=info.state,
                  members=[{**m.as_dict(), "local": m.client_id in ours}
                           for m in info.members])
    return status
