"""The HTTP endpoints of a worker, on its metrics port: ``/metrics`` (Prometheus),
``/healthz`` (alive: the event loop turns) and ``/readyz`` (ready: the model is loaded
and warmed and the worker joined its consumer group), the probes Kubernetes calls.

>>> state = {"status": "running", "joined": True}
>>> probes = Probes(lambda: state)
>>> probes.ready()
(True, 'ready')
>>> state["joined"] = False
>>> probes.ready()
(False, 'status running, not in its consumer group')
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler

STALL_S = 30.0  # an event loop silent this long is not alive


class Probes:
    """Liveness and readiness of one worker, from its state (``status``, ``joined``) and
    a heartbeat its event loop gives with :meth:`beat`."""

    def __init__(self, state: Callable[[], dict[str, Any]]) -> None:
        self.state = state
        self.last_beat = time.monotonic()

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def alive(self) -> tuple[bool, str]:
        status = self.state().get("status")
        if status == "failed":
            return False, f"failed: {self.state().get('error', '')}"
        silent = time.monotonic() - self.last_beat
        if silent > STALL_S:
            return False, f"event loop silent for {silent:.0f}s"
        return True, "alive"

    def ready(self) -> tuple[bool, str]:
        state = self.state()
        if state.get("status") == "running" and state.get("joined"):
            return True, "ready"
        group = "in its consumer group" if state.get("joined") else \
            "not in its consumer group"
        return False, f"status {state.get('status', 'starting')}, {group}"

    def app(self, registry: CollectorRegistry) -> Callable[..., Iterable[bytes]]:
        """A WSGI app answering the probes and, on any other path, the metrics."""
        metrics = make_wsgi_app(registry)
        checks = {"/healthz": self.alive, "/readyz": self.ready}

        def serve(environ: dict[str, Any], start_response: Callable[..., Any]
                  ) -> Iterable[bytes]:
            check = checks.get(environ.get("PATH_INFO", ""))
            if check is None:
                return metrics(environ, start_response)
            ok, why = check()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8")])
            return [why.encode() + b"\n"]

        return serve


def serve(probes: Probes, registry: CollectorRegistry, port: int = 0,
          host: str = "127.0.0.1") -> int:
    """Serve the probes and metrics on ``host:port`` in a daemon thread; returns the port
    (a free one when 0 is given)."""
    server = make_server(host, port, probes.app(registry), ThreadingWSGIServer,
                         handler_class=_SilentHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server.server_port
