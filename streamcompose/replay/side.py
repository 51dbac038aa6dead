"""The temporary side deployment of ``replay``: one agent, the live agent's settings with
a candidate model, deployed under its own name, so on its own topics
(``<side>.in``, ``<side>.out``, ``<side>.dlq``); nothing of the live path is touched.

>>> raw = {"runtime": "torch", "path": "models/a.pt", "options": {"outputs": ["proba"]},
...        "version": "3"}
>>> candidate_model(raw, "mod:fn", Path("."), None)
{'runtime': 'python', 'entrypoint': 'mod:fn'}
>>> candidate_model(raw, "mod:fn", Path("."), {"k": 1})["options"]
{'k': 1}
"""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from streamcompose.codec.record import now_ms
from streamcompose.codec.redrive import NOT_REPUBLISHED
from streamcompose.deploy import deploy, stop
from streamcompose.deploy.registry import Deployment, check_name
from streamcompose.errors import DeploymentError
from streamcompose.kafka.admin import delete_topics
from streamcompose.kafka.clients import make_producer
from streamcompose.replay.answers import Request, Side
from streamcompose.topology import Topology, load_topology

#: the runtime of a candidate model file, by its suffix
RUNTIME_OF_SUFFIX = {".onnx": "onnx", ".pt": "torch", ".pth": "torch", ".ts": "torch"}
CRASHES = 2  # exits of the candidate's worker before the replay gives up
WATCH_S = 0.5
LOG_LINES = 15
ERROR_RE = re.compile(r"\w+(Error|Exception)\b|\[ERROR\]")
MODEL_KEYS_KEPT = ("device", "fallback", "input_map", "output_map", "outputs",
                   "allow_nonfinite")


def candidate_model(raw: dict[str, Any], candidate: str, base_dir: Path,
                    options: dict[str, Any] | None) -> dict[str, Any]:
    """The live agent's ``model:`` mapping with ``candidate`` in place of its model: a
    model file (``.onnx``: onnx, ``.pt``/``.pth``/``.ts``: torch; relative to the
    current folder, else to the topology's) or ``module:callable`` (python). The live
    options go with it when the runtime stays the same; ``options`` replaces them."""
    path = _model_file(candidate, base_dir)
    if path is not None:
        runtime = RUNTIME_OF_SUFFIX.get(path.suffix.lower())
        if runtime is None:
            raise DeploymentError(f"cannot tell the runtime of {path} from its suffix "
                                  f"(known: {', '.join(RUNTIME_OF_SUFFIX)})")
        model: dict[str, Any] = {"runtime": runtime, "path": str(path)}
    elif ":" in candidate:
        model = {"runtime": "python", "entrypoint": candidate}
    else:
        raise DeploymentError(f"candidate {candidate!r} is neither a model file (looked in "
                              f"{Path.cwd()} and {base_dir}) nor a module:callable")
    model.update((k, raw[k]) for k in MODEL_KEYS_KEPT if k in raw)
    if options is not None:
        model["options"] = options
    elif raw.get("options") and raw.get("runtime") == model["runtime"]:
        model["options"] = raw["options"]
    return model


def _model_file(candidate: str, base_dir: Path) -> Path | None:
    for folder in (Path.cwd(), base_dir):
        path = (folder / Path(candidate).expanduser()).resolve()
        if path.is_file():
            return path
    return None


def side_name(name: str, agent: str) -> str:
    """A fresh deployment name for a replay of ``agent`` of deployment ``name``.

    >>> side_name("digits", "cnn").startswith("digits-replay-cnn-")
    True
    """
    return check_name(f"{name}-replay-{agent}-{uuid.uuid4().hex[:6]}")


