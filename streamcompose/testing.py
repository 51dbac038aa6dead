"""An in-process harness: run a topology's agents on a list of requests without Kafka.

The same steps as the deployed workers run (:func:`streamcompose.kinds.build_step`):
model agents, routers, joiners and fallback routers, with the same join and fallback
rules, and before a model agent's or router's step the same serving gate
(:class:`~streamcompose.serving.gate.ServingGate`: deadlines, the result cache). Records
pass through in-memory topics of one partition, encoded and decoded as the wire does,
until no agent has anything left to read; then, while a joiner or fallback router still
has open requests, time moves forward to the first moment one of them has something due
(a join missing branches, a silent primary, a deadline; at most a minute per jump), the
step's own rule decides it, and the run goes on. The run has its own clock in
milliseconds: requests enter at 0, each batch an agent reads takes 1 ms, so a deadline
(``deadline_ms``) runs out as it would in a worker: not while requests merely pass from
agent to agent, but when they wait on a timeout longer than it. Time never runs
backwards, so a result arriving after a request was answered is dropped as late, as in
the workers. With tracing on
(:mod:`streamcompose.observe.tracing`), each request starts a trace as the client's do
and every hop records the spans the workers record. A co-located group runs as
its worker runs it: one step, its members passing records in memory.

>>> from streamcompose.topology import load_topology_text
>>> t = load_topology_text('''
... name: demo
... agents:
...   same: {inputs: [$input], model: {runtime: python, entrypoint: "copy:copy"}}
... ''')
>>> run = LocalRunner(t).run([{"x": 1}, {"x": 2}])
>>> [r.payload["x"] for r in run.results]
[1, 2]
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streamcompose.codec import MSGPACK, Trace, decode_payload, encode_payload
from streamcompose.codec.deadletter import dead_letter_value
from streamcompose.codec.reasons import exception_text
from streamcompose.codec.record import new_request_id
from streamcompose.colocate.step import GroupOutput, GroupRequest, GroupStep
from streamcompose.kinds import build_step
from streamcompose.metrics import AgentMetrics
from streamcompose.observe import tracing
from streamcompose.runtimes import RecordError
from streamcompose.serving.gate import ServingGate
from streamcompose.steps.base import Emission, Outcome, merge_result
from streamcompose.steps.stateful import Arrival, Send, StatefulStep
from streamcompose.topology.model import Topology

__all__ = ["LocalRecord", "LocalRun", "LocalRunner"]
TIME_STEP_MS = 60_000  # how far time jumps at most when nothing else moves


@dataclass(frozen=True)
class LocalRecord:
    """A record the harness produced: request id, payload, topic and agents passed."""

    id: str
    payload: dict[str, Any]
    topic: str
    path: tuple[str, ...]
    headers: tuple[tuple[str, bytes], ...] = ()

    def arrival(self, offset: int, now: int) -> Arrival:
        trace = Trace(self.id, 0, self.path, MSGPACK, self.headers)
        return Arrival(self.topic, 0, offset, now, encode_payload(self.payload), trace)


@dataclass
class _Served:
    """A record of a stateless agent's batch as the serving gate and the step see it
    (what the worker's ``Item`` is to a worker)."""

    record: LocalRecord
    trace: Trace
    payload: Any
    hop: tracing.Hop | None = None
    error: Exception | None = None
    emissions: Any = None


@dataclass
class LocalRun:
    """Everything a run produced, by topic; ``results`` are the output topic's records."""

    topics: dict[str, list[LocalRecord]] = field(default_factory=lambda: defaultdict(list))
    output: str = ""
    dlq: str = ""

    @property
    def results(self) -> list[LocalRecord]:
        return self.topics[self.output]

    @property
    def dead_letters(self) -> list[LocalRecord]:
        return self.topics[self.dlq]


class LocalRunner:
    """Loads every agent of a topology once; :meth:`run` can be called many times (the
    stateful steps, the result caches, the clock and ``metrics``, each agent's counters,
    start each run afresh)."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.steps = {name: build_step(topology, name) for name in topology.units()}
        self.tracers: dict[str, tracing.HopTracer | None] = {}
        self.now = 0  # the run's clock, ms
        self.metrics: dict[str, AgentMetrics] = {}
        self.gates: dict[str, ServingGate] = {}

    def run(self, requests: list[dict[str, Any]] | list[tuple[str, dict[str, Any]]]
            ) -> LocalRun:
        """Pass the requests (payloads, or (request id, payload) pairs) through the graph."""
        t = self.topology
        for name, step in self.steps.items():
            if isinstance(step, StatefulStep):
                self.steps[name] = build_step(t, name)
        out = LocalRun(output=t.output_topic, dlq=t.dlq_topic)
        self.tracers = {name: tracing.hop_tracer(name) for name in t.units()}
        self.now = 0
        self.metrics = {name: AgentMetrics(t.name, name, 0) for name in t.units()}
        self.gates = {name: ServingGate(t, name, self.metrics[name], clock=lambda: self.now)
                      for name, step in self.steps.items()
                      if not isinstance(step, StatefulStep)}
        for item in requests:
            rid, payload = item if isinstance(item, tuple) else (new_request_id(), item)
            span, headers = tracing.start_request(f"publish {t.name}", rid)
            out.topics[t.input_topic].append(LocalRecord(rid, _wire(payload), t.input_topic, (),
                                                         tuple(headers)))
            if span is not None:
                span.end()
        read: dict[tuple[str, str], int] = defaultdict(int)
        while True:
            moved = False
            for name in t.units():
                for topic in t.input_topics(name):
                    records = out.topics[topic][read[name, topic]:]
                    read[name, topic] += len(records)
                    if records:
                        moved = True
                        self.now += 1
                        self._feed(name, records, read[name, topic] - len(records), out)
            if not moved:
                stateful = [s for s in self.steps.values() if isinstance(s, StatefulStep)]
                if not any(s.store.pending_count() for s in stateful):
                    return out
                self.now = next_due(stateful, self.now)  # the steps' own rules decide
                for step in stateful:
                    self._sent(step, step.handle([], self.now), out)

    def _feed(self, name: str, records: list[LocalRecord], first_offset: int,
              out: LocalRun) -> None:
        step = self.steps[name]
        if isinstance(step, StatefulStep):
            arrivals = [r.arrival(first_offset + i, self.now) for i, r in enumerate(records)]
            self._sent(step, step.handle(arrivals, self.now), out)
            return
        size, tracer = self.topology.agent(name).batch.max_size, self.tracers[name]
        for i in range(0, len(records), size):
            batch = [_Served(r, Trace(r.id, 0, r.path, MSGPACK, r.headers),
                             GroupRequest(r.payload, r.topic, r.headers)
                             if isinstance(step, GroupStep) else r.payload,
                             tracer.received(r.id, r.headers) if tracer else None)
                     for r in records[i:i + size]]
            admission = self.gates[name].admit(batch)  # as the worker's _infer
            good = admission.to_model
            started = time.time_ns()
            try:
                outcomes = step([(s.record.id, s.payload) for s in good]) if good else []
            except Exception as exc:  # as the worker does: the batch is dead-lettered
                outcomes = [RecordError(exception_text(exc, typed=True), agent=name)] * len(good)
            if tracer:
                tracer.batch([s.hop for s in good if s.hop], started, time.time_ns())
            for served, outcome in zip(good, outcomes, strict=True):
                if isinstance(outcome, RecordError):
                    served.error = outcome
                else:
                    served.emissions = outcome
            self.gates[name].settle(admission)
            for served in batch:
                self._deliver(name, served, out)
            tracing.HopTracer.done([s.hop for s in batch])

    @staticmethod
    def _sent(step: StatefulStep, sends: list[Send], out: LocalRun) -> None:
        for s in sends:
            if s.value is not None and s.topic != step.changelog:
                trace = Trace.from_record(s.key, s.headers)
                out.topics[s.topic].append(LocalRecord(
                    trace.request_id, decode_payload(s.value, trace.content_type), s.topic,
                    trace.path, trace.extra))

    def _deliver(self, name: str, served: _Served, out: LocalRun) -> None:
        record, path, headers = served.record, (*served.record.path, name), served.trace.extra
        outcome: Outcome | list[GroupOutput] = served.emissions
        tracer = self.tracers[name]
        if served.hop is not None and tracer is not None:
            headers = tracer.produced(served.hop, served.trace, served.error).extra
        if served.error is not None:
            self._dead_letter(name, record, path, served.error, out)
            return
        if isinstance(self.steps[name], GroupStep):  # each output whole, from its member
            for o in outcome:
                assert isinstance(o, GroupOutput)
                path = (*record.path, *o.path)
                if o.error is not None:
                    self._dead_letter(o.agent, record, path, o.error, out)
                else:
                    out.topics[o.topic].append(LocalRecord(record.id, _wire(o.payload),
                                                           o.topic, path, o.headers))
            return
        for e in outcome:
            assert isinstance(e, Emission)
            merged = merge_result(record.payload, e.fields, self.topology.agent(name).drop)
            out.topics[e.topic].append(LocalRecord(record.id, _wire(merged), e.topic, path,
                                                   (*headers, *e.headers)))

    def _dead_letter(self, agent: str, record: LocalRecord, path: tuple[str, ...],
                     error: Exception, out: LocalRun) -> None:
        """A dead letter naming ``agent``, holding the record it stems from."""
        dlq = self.topology.dlq_of(agent)
        letter = dead_letter_value(encode_payload(record.payload), agent=agent,
                                   topic=record.topic, partition=0, offset=-1, error=error)
        out.topics[dlq].append(LocalRecord(record.id, decode_payload(letter), dlq, path))


def next_due(steps: Sequence[StatefulStep], now: int) -> int:
    """The first moment after ``now``, and at most :data:`TIME_STEP_MS` after it, at
    which one of ``steps`` has a request due: where a worker's clock would be when it
    decides that request (what is due at a moment stays due later on).

    >>> from streamcompose.topology import load_topology_text
    >>> t = load_topology_text('''
    ... name: demo
    ... agents:
    ...   a: {inputs: [$input], model: {runtime: python, entrypoint: "copy:copy"}}
    ...   b: {inputs: [$input], model: {runtime: python, entrypoint: "copy:copy"}}
    ...   both: {inputs: [a, b], join: {strategy: merge, timeout_ms: 1500}}
    ... ''')
    >>> join = build_step(t, "both")
    >>> _ = join.handle([LocalRecord("r1", {"x": 1}, t.topic_of("a"), ("a",)).arrival(0, 10)],
    ...                 10)
    >>> next_due([join], 10), next_due([join], 5_000), next_due([], 5_000)
    (1510, 5001, 65000)
    """
    low, high = now, now + TIME_STEP_MS
    if not any(s.due(high) for s in steps):
        return high
    while high - low > 1:
        middle = (low + high) // 2
        if any(s.due(middle) for s in steps):
            high = middle
        else:
            low = middle
    return high


def _wire(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as the next hop decodes it."""
    return decode_payload(encode_payload(payload))
