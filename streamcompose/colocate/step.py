"""The step of a co-located group: its members' steps run on one batch, in memory.

The group's worker batches what it consumes like any agent, then this step passes the
batch through the members in waves (:func:`~streamcompose.topology.colocate.levels`):
each member takes the records its in-group sources gave it (or, for a member that reads
from outside, the consumed records of its topics) in batches of its own ``max_size``;
the members of one wave (a fan-out's branches) run at once on a thread pool (ONNX
Runtime and torch release the GIL) or one after the other, whichever has been faster
(:class:`~streamcompose.colocate.overlap.OverlapChoice`), and a joiner joins in memory
(:class:`~streamcompose.colocate.join.GroupJoin`). What a member sends to a topic read
outside the group, a dead letter, or (with ``inspect``) any result becomes a
:class:`GroupOutput` of the consumed record, which the worker sends with the record's
offset, under the group's delivery: one transaction under exactly-once.

>>> from streamcompose.topology import load_topology_text
>>> t = load_topology_text('''
... name: demo
... colocate: {pair: [a, b]}
... agents:
...   a: {inputs: [$input], model: {runtime: python, entrypoint: "copy:copy"}}
...   b: {inputs: [a], model: {runtime: python, entrypoint: "copy:copy"}}
... ''')
>>> [(o.agent, o.topic, o.path) for o in GroupStep(t, "pair")([("r1", {"x": 1})])[0]]
[('b', 'demo.out', ('a', 'b'))]
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from streamcompose.codec import MSGPACK
from streamcompose.codec.reasons import exception_text
from streamcompose.codec.record import EXPECT
from streamcompose.colocate.join import GroupJoin
from streamcompose.colocate.overlap import OverlapChoice
from streamcompose.runtimes import RecordError
from streamcompose.steps.base import Emission, Request, Step, merge_result, result_content_type
from streamcompose.topology import colocate
from streamcompose.topology.model import Topology

Headers = tuple[tuple[str, bytes], ...]


class GroupObserver(Protocol):
    """What a group's worker learns of its members, for their metrics."""

    def called(self, member: str, size: int, seconds: float) -> None:
        """A member ran a batch of ``size`` records in ``seconds``."""

    def counted(self, member: str, events: Counter[str]) -> None:
        """What a member did with a batch: ``out``, ``routed:<agent>``, ``error:<type>``,
        ``partial``."""


class GroupRequest(dict):
    """A consumed record's payload, with the topic it came from and its extra headers (a
    gate's ``sc-expect``), which the members reading from outside and the joiners need."""

    __slots__ = ("headers", "topic")

    def __init__(self, payload: dict[str, Any], topic: str, headers: Headers = ()) -> None:
        super().__init__(payload)
        self.topic, self.headers = topic, headers


@dataclass(frozen=True, slots=True)
class GroupOutput:
    """A record the group sends for a consumed record: ``payload`` (whole, not merged
    into the consumed one) on ``topic`` from ``agent`` after the in-group ``path``, or
    ``error`` for the dead-letter topic, naming the member that failed."""

    agent: str
    topic: str
    payload: dict[str, Any]
    path: tuple[str, ...]
    headers: Headers = ()
    content_type: str = MSGPACK
    target: str | None = None
    error: RecordError | None = None


class _Work(NamedTuple):
    """A request waiting for a member: which consumed record it stems from."""

    index: int
    request_id: str
    payload: dict[str, Any]
    path: tuple[str, ...]
    headers: Headers


