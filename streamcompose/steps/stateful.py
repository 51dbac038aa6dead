"""Stateful steps: joiners and fallback routers. Unlike a model's step, which answers
each request from its own record, a stateful step keeps open requests in a
:class:`~streamcompose.steps.store.RequestStore` and answers when a rule says so (all
branches arrived, a deadline passed). It sees consumed records as :class:`Arrival` and
returns the records to send as :class:`Send`, changelog records included; the worker
core does the rest (transactions, restoring the store, the clock). Nothing here touches
Kafka, so the same step runs in the workers and in :class:`~streamcompose.testing.LocalRunner`.
"""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from streamcompose.codec import MSGPACK, Trace
from streamcompose.codec.deadletter import dead_letter_value, error_reason
from streamcompose.codec.lineage import with_lineage
from streamcompose.observe.tracing import hop_tracer, traceparent_of
from streamcompose.serving.deadline import deadline_header, deadline_of, expired_error, with_default
from streamcompose.steps.base import result_content_type
from streamcompose.steps.store import Entry, RequestStore
from streamcompose.topology.model import Topology

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Arrival:
    """A consumed record as a stateful step sees it."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    value: bytes | None
    trace: Trace


@dataclass
class RequestEntry(Entry):
    """An open request of a stateful step: with when it entered the topology, the
    agents it passed and their lineage, so that its answer carries its trace on."""

    entered_ms: int = 0
    path: list[str] = field(default_factory=list)
    deadline: int | None = None  # ms since the epoch (header sc-deadline)
    traces: list[str] = field(default_factory=list, kw_only=True)  # its records' traceparents
    lineage: list[dict[str, Any]] = field(default_factory=list, kw_only=True)

    def traced(self, trace: Trace) -> None:
        """Remember the trace context a record of this request carried."""
        parent = traceparent_of(trace)
        if parent and parent not in self.traces:
            self.traces.append(parent)

    def trace(self, request_id: str, agent: str) -> Trace:
        """The trace of this request's answer, written by ``agent``."""
        extra = [deadline_header(self.deadline)] if self.deadline is not None else []
        if self.lineage:
            extra = with_lineage(extra, self.lineage)
        return Trace(request_id, self.entered_ms, (*self.path, agent), extra=tuple(extra))

    def take_deadline(self, trace: Trace) -> None:
        """Keep the earliest deadline of the request's records."""
        found = deadline_of(trace)
        if found is not None and (self.deadline is None or found < self.deadline):
            self.deadline = found

    def expired(self, now: int) -> bool:
        return self.deadline is not None and now >= self.deadline


@dataclass(frozen=True)
class Send:
    """A record to send; ``partition`` is the partition number of the request."""

    topic: str
    value: bytes | None
    key: bytes
    partition: int
    headers: Headers = field(default_factory=list)


