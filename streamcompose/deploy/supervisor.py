"""The supervisor of a deployment: one background process that starts every agent's
worker processes (one per replica) from the deployment's topology snapshot and starts
again, with exponential backoff, any that dies; the backoff starts over once a worker
has run healthy for a while. SIGTERM stops the workers gracefully (each drains, commits
and exits) and then the supervisor; SIGHUP makes it carry out the upgrade asked for in
``upgrade.json`` (:mod:`streamcompose.deploy.rolling`). The workers exit by themselves
when the supervisor dies (``PR_SET_PDEATHSIG``, and a parent watch inside each worker).

Run by ``streamcompose deploy``; by hand: ``python -m streamcompose.deploy.supervisor NAME``.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from streamcompose.deploy.autoscaler import Autoscaler
from streamcompose.deploy.registry import Deployment
from streamcompose.deploy.rolling import RollingUpgrade
from streamcompose.metrics import RESTARTS_ENV
from streamcompose.observe.prometheus_config import write_supervisor_target
from streamcompose.runtimes.device import ENGINE_CACHE_ENV

POLL_S = 0.1
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
HEALTHY_AFTER_S = 10.0
STOP_TIMEOUT_S = 60.0
PR_SET_PDEATHSIG = 1


def restart_delay(streak: int, ran_s: float) -> tuple[float, int]:
    """Seconds to wait before starting again a worker that exited after running
    ``ran_s`` seconds, and the new streak of quick exits: a worker that ran healthy for
    ``HEALTHY_AFTER_S`` starts again at once and its streak starts over; the first quick
    exit is restarted at once too (a killed worker), later ones back off.

    >>> restart_delay(0, 0.1), restart_delay(3, 0.1), restart_delay(20, 1.0)
    ((0.0, 1), (2.0, 4), (30.0, 21))
    >>> restart_delay(20, HEALTHY_AFTER_S)
    (0.0, 0)
    """
    if ran_s >= HEALTHY_AFTER_S:
        return 0.0, 0
    delay = 0.0 if streak == 0 else BACKOFF_START_S * 2 ** min(streak - 1, 10)
    return min(delay, BACKOFF_MAX_S), streak + 1


def _die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that has the kernel send SIGTERM to the child when the thread
    that started it exits; the supervisor is single-threaded, so when it dies."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return arm


@dataclass
class WorkerProcess:
    """One worker the supervisor keeps alive."""

    agent: str
    replica: int
    process: subprocess.Popen | None = None
    restarts: int = 0
    streak: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    exit_codes: list[int] = field(default_factory=list)
    retiring: bool = False  # stopped by the autoscaler: not started again

    @property
    def name(self) -> str:
        return f"{self.agent}-{self.replica}"


class Supervisor:
    """Keeps the workers of one deployment running until told to stop."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        manifest = deployment.manifest()
        self.bootstrap, self.base_dir = manifest["bootstrap"], manifest["base_dir"]
        self.workers = [WorkerProcess(a["name"], r) for a in manifest["agents"]
                        if a.get("here", True) for r in range(a["replicas"])]
        self.stopping = False
        self.preexec = _die_with_parent()
        self.autoscaler = Autoscaler(manifest, self._count, self._scale)
        self.upgrade_asked = False
        self.upgrade: RollingUpgrade | None = None

    def _count(self, agent: str) -> int:
        return sum(w.agent == agent and not w.retiring for w in self.workers)

    def _scale(self, agent: str, wanted: int) -> None:
        """Start or stop (SIGTERM: drain, commit, exit) workers of ``agent`` until
        ``wanted`` run; the highest replica numbers go first."""
        active = sorted((w for w in self.workers if w.agent == agent and not w.retiring),
                        key=lambda w: w.replica)
        for w in active[wanted:]:
            w.retiring = True
            if w.process is not None:
                w.process.send_signal(signal.SIGTERM)
        taken = {w.replica for w in self.workers if w.agent == agent}
        free = (r for r in range(len(taken) + wanted) if r not in taken)
        for _ in range(wanted - len(active)):
            w = WorkerProcess(agent, next(free))
            self.workers.append(w)
            self._start(w)

    def _command(self, w: WorkerProcess, snapshot: Path | None = None) -> list[str]:
        return [sys.executable, "-m", "streamcompose.agent",
                str(snapshot or self.deployment.snapshot_file), w.agent,
                "--base-dir", self.base_dir,
                "--name", self.deployment.name, "--bootstrap", self.bootstrap,
                "--replica", str(w.replica), "--parent-pid", str(os.getpid()),
                "--state-file", str(self.deployment.worker_state_file(w.agent, w.replica))]

    def _start(self, w: WorkerProcess) -> None:
        w.process = self._spawn(self._command(w), w)
        w.started_at = time.monotonic()

    def _spawn(self, command: list[str], w: WorkerProcess) -> subprocess.Popen:
        log = self.deployment.log_file(w.name)
        log.parent.mkdir(parents=True, exist_ok=True)
        # TensorRT engines built by the workers stay with the deployment, across restarts
        env = {ENGINE_CACHE_ENV: str(self.deployment.dir / "engines"), **os.environ,
               RESTARTS_ENV: str(w.restarts)}
        with open(log, "ab") as out:
            return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, preexec_fn=self.preexec, env=env)

    def _spawn_standby(self, w: WorkerProcess) -> subprocess.Popen:
        """A worker for ``w``'s replica that runs the next topology once told to."""
        d = self.deployment
        standby = d.standby_state_file(w.agent, w.replica)
        standby.unlink(missing_ok=True)
        return self._spawn([*self._command(w, d.next_snapshot_file), "--standby", str(standby)],
                           w)

    def _begin_upgrade(self) -> None:
        """Take the upgrade asked for in ``upgrade.json``, unless one runs."""
        self.upgrade_asked = False
        d = self.deployment
        request = d.read(d.upgrade_file)
        d.upgrade_file.unlink(missing_ok=True)
        if not request or (self.upgrade is not None and not self.upgrade.finished):
            return
        unit = request.get("unit") or request["agent"]
        replicas = {w.replica: w for w in self.workers if w.agent == unit}
        print(f"upgrading {request['agent']} from {request['from_version']} to "
              f"{request['to_version']}", flush=True)
        self.upgrade = RollingUpgrade(d, request, replicas, self._spawn_standby)

    def _record(self) -> None:
        self.deployment.write_supervisor({"workers": {
            w.name: {"agent": w.agent, "replica": w.replica,
                     "pid": w.process.pid if w.process else None,
                     "restarts": w.restarts, "exit_codes": w.exit_codes[-5:]}
            for w in self.workers if not w.retiring}, "autoscale": self.autoscaler.record(),
            **({"upgrade": self.upgrade.summary()} if self.upgrade else {})})

    def _check(self, w: WorkerProcess, now: float) -> bool:
        """Restart a dead worker when its backoff has passed; True if anything changed."""
        if w.process is not None:
            code = w.process.poll()
            if code is None:
                return False
            w.exit_codes.append(code)
            w.process = None
            if w.retiring:
                print(f"worker {w.name} stopped by the autoscaler (exit {code})", flush=True)
                return True
            ran = now - w.started_at
            delay, w.streak = restart_delay(w.streak, ran)
            w.next_start = now + delay
            print(f"worker {w.name} exited with {code} after {ran:.1f}s; restarting in "
                  f"{delay:.1f}s", flush=True)
            return True
        if w.retiring:
            return False
        if now >= w.next_start:
            w.restarts += 1
            self._start(w)
            return True
        return False

    def run(self) -> None:
        """Start every worker and watch them until SIGTERM or SIGINT."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_upgrade)
        self.deployment.clear_workers()
        if self.autoscaler.metrics_port is not None:
            write_supervisor_target(self.deployment.dir, self.autoscaler.metrics_port,
                                    self.deployment.name)
        for w in self.workers:
            self._start(w)
        self._record()
        while not self.stopping:
            now = time.monotonic()
            if self.upgrade_asked:
                self._begin_upgrade()
            changed = self.upgrade is not None and self.upgrade.step(now)
            changed = any([self._check(w, now) for w in self.workers]) or changed
            changed = self.autoscaler.tick(now) or changed
            self.workers = [w for w in self.workers if not (w.retiring and w.process is None)]
            if changed:
                self._record()
            time.sleep(POLL_S)
        self._stop_all()

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def _on_upgrade(self, signum: int, _frame: object) -> None:
        self.upgrade_asked = True

    def _stop_all(self) -> None:
        if self.upgrade is not None:
            for standby in self.upgrade.standbys():  # hold nothing yet: killed
                standby.kill()
                standby.wait()
        running = [w.process for w in self.workers if w.process and w.process.poll() is None]
        for p in running:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for p in running:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._record()
        print("all workers stopped", flush=True)


def main() -> None:
    """``python -m streamcompose.deploy.supervisor NAME``."""
    if len(sys.argv) != 2:
        sys.exit("usage: python -m streamcompose.deploy.supervisor NAME")
    Supervisor(Deployment(sys.argv[1])).run()


if __name__ == "__main__":
    main()