class GroupStep(Step):
    """Runs a co-located group's members on a batch of consumed records."""

    def __init__(self, topology: Topology, name: str) -> None:
        from streamcompose.kinds import build_step  # kinds registers this step

        group = topology.group(name)
        assert group is not None
        self.topology, self.name, self.group = topology, name, group
        self.waves = colocate.levels(topology, group)
        self.entries = colocate.entries(topology, group)
        hidden = () if group.inspect else colocate.internal_topics(topology, group)
        self.hidden = set(hidden)
        inside = set(group.members)
        self.readers: dict[str, list[str]] = defaultdict(list)  # in-group topic -> members
        for m in group.members:
            for src in topology.agent(m).inputs:
                if src in inside:
                    self.readers[colocate.input_topic(topology, src, m)].append(m)
        self.specs = {m: topology.agent(m) for m in group.members}
        self.out_topics = {m: topology.topic_of(m) for m in group.members}
        self.dlqs = {m: topology.dlq_of(m) for m in group.members}
        self.content_types = {m: result_content_type(topology, m) for m in group.members}
        self.steps: dict[str, Step | GroupJoin] = {}
        for m, spec in self.specs.items():
            self.steps[m] = (GroupJoin(spec.join, spec.inputs, topology.base_dir, m)
                             if spec.join is not None else build_step(topology, m))
        self.pool = ThreadPoolExecutor(max(1, max(len(w) for w in self.waves) - 1),
                                       thread_name_prefix=f"group-{name}")
        self.observer: GroupObserver | None = None
        self.overlap = OverlapChoice()

    def warmup(self) -> None:
        for step in self.steps.values():
            step.warmup()

    def __call__(self, requests: list[Request]) -> list[list[GroupOutput]]:  # type: ignore[override]
        outputs: list[list[GroupOutput]] = [[] for _ in requests]
        inbox: dict[str, list[_Work]] = defaultdict(list)
        first_topic = next(iter(self.entries))
        for i, (rid, payload) in enumerate(requests):
            topic = getattr(payload, "topic", first_topic)
            headers = getattr(payload, "headers", ())
            for m in self.entries.get(topic, ()):
                inbox[m].append(_Work(i, rid, payload, (), headers))
        for level, wave in enumerate(self.waves):
            jobs = [(m, inbox.pop(m, [])) for m in wave]
            jobs = [(m, work) for m, work in jobs if work]
            done = self._run_wave(level, jobs)
            for (m, work), results in zip(jobs, done, strict=True):
                self._pass(m, work, results, inbox, outputs)
        return outputs

    def _run_wave(self, level: int, jobs: list[tuple[str, list[_Work]]]) -> list[list[Any]]:
        """Every job's outcomes: at once (the first in this thread, the others on the pool)
        or one after the other, as :attr:`overlap` chooses."""
        if len(jobs) < 2:
            return [self._run(*job) for job in jobs]
        concurrent = self.overlap.concurrent(level)
        began = time.perf_counter()
        if concurrent:
            pending = [self.pool.submit(self._run, *job) for job in jobs[1:]]
            done = [self._run(*jobs[0]), *(f.result() for f in pending)]
        else:
            done = [self._run(*job) for job in jobs]
        self.overlap.took(level, concurrent, time.perf_counter() - began,
                          sum(len(work) for _, work in jobs))
        return done

    def _run(self, member: str, work: list[_Work]) -> list[Any]:
        """The member's outcomes for ``work``: emissions or errors, one per request (for a
        joiner, one per consumed record among ``work``)."""
        step = self.steps[member]
        if isinstance(step, GroupJoin):
            return self._join(member, step, work)
        size = self.specs[member].batch.max_size
        outcomes: list[Any] = []
        for start in range(0, len(work), size):
            chunk = work[start:start + size]
            began = time.perf_counter()
            try:
                outcomes += step([(w.request_id, w.payload) for w in chunk])
            except Exception as exc:  # as the worker does: the chunk is dead-lettered
                outcomes += [RecordError(exception_text(exc, typed=True), agent=member)
                             ] * len(chunk)
            if self.observer is not None:
                self.observer.called(member, len(chunk), time.perf_counter() - began)
        return outcomes

    def _join(self, member: str, join: GroupJoin, work: list[_Work]) -> list[Any]:
        by_record: dict[int, dict[str, _Work]] = {}
        for w in work:
            by_record.setdefault(w.index, {}).setdefault(w.path[-1], w)
        records = list(by_record.values())
        expects = [_expect(next(iter(given.values())).headers) for given in records]
        began = time.perf_counter()
        joined = join([{b: w.payload for b, w in given.items()} for given in records],
                      expects)
        if self.observer is not None:
            self.observer.called(member, len(records), time.perf_counter() - began)
        outcomes = []
        for given, result in zip(records, joined, strict=True):
            first = given[result.first] if result.first else next(iter(given.values()))
            # a joined result carries no branch's extra headers on, as over Kafka
            first = _Work(first.index, first.request_id, first.payload, first.path, ())
            if result.error is not None:
                outcomes.append((first, RecordError(str(result.error), agent=member)))
            else:
                outcomes.append((first, [Emission(self.out_topics[member], result.fields,
                                                  content_type=self.content_types[member])]))
        return outcomes

    def _pass(self, member: str, work: list[_Work], results: list[Any],
              inbox: dict[str, list[_Work]], outputs: list[list[GroupOutput]]) -> None:
        """Hand each result to the members that read it, and keep what leaves the group."""
        drop = self.specs[member].drop
        is_join = isinstance(self.steps[member], GroupJoin)
        pairs = results if is_join else list(zip(work, results, strict=True))
        events: Counter[str] = Counter()
        for w, outcome in pairs:
            path = (*w.path, member)
            if isinstance(outcome, RecordError):
                events[f"error:{type(outcome).__name__}"] += 1
                outputs[w.index].append(GroupOutput(member, self.dlqs[member],
                                                    w.payload, path, w.headers,
                                                    error=outcome))
                continue
            for e in outcome:
                events["out" if e.target is None else f"routed:{e.target}"] += 1
                if is_join and "missing" in e.fields:  # a partial join's mark
                    events["partial"] += 1
                payload = merge_result(w.payload, e.fields, drop)
                headers = (*w.headers, *e.headers)
                for reader in self.readers.get(e.topic, ()):
                    inbox[reader].append(_Work(w.index, w.request_id, payload, path, headers))
                if e.topic not in self.hidden:
                    outputs[w.index].append(GroupOutput(member, e.topic, payload, path,
                                                        headers, e.content_type, e.target))
        if self.observer is not None:
            self.observer.counted(member, events)


def _expect(headers: Headers) -> list[str] | None:
    value = dict(headers).get(EXPECT)
    return value.decode().split(",") if value else None

