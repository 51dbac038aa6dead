"""Prometheus metrics of agent workers, in the manner of Triton's per-model metrics.

Every series is labelled with ``topology``, ``agent`` and ``replica``. Each worker serves
them over HTTP on the port shown by ``streamcompose status``.

>>> m = AgentMetrics("demo", "inc", 0)
>>> m.records_in.inc(3)
>>> m.registry.get_sample_value("streamcompose_records_in_total",
...     {"topology": "demo", "agent": "inc", "replica": "0"})
3.0
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LABELS = ("topology", "agent", "replica")
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TIME_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
RESTARTS_ENV = "STREAMCOMPOSE_RESTARTS"  # set by the supervisor: restarts before this start


class AgentMetrics:
    """The metrics of one agent worker, in a registry of its own."""

    def __init__(self, topology: str, agent: str, replica: int) -> None:
        self.registry = CollectorRegistry()
        values = (topology, agent, str(replica))

        def make(kind, name, doc, *extra, **kw):
            metric = kind(name, doc, [*LABELS, *extra], registry=self.registry, **kw)
            return metric if extra else metric.labels(*values)

        self._labels = values
        self.records_in = make(Counter, "streamcompose_records_in", "Records consumed.")
        self.records_out = make(Counter, "streamcompose_records_out", "Results produced.")
        self._errors = make(Counter, "streamcompose_errors",
                            "Records sent to the dead-letter topic, by reason.", "reason")
        self.batch_size = make(Histogram, "streamcompose_batch_size",
                               "Records per model call.", buckets=SIZE_BUCKETS)
        self.queue_seconds = make(Histogram, "streamcompose_queue_duration_seconds",
                                  "Time the first record of a batch waited for the batch "
                                  "to close.", buckets=TIME_BUCKETS)
        self.inference_seconds = make(Histogram, "streamcompose_inference_duration_seconds",
                                      "Time of one model call on a batch.",
                                      buckets=TIME_BUCKETS)
        self.in_flight = make(Gauge, "streamcompose_in_flight",
                              "Records consumed whose results are not yet acknowledged "
                              "(for joiners: requests waiting for branches).")
        self._routed = make(Counter, "streamcompose_routed",
                            "Requests a router sent to each target (expert load, variants).",
                            "target")
        self._join_events = make(Counter, "streamcompose_join_events",
                                 "Joiner events: late, duplicate, timeout, partial, evicted.",
                                 "event")
        self.expired = make(Counter, "streamcompose_expired",
                            "Requests dead-lettered because their deadline had passed.")
        self._cache = make(Counter, "streamcompose_cache_requests",
                           "Result cache lookups, by result (hit or miss).", "result")
        self.lag = make(Gauge, "streamcompose_lag", "Records of this replica's input "
                        "partitions beyond its position.")
        self.restarts = make(Counter, "streamcompose_restarts", "Times the supervisor "
                             "started this worker again (counted on from one start to the "
                             "next).")
        self.frozen_objects = make(Gauge, "streamcompose_frozen_objects",
                                   "Objects the worker moved out of the garbage "
                                   "collector's reach once its model was loaded "
                                   "(freeze_heap).")

    @property
    def labels(self) -> tuple[str, ...]:
        """The values of the ``topology``, ``agent`` and ``replica`` labels."""
        return self._labels

    def error(self, reason: str, count: int = 1) -> None:
        """Count dead-lettered records."""
        self._errors.labels(*self._labels, reason).inc(count)

    def routed(self, target: str, count: int = 1) -> None:
        """Count requests routed to ``target``."""
        self._routed.labels(*self._labels, target).inc(count)

    def cache_request(self, result: str, count: int = 1) -> None:
        """Count result cache lookups: ``hit`` or ``miss``."""
        self._cache.labels(*self._labels, result).inc(count)

    def join_event(self, event: str, count: int = 1) -> None:
        """Count a joiner event (a late or duplicate branch result, a timeout...)."""
        self._join_events.labels(*self._labels, event).inc(count)

    def step_events(self, events: dict[str, int]) -> None:
        """Count what a stateful step reported: ``out`` (results), ``routed:<agent>``,
        ``error:<type>`` (dead letters) and join events (late, partial, ...).

        >>> m = AgentMetrics("demo", "vote", 0)
        >>> m.step_events({"out": 2, "late": 1, "routed:b": 3, "error:CodecError": 1})
        >>> m.registry.get_sample_value("streamcompose_join_events_total", {"topology":
        ...     "demo", "agent": "vote", "replica": "0", "event": "late"})
        1.0
        """
        for name, n in events.items():
            kind, _, what = name.partition(":")
            if kind == "out":
                self.records_out.inc(n)
            elif kind == "routed":
                self.routed(what, n)
            elif kind == "error":
                self.error(what, n)
            elif kind == "expired":
                self.expired.inc(n)
            elif n:
                self.join_event(name, n)

    def serve(self, port: int = 0) -> int:
        """Serve the metrics over HTTP; returns the port (a free one when 0 is given)."""
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        return server.server_port