class SideDeployment:
    """Deploys the candidate, feeds it recorded requests, removes it all afterwards."""

    def __init__(self, live: Topology, snapshot: dict[str, Any], agent: str, candidate: str,
                 options: dict[str, Any] | None, bootstrap: str) -> None:
        self.live, self.agent, self.bootstrap = live, agent, bootstrap
        self.name = side_name(live.name, agent)
        raw = dict(snapshot["agents"][agent])
        spec: dict[str, Any] = {
            "inputs": ["$input"],
            "model": candidate_model(raw["model"], candidate, live.base_dir, options)}
        spec.update((k, raw[k]) for k in ("batch", "drop") if k in raw)
        self.document = {"name": self.name, "partitions": live.partitions,
                         "output_format": live.output_format,
                         "max_message_bytes": live.max_message_bytes,
                         "delivery": live.delivery_of(agent), "agents": {agent: spec}}
        self.deployment = Deployment(self.name)
        self.topology: Topology | None = None

    @property
    def side(self) -> Side:
        assert self.topology is not None
        t = self.topology
        return Side("candidate", self.agent, (t.input_topic,), (t.topic_of(self.agent),),
                    t.dlq_of(self.agent))

    def start(self, timeout: float) -> None:
        """Write the side topology into the side deployment's folder and deploy it; a
        candidate whose worker keeps exiting stops the deployment at once."""
        file = self.deployment.dir / "candidate.yaml"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(yaml.safe_dump(self.document, sort_keys=False), encoding="utf-8")
        self.topology = load_topology(file, base_dir=self.live.base_dir)
        crashed: list[str] = []
        started = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(started, crashed), daemon=True)
        watcher.start()
        try:
            deploy(file, self.bootstrap, timeout=timeout, base_dir=self.live.base_dir)
        except DeploymentError as exc:
            if crashed:
                raise DeploymentError(f"the candidate's worker of {self.name!r} keeps "
                                      f"exiting; its log ends:\n{crashed[0]}",
                                      topology=self.live.name) from exc
            raise
        finally:
            started.set()
            watcher.join()

    def _watch(self, started: threading.Event, crashed: list[str]) -> None:
        while not started.wait(WATCH_S):
            for worker, info in self.deployment.supervisor().get("workers", {}).items():
                if len(info.get("exit_codes", [])) >= CRASHES:
                    crashed.append(last_error(self.deployment.log_file(worker)))
                    stop(self.name)
                    return

    async def feed(self, requests: list[Request], progress: Callable[[int], None],
                   rate: float | None = None) -> dict[str, int]:
        """Copy the requests (key, value and headers, less a deadline) onto the side
        input, each to the partition number it had, at most ``rate`` a second; returns
        id -> when it was sent (ms since the epoch)."""
        assert self.topology is not None
        producer = make_producer(self.bootstrap, f"{self.name}.feed",
                                 max_message_bytes=self.live.max_message_bytes)
        await producer.start()
        try:
            pending = []
            loop = asyncio.get_running_loop()
            started = loop.time()
            for n, r in enumerate(requests):
                if rate is not None:
                    await asyncio.sleep(max(0.0, started + n / rate - loop.time()))
                pending.append((r.id, now_ms(), await producer.send(
                    self.topology.input_topic, r.record.value, key=r.record.key,
                    headers=[(k, v) for k, v in r.record.headers if k not in NOT_REPUBLISHED],
                    partition=r.record.partition % self.topology.partitions)))
            stored = {}
            for rid, sent_ms, delivery in pending:
                await delivery
                stored[rid] = sent_ms
                progress(1)
            return stored
        finally:
            await producer.stop()

    def remove(self) -> None:
        """Stop the side deployment, delete its topics and its folder."""
        if self.deployment.exists():
            stop(self.name)
        if self.topology is not None:
            asyncio.run(delete_topics(self.bootstrap, list(self.topology.topics())))
        shutil.rmtree(self.deployment.dir, ignore_errors=True)


def last_error(log: Path) -> str:
    """The lines of a worker's log up to its last error (its last lines if none)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    end = max((i for i, line in enumerate(lines) if ERROR_RE.search(line)),
              default=len(lines) - 1)
    return "\n".join(lines[max(0, end - LOG_LINES + 1):end + 1])
