"""A rolling upgrade of one agent, as the supervisor carries it out.

``streamcompose upgrade`` (or ``rollback``) writes the topology with the agent's new model
to ``topology.next.yaml`` and the request to ``upgrade.json``, then sends the supervisor
SIGHUP. The supervisor then, without stopping to watch its other workers:

1. **warms**: starts a standby worker per replica of the agent from the next topology. A
   standby loads and warms its model but starts no Kafka client: it holds no partition,
   no producer and no transaction. If any standby fails (exits, or is not warm within
   ``WARM_TIMEOUT_S``), every standby is killed and nothing has changed.
2. **commits**: ``topology.next.yaml`` becomes the snapshot (so a worker started from now
   on, a restarted one too, runs the new model) and ``history.json`` records the model
   replaced.
3. **hands over**, one replica at a time: SIGTERM to the old worker, which stops
   fetching, finishes its batches, commits their transaction and exits; only then SIGUSR1
   to the standby (as soon as the old worker's state file says ``stopped``: its clients
   are closed, what is left is the process's exit), which starts its clients: its
   producer reuses the replica's ``transactional.id`` (fencing a predecessor that did not
   get to commit, if it was killed after ``STOP_TIMEOUT_S``) and its consumer the
   replica's ``group.instance.id``,
   so it takes the replica's partitions without a rebalance, from the offsets the old
   worker committed. Every input record is thus answered by exactly one of the two,
   in order, and a partition's versions never go backwards. The next replica follows
   once this one runs and has joined.

Progress and outcome go to ``supervisor.json`` under ``upgrade``.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamcompose.deploy.registry import Deployment

WARM_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 60.0
JOIN_TIMEOUT_S = 120.0


@dataclass
class Handover:
    """One replica's move from its old worker to a standby."""

    replica: int
    standby: subprocess.Popen
    old: subprocess.Popen | None = None
    phase: str = "warming"  # warming, warm, draining, joining, done
    since: float = field(default_factory=time.monotonic)


class RollingUpgrade:
    """The state machine of one upgrade; :meth:`step` advances it without blocking."""

    def __init__(self, deployment: Deployment, request: dict[str, Any],
                 workers: dict[int, Any], spawn: Callable[[Any], subprocess.Popen]) -> None:
        self.d, self.request = deployment, request
        self.agent: str = request["agent"]
        self.unit: str = request.get("unit") or self.agent  # the worker that runs it
        self.workers = workers  # replica -> the supervisor's WorkerProcess
        self.state, self.error = "warming", ""
        self.handovers = [Handover(r, spawn(w)) for r, w in sorted(workers.items())]

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    def summary(self) -> dict[str, Any]:
        return {**{k: self.request.get(k) for k in ("id", "kind", "agent", "from_version",
                                                    "to_version")},
                "state": self.state, "error": self.error,
                "replicas": {h.replica: h.phase for h in self.handovers}}

    def standbys(self) -> list[subprocess.Popen]:
        """Standby processes not handed a replica (to stop with the supervisor)."""
        return [h.standby for h in self.handovers if h.phase in ("warming", "warm")]

    def step(self, now: float) -> bool:
        """Advance; True if anything changed."""
        for h in self.handovers:  # reaps the old workers still exiting
            if h.old is not None:
                h.old.poll()
        if self.finished:
            return False
        if self.state == "warming":
            return self._warm(now)
        current = next((h for h in self.handovers if h.phase != "done"), None)
        if current is None:
            self.state = "done"
            return True
        return {"warm": self._drain, "draining": self._promote,
                "joining": self._joined}[current.phase](current, now)

    def _warm(self, now: float) -> bool:
        changed = False
        for h in self.handovers:
            if h.phase != "warming":
                continue
            code = h.standby.poll()
            if code is not None:
                return self._fail(f"the new {self.unit}-{h.replica} exited with {code} while "
                                  f"loading; see {self.d.log_file(f'{self.unit}-{h.replica}')}")
            if now - h.since > WARM_TIMEOUT_S:
                return self._fail(f"the new {self.unit}-{h.replica} was not warm within "
                                  f"{WARM_TIMEOUT_S:.0f}s")
            if self.d.read(self.d.standby_state_file(self.unit, h.replica)).get(
                    "status") == "warm":
                h.phase, changed = "warm", True
        if all(h.phase == "warm" for h in self.handovers):
            self._commit()
            self.state, changed = "handing over", True
        return changed

    def _commit(self) -> None:
        """The next topology becomes the deployment's snapshot; the history keeps the
        model it replaced (an upgrade) or forgets the one returned to (a rollback)."""
        self.d.next_snapshot_file.replace(self.d.snapshot_file)
        history = self.d.read(self.d.history_file)
        stack = history.setdefault("previous", {}).setdefault(self.agent, [])
        if self.request["kind"] == "rollback":
            stack.pop()
        else:
            stack.append({"model": self.request["from_model"],
                          "version": self.request["from_version"]})
        history.setdefault("events", []).append(
            {k: self.request[k] for k in ("kind", "agent", "from_version", "to_version")}
            | {"at": time.time()})
        self.d.write(self.d.history_file, history)

    def _drain(self, h: Handover, now: float) -> bool:
        if h.standby.poll() is not None:
            return self._fail(f"the new {self.unit}-{h.replica} exited with "
                              f"{h.standby.returncode} before taking over")
        w = self.workers[h.replica]
        h.old, w.process, w.next_start = w.process, None, float("inf")
        if h.old is not None and h.old.poll() is None:
            h.old.send_signal(signal.SIGTERM)
        h.phase, h.since = "draining", now
        return True

    def _promote(self, h: Handover, now: float) -> bool:
        if h.old is not None and h.old.poll() is None and not self._closed(h.old, h.replica):
            if now - h.since > STOP_TIMEOUT_S:
                h.old.kill()  # its open transaction is aborted by the standby's producer
            return False
        w = self.workers[h.replica]
        h.standby.send_signal(signal.SIGUSR1)
        w.process, w.started_at, w.streak, w.next_start = h.standby, now, 0, 0.0
        h.phase, h.since = "joining", now
        return True

    def _closed(self, old: subprocess.Popen, replica: int) -> bool:
        """Whether ``old`` has committed and closed its Kafka clients."""
        state = self.d.worker_state(self.unit, replica)
        return state.get("pid") == old.pid and state.get("status") == "stopped"

    def _joined(self, h: Handover, now: float) -> bool:
        w = self.workers[h.replica]
        if w.process is not h.standby:  # it died after taking over; the supervisor restarts
            h.phase = "done"
            return True
        state = self.d.worker_state(self.unit, h.replica)
        if (state.get("pid") == h.standby.pid and state.get("status") == "running"
                and state.get("joined")):
            h.phase = "done"
            return True
        if now - h.since > JOIN_TIMEOUT_S:
            return self._fail(f"the new {self.unit}-{h.replica} did not join within "
                              f"{JOIN_TIMEOUT_S:.0f}s; replicas handed over so far run the "
                              "new version")
        return False

    def _fail(self, error: str) -> bool:
        for proc in self.standbys():
            proc.kill()
            proc.wait()
        self.d.next_snapshot_file.unlink(missing_ok=True)
        self.state, self.error = "failed", error
        return True
