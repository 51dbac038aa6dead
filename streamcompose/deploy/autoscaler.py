"""Autoscaling on consumer lag, in the local supervisor: an agent with ``autoscale:``
gets more workers while its lag exceeds ``lag_per_replica`` per worker and fewer (each
stopped with SIGTERM: it drains, commits and exits, so nothing is lost) once the lag
has fallen and ``cooldown_s`` passed since the last change; never more workers than its
input has partitions. Each decision is logged, kept in the supervisor's file (``status``
shows it) and counted in ``streamcompose_autoscale_decisions_total{direction}``, served
on the supervisor's own metrics port.

>>> from streamcompose.topology.scaling import AutoscaleSpec
>>> s = AgentScaler("cnn", AutoscaleSpec(min=1, max=3, lag_per_replica=100, cooldown_s=30),
...                 "g", ["t"], partitions=3)
>>> s.decide(lag=450, workers=1, now=0.0)
3
>>> s.decide(lag=0, workers=3, now=10.0) is None  # within the cooldown
True
>>> s.decide(lag=0, workers=3, now=40.0)
1
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, start_http_server

from streamcompose.errors import StreamComposeError
from streamcompose.kafka.admin import consumer_lag, topic_partitions
from streamcompose.topology.scaling import AutoscaleSpec

log = logging.getLogger("streamcompose.autoscale")
POLL_S = 2.0
KEPT_DECISIONS = 20


@dataclass
class AgentScaler:
    """The autoscaling state of one agent on this host."""

    agent: str
    spec: AutoscaleSpec
    group: str
    inputs: list[str]
    partitions: int
    last_change: float = float("-inf")
    lag: int | None = None
    decisions: list[dict[str, Any]] = field(default_factory=list)

    def decide(self, lag: int, workers: int, now: float) -> int | None:
        """The number of workers to run now, or None to keep ``workers``: more at once,
        fewer only after the cooldown."""
        self.lag = lag
        wanted = self.spec.wanted(lag, self.partitions)
        if wanted == workers or (wanted < workers
                                 and now - self.last_change < self.spec.cooldown_s):
            return None
        self.last_change = now
        return wanted


class Autoscaler:
    """Polls the lag of a deployment's autoscaled agents and asks the supervisor for
    more or fewer workers through ``scale(agent, workers)``."""

    def __init__(self, manifest: dict[str, Any], count: Callable[[str], int],
                 scale: Callable[[str, int], None]) -> None:
        self.topology, self.bootstrap = manifest["name"], manifest["bootstrap"]
        self.count, self.scale = count, scale
        self.scalers = [AgentScaler(a["name"], AutoscaleSpec(**a["autoscale"]), a["group"],
                                    a["inputs"], manifest["partitions"])
                        for a in manifest["agents"] if a.get("here", True) and a.get("autoscale")]
        self.next_poll = 0.0
        self.registry = CollectorRegistry()
        self.decisions = Counter("streamcompose_autoscale_decisions",
                                 "Autoscaling decisions of the local supervisor.",
                                 ["topology", "agent", "direction"], registry=self.registry)
        self.metrics_port: int | None = None
        for s in self.scalers:  # exported from the start, 0 until a decision
            for direction in ("up", "down"):
                self.decisions.labels(self.topology, s.agent, direction)
        if self.scalers:
            server, _ = start_http_server(0, addr="127.0.0.1", registry=self.registry)
            self.metrics_port = server.server_port
            self._read_partitions()

    def _read_partitions(self) -> None:
        """Bound each agent by the partitions its inputs really have."""
        for s in self.scalers:
            try:
                found = asyncio.run(topic_partitions(self.bootstrap, s.inputs))
            except StreamComposeError as exc:
                log.warning("autoscale %s: cannot count partitions (%s); assuming %d",
                            s.agent, exc, s.partitions)
                continue
            per_topic = [sum(tp.topic == t for tp in found) for t in s.inputs]
            s.partitions = min(per_topic) if per_topic else s.partitions

    def tick(self, now: float) -> bool:
        """Poll the lag when due and apply the decisions; True if any was made."""
        if not self.scalers or now < self.next_poll:
            return False
        self.next_poll = now + POLL_S
        changed = False
        for s in self.scalers:
            try:
                lag = sum(asyncio.run(consumer_lag(self.bootstrap, s.group, s.inputs)).values())
            except StreamComposeError as exc:
                log.warning("autoscale %s: cannot read the lag (%s)", s.agent, exc)
                continue
            workers = self.count(s.agent)
            wanted = s.decide(lag, workers, now)
            if wanted is None:
                continue
            direction = "up" if wanted > workers else "down"
            log.info("autoscale %s: lag %d, %d per worker: %d -> %d workers", s.agent, lag,
                     s.spec.lag_per_replica, workers, wanted)
            self.decisions.labels(self.topology, s.agent, direction).inc()
            s.decisions = [*s.decisions, {"time": time.time(), "direction": direction,
                                          "lag": lag, "from": workers, "to": wanted}
                           ][-KEPT_DECISIONS:]
            self.scale(s.agent, wanted)
            changed = True
        return changed

    def record(self) -> dict[str, Any]:
        """What ``status`` shows: per agent, the bounds, last lag and recent decisions."""
        return {s.agent: {"min": s.spec.bounds(s.partitions)[0],
                          "max": s.spec.bounds(s.partitions)[1],
                          "lag_per_replica": s.spec.lag_per_replica, "lag": s.lag,
                          "workers": self.count(s.agent), "decisions": s.decisions,
                          "metrics_port": self.metrics_port}
                for s in self.scalers}
