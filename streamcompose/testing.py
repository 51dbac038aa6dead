"""An in-process harness: run a topology's agents on a list of requests without Kafka.

The same steps as the deployed workers run (:func:`streamcompose.kinds.build_step`):
model agents, routers, joiners and fallback routers, with the same join and fallback
rules. Records pass through in-memory topics of one partition, encoded and decoded as
the wire does, until no agent has anything left to read; then, while a joiner or
fallback router still has open requests, time jumps a minute forward so that whatever
waits on a timeout (a join missing branches, a silent primary) is decided by the step's
own rule, and the run goes on. Time never runs backwards, so a result arriving after a
request was answered is dropped as late, as in the workers. With tracing on
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
from dataclasses import dataclass, field
from typing import Any

from streamcompose.codec import MSGPACK, Trace, decode_payload, encode_payload
from streamcompose.codec.deadletter import dead_letter_value
from streamcompose.codec.reasons import exception_text
from streamcompose.codec.record import new_request_id
from streamcompose.colocate.step import GroupOutput, GroupRequest, GroupStep
from streamcompose.kinds import build_step
from streamcompose.observe import tracing
from streamcompose.runtimes import RecordError
from streamcompose.steps.base import Emission, Outcome, merge_result
from streamcompose.steps.stateful import Arrival, Send, StatefulStep
from streamcompose.topology.model import Topology

__all__ = ["LocalRecord", "LocalRun", "LocalRunner"]
TIME_STEP_MS = 60_000  # how far time jumps when nothing else moves


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
    stateful steps start each run empty)."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.steps = {name: build_step(topology, name) for name in topology.units()}
        self.tracers: dict[str, tracing.HopTracer | None] = {}

    def run(self, requests: list[dict[str, Any]] | list[tuple[str, dict[str, Any]]]
            ) -> LocalRun:
        """Pass the requests (payloads, or (request id, payload) pairs) through the graph."""
        t = self.topology
        for name, step in self.steps.items():
            if isinstance(step, StatefulStep):
                self.steps[name] = build_step(t, name)
        out = LocalRun(output=t.output_topic, dlq=t.dlq_topic)
        self.tracers = {name: tracing.hop_tracer(name) for name in t.units()}
        for item in requests:
            rid, payload = item if isinstance(item, tuple) else (new_request_id(), item)
            span, headers = tracing.start_request(f"publish {t.name}", rid)
            out.topics[t.input_topic].append(LocalRecord(rid, _wire(payload), t.input_topic, (),
                                                         tuple(headers)))
            if span is not None:
                span.end()
        read: dict[tuple[str, str], int] = defaultdict(int)
        now = 0
        while True:
            moved = False
            for name in t.units():
                for topic in t.input_topics(name):
                    records = out.topics[topic][read[name, topic]:]
                    read[name, topic] += len(records)
                    if records:
                        moved = True
                        now += 1
                        self._feed(name, records, read[name, topic] - len(records), now, out)
            if not moved:
                stateful = [s for s in self.steps.values() if isinstance(s, StatefulStep)]
                if not any(s.store.pending_count() for s in stateful):
                    return out
                now += TIME_STEP_MS  # until the steps' own rules decide what waits
                for step in stateful:
                    self._sent(step, step.handle([], now), out)

    def _feed(self, name: str, records: list[LocalRecord], first_offset: int, now: int,
              out: LocalRun) -> None:
        step = self.steps[name]
        if isinstance(step, StatefulStep):
            arrivals = [r.arrival(first_offset + i, now) for i, r in enumerate(records)]
            self._sent(step, step.handle(arrivals, now), out)
            return
        size, tracer = self.topology.agent(name).batch.max_size, self.tracers[name]
        for i in range(0, len(records), size):
            batch = records[i:i + size]
            hops = [tracer.received(r.id, r.headers) if tracer else None for r in batch]
            started = time.time_ns()
            try:
                outcomes = step([(r.id, GroupRequest(r.payload, r.topic, r.headers)
                                  if isinstance(step, GroupStep) else r.payload) for r in batch])
            except Exception as exc:  # as the worker does: the batch is dead-lettered
                outcomes = [RecordError(exception_text(exc, typed=True), agent=name)] * len(batch)
            if tracer:
                tracer.batch([h for h in hops if h], started, time.time_ns())
            for record, outcome, hop in zip(batch, outcomes, hops, strict=True):
                self._deliver(name, record, outcome, out, hop)
            tracing.HopTracer.done(hops)

    @staticmethod
    def _sent(step: StatefulStep, sends: list[Send], out: LocalRun) -> None:
        for s in sends:
            if s.value is not None and s.topic != step.changelog:
                trace = Trace.from_record(s.key, s.headers)
                out.topics[s.topic].append(LocalRecord(
                    trace.request_id, decode_payload(s.value, trace.content_type), s.topic,
                    trace.path, trace.extra))

    def _deliver(self, name: str, record: LocalRecord, outcome: Outcome | list[GroupOutput],
                 out: LocalRun, hop: tracing.Hop | None = None) -> None:
        path, headers = (*record.path, name), record.headers
        tracer = self.tracers[name]
        if hop is not None and tracer is not None:
            headers = tracer.produced(hop, Trace(record.id, 0, extra=headers), outcome
                                      if isinstance(outcome, RecordError) else None).extra
        if isinstance(outcome, RecordError):
            self._dead_letter(name, record, path, outcome, out)
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
                     error: RecordError, out: LocalRun) -> None:
        """A dead letter naming ``agent``, holding the record it stems from."""
        dlq = self.topology.dlq_of(agent)
        letter = dead_letter_value(encode_payload(record.payload), agent=agent,
                                   topic=record.topic, partition=0, offset=-1, error=error)
        out.topics[dlq].append(LocalRecord(record.id, decode_payload(letter), dlq, path))


def _wire(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as the next hop decodes it."""
    return decode_payload(encode_payload(payload))
