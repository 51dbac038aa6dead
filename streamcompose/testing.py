"""An in-process harness: run a topology's agents on a list of requests without Kafka.

The same steps, runtimes, joiners and routers as the deployed workers run, in
topological order; every hop encodes and decodes payloads as the wire does, so what
passes here passes the codec too. Timeouts are not simulated: a join still missing
branches when the input is exhausted is treated as timed out (``on_timeout``), and a
fallback's primary counts as silent only when it dead-letters the request.

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

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from streamcompose.agent.steps import Emission, Outcome, Step, build_step, merge_result
from streamcompose.codec import decode_payload, encode_payload
from streamcompose.codec.record import EXPECT, new_request_id
from streamcompose.join.aggregate import Aggregator
from streamcompose.runtimes import RecordError
from streamcompose.topology.model import Topology

__all__ = ["LocalRecord", "LocalRun", "LocalRunner"]


@dataclass(frozen=True)
class LocalRecord:
    """A record the harness produced: request id, payload, topic and agents passed."""

    id: str
    payload: dict[str, Any]
    topic: str
    path: tuple[str, ...]
    headers: tuple[tuple[str, bytes], ...] = ()


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
    """Loads every agent of a topology once; :meth:`run` can be called many times."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.steps: dict[str, Step] = {}
        self.joins: dict[str, Aggregator] = {}
        for agent in topology.agents:
            if agent.join is not None:
                self.joins[agent.name] = Aggregator(agent.join, topology.base_dir, agent.name)
            elif agent.kind != "fallback":
                self.steps[agent.name] = build_step(topology, agent.name)

    def run(self, requests: list[dict[str, Any]] | list[tuple[str, dict[str, Any]]]
            ) -> LocalRun:
        """Pass the requests (payloads, or (request id, payload) pairs) through the graph."""
        t = self.topology
        out = LocalRun(output=t.output_topic, dlq=t.dlq_topic)
        for item in requests:
            rid, payload = item if isinstance(item, tuple) else (new_request_id(), item)
            out.topics[t.input_topic].append(LocalRecord(rid, _wire(payload), t.input_topic, ()))
        returning = {a for f in t.agents if f.kind == "fallback" for a in t.targets(f.name)}
        for name in t.order():
            if name in returning:
                continue
            records = [r for topic in self._request_topics(name) for r in out.topics[topic]]
            if name in self.joins:
                self._join(name, records, out)
            elif t.agent(name).kind == "fallback":
                self._fallback(name, records, out)
            else:
                self._step(name, records, out)
        return out

    def _request_topics(self, name: str) -> list[str]:
        """The topics an agent reads, less a fallback router's return topics."""
        t = self.topology
        return list(dict.fromkeys(t.edge_topic(s, name) if name in t.targets(s)
                                  else t.topic_of(s) for s in t.agent(name).inputs))

    def _step(self, name: str, records: list[LocalRecord], out: LocalRun) -> None:
        size = self.topology.agent(name).batch.max_size
        for i in range(0, len(records), size):
            batch = records[i:i + size]
            done = self.steps[name]([(r.id, r.payload) for r in batch])
            for record, outcome in zip(batch, done, strict=True):
                self._deliver(name, record, outcome, out)

    def _deliver(self, name: str, record: LocalRecord, outcome: Outcome, out: LocalRun,
                 extra: dict[str, Any] | None = None) -> None:
        path = (*record.path, name)
        if isinstance(outcome, RecordError):
            out.topics[self.topology.dlq_of(name)].append(LocalRecord(
                record.id, {"agent": name, "error": outcome.message}, self.topology.dlq_of(name),
                path))
            return
        for e in outcome:
            merged = merge_result(record.payload, {**e.fields, **(extra or {})},
                                  self.topology.agent(name).drop)
            out.topics[e.topic].append(LocalRecord(record.id, _wire(merged), e.topic, path,
                                                   (*record.headers, *e.headers)))

    def _join(self, name: str, records: list[LocalRecord], out: LocalRun) -> None:
        t, spec = self.topology, self.topology.agent(name)
        assert spec.join is not None
        branch_of = {t.topic_of(b): b for b in spec.inputs}
        by_request: dict[str, dict[str, LocalRecord]] = defaultdict(dict)
        for r in records:
            by_request[r.id].setdefault(branch_of[r.topic], r)
        for seen in by_request.values():
            expect = dict(next(iter(seen.values())).headers).get(EXPECT)
            wanted = expect.decode().split(",") if expect else list(spec.inputs)
            needed = len(wanted) if expect else spec.join.needed(len(spec.inputs))
            arrived = list(seen)[:needed]
            branches = [(b, seen[b].payload) for b in spec.inputs if b in arrived]
            first = seen[branches[0][0]]
            missing = [b for b in wanted if b not in arrived]
            if missing and spec.join.on_timeout == "dlq":
                fused: Any = RecordError(f"join timed out; missing: {', '.join(missing)}")
            else:
                fused = self.joins[name]([branches])[0]
                fused = RecordError(str(fused)) if isinstance(fused, Exception) else fused
            extra = {"missing": missing} if missing else {}
            outcome = fused if isinstance(fused, RecordError) else [
                Emission(t.topic_of(name), {**branches[0][1], **fused})]
            self._deliver(name, first, outcome, out, extra)

    def _fallback(self, name: str, records: list[LocalRecord], out: LocalRun) -> None:
        router = self.topology.agent(name).router
        assert router is not None and router.primary and router.backup
        for record in records:
            for target in (router.primary, router.backup):
                outcome = self.steps[target]([(record.id, record.payload)])[0]
                if not isinstance(outcome, RecordError):
                    fields = {**outcome[0].fields, "served_by": target}
                    self._deliver(name, record, [Emission(self.topology.topic_of(name),
                                                          fields)], out)
                    break
                self._deliver(target, record, outcome, out)


def _wire(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload as the next hop decodes it."""
    return decode_payload(encode_payload(payload))