class StatefulStep(ABC):
    """A step with open requests; subclasses say what a record and a passing moment do.

    ``events`` counts what happened (``late``, ``duplicate``, ``partial``, ``timeout``,
    ``fallback``, ``out``, ``routed:<agent>``, ``error:<type>``) for the metrics."""

    stateful = True
    store: RequestStore

    def __init__(self, topology: Topology, agent: str) -> None:
        self.topology, self.agent = topology, agent
        self.changelog = topology.changelog_topic(agent)
        self.out_topic = topology.topic_of(agent)
        self.out_type = result_content_type(topology, agent)
        self.events: Counter[str] = Counter()
        self.now = 0
        self.look_s = 0.0
        self._sends: list[Send] = []
        self.tracing = hop_tracer(agent)

    def remember_trace(self, entry: RequestEntry, trace: Trace) -> None:
        """With tracing on, keep the trace context of a record of an open request."""
        if self.tracing is not None:
            entry.traced(trace)

    def answer_trace(self, request_id: str, entry: RequestEntry) -> Trace:
        """The trace of the answer to an open request: with tracing on, under a span
        that joins the traces of the records it was made of."""
        trace = entry.trace(request_id, self.agent)
        return trace if self.tracing is None else self.tracing.joined(
            trace, entry.traces, entry.first_ms)

    def warmup(self) -> None:  # noqa: B027 - most stateful steps need none
        """Prepare before consuming (a meta-model's first call)."""

    @abstractmethod
    def on_record(self, arrival: Arrival) -> None:
        """Take one consumed record into the state; :meth:`send` what it answers."""

    @abstractmethod
    def due(self, now: int) -> list[str]:
        """Open requests whose time is up at ``now``."""

    @abstractmethod
    def on_due(self, request_ids: list[str], now: int) -> None:
        """Answer (or move on) the requests whose time is up."""

    def ready(self) -> list[str]:
        """Open requests due whatever the time (a complete join); :meth:`due` says them
        with the rest."""
        return []

    def handle(self, arrivals: Iterable[Arrival], now: int, changes: bool = True,
               timers: bool = True) -> list[Send]:
        """Take a batch of records, then what is due at ``now``; returns every record to
        send, changelog records last. With ``changes`` False the changelog records wait
        for a later call (:meth:`changes`): a request changed by several calls is then
        written once, as it stands when the changes are taken. With ``timers`` False
        only what is :meth:`ready` is answered: looking at every open request's time is
        left to a later call; :attr:`look_s` says how long the last look took."""
        self.now = now
        for arrival in arrivals:
            self.on_record(arrival)
        if timers:
            started = time.perf_counter()
            due = self.due(now)
            self.look_s = time.perf_counter() - started
        else:
            due = self.ready()
        if due:
            self.on_due(due, now)
        self.store.expire(now)
        sends, self._sends = self._sends, []
        return sends + self.changes() if changes else sends

    def changes(self) -> list[Send]:
        """The changelog records that bring the stored state up to date."""
        return [Send(self.changelog, value, key, partition)
                for partition, key, value in self.store.take_changes()]

    def send(self, topic: str, value: bytes, trace: Trace, partition: int,
             content_type: str = MSGPACK) -> None:
        self._sends.append(Send(topic, value, trace.key, partition, trace.headers(content_type)))

    def dead_letter(self, trace: Trace, partition: int, original: bytes, topic: str,
                    error: Exception, offset: int = -1) -> None:
        """Dead-letter a request (``offset`` -1: it stems from several records)."""
        self.events[f"error:{error_reason(error)}"] += 1
        self.send(self.topology.dlq_topic, dead_letter_value(
            original, agent=self.agent, topic=topic, partition=partition, offset=offset,
            error=error), trace, partition)

    def arrived(self, arrival: Arrival) -> Trace:
        """The arrival's trace with this agent's default deadline where it has none."""
        return with_default(arrival.trace, self.topology.deadline_of(self.agent))

    def expire(self, trace: Trace, partition: int, topic: str) -> None:
        """Dead-letter a request whose deadline passed (``trace`` carries it)."""
        self.events["expired"] += 1
        self.dead_letter(trace, partition, b"", topic, expired_error(trace, self.agent,
                                                                      self.now))

    def opens(self, request_id: str) -> bool:
        """Whether a record of ``request_id`` would open a request that counts against
        :meth:`room`."""
        return False

    def room(self, resuming: bool = False) -> int:
        """How many more requests may be opened now; ``resuming``: by a partition that
        waited for room, which goes on with a margin."""
        return sys.maxsize

    def unread(self, topics: Iterable[str], now: int) -> None:  # noqa: B027 - as resumed
        """Input ``topics`` hold records not read yet at ``now`` (the worker is behind
        their writers, who are not silent)."""

    def resumed(self, now: int) -> None:  # noqa: B027 - most stateful steps need nothing
        """The step runs again from ``now`` (ms), its state restored after an assignment."""

    def restore(self, key: bytes, value: bytes | None) -> None:
        self.store.restore(key, value)

    def forget(self, partitions: Iterable[int]) -> None:
        self.store.forget(partitions)


__all__ = ["Arrival", "RequestEntry", "Send", "StatefulStep"]
