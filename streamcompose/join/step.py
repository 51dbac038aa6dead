"""The joiner: fuses the results several branch agents give for one request.

Each branch writes to its own topic; the joiner reads them all (co-partitioned: one
request's records share a partition number) and keeps each request's branch results
until its :class:`~streamcompose.join.rules.JoinRule` says it is complete, it times out
or it is evicted (more than ``max_pending`` restored), then emits exactly one result.
Branch results that arrive after that are counted as late and dropped; repeated ones as
duplicates.

A request times out ``timeout_ms`` after its first branch result (by that record's
timestamp) once every branch it misses has nothing more to give it
(:class:`~streamcompose.join.progress.BranchProgress`): a branch that is behind but
still delivering is waited for. At ``max_pending`` open requests, a record that would
open another waits (:meth:`JoinStep.room`: the worker pauses its partition) until one
closes, so that branches running ahead of a slow sibling wait for it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from streamcompose.codec import decode_payload, encode_payload
from streamcompose.codec.lineage import merge_lineage, read_lineage
from streamcompose.codec.record import EXPECT
from streamcompose.errors import RequestExpiredError, StreamComposeError
from streamcompose.join.aggregate import Aggregator
from streamcompose.join.progress import BranchProgress, ProgressLook
from streamcompose.join.rules import JoinRule, Verdict
from streamcompose.join.strategies import StrategyError
from streamcompose.serving.deadline import expired_error
from streamcompose.steps.base import merge_result
from streamcompose.steps.stateful import Arrival, RequestEntry, StatefulStep
from streamcompose.steps.store import RequestStore
from streamcompose.topology.model import Topology


@dataclass
class JoinEntry(RequestEntry):
    """An open join: the branches a router said to expect, and the raw results of the
    branches that answered so far."""

    expect: list[str] | None = None
    branches: dict[str, bytes] = field(default_factory=dict)


class JoinStep(StatefulStep):
    """The rules of one joiner agent."""

    def __init__(self, topology: Topology, agent: str) -> None:
        super().__init__(topology, agent)
        spec = topology.agent(agent)
        assert spec.join is not None
        self.join, self.drop = spec.join, spec.drop
        self.rule = JoinRule(spec.join, spec.inputs)
        self.progress = BranchProgress(spec.join.timeout_ms)
        self.branch_of = {topology.topic_of(b): b for b in spec.inputs}
        self.aggregate = Aggregator(spec.join, topology.base_dir, agent)
        self.store: RequestStore[JoinEntry] = RequestStore(
            JoinEntry, spec.join.remember_ms, spec.join.remember_max)
        self._complete: dict[str, None] = {}
        self._evicted = 0

    def warmup(self) -> None:
        self.aggregate.warmup()

    def on_record(self, arrival: Arrival) -> None:
        rid, branch = arrival.trace.request_id, self.branch_of[arrival.topic]
        self.progress.saw(branch, arrival.partition, arrival.trace.entered_ms, self.now)
        if self.store.is_done(rid):
            self.events["late"] += 1
            return
        if not self.store.is_pending(rid):
            expect = dict(arrival.trace.extra).get(EXPECT)
            self.store.open(rid, JoinEntry(arrival.partition, arrival.timestamp,
                                           arrival.trace.entered_ms, list(arrival.trace.path),
                                           expect=expect.decode().split(",") if expect
                                           else None))
        entry = self.store.pending_entry(rid)
        entry.take_deadline(self.arrived(arrival))
        if not self.rule.accepts(entry.branches, branch, entry.expect):
            self.events["duplicate" if branch in entry.branches else "late"] += 1
            return
        entry.branches[branch] = arrival.value or b""
        entry.lineage = merge_lineage(entry.lineage, read_lineage(arrival.trace.extra))
        self.remember_trace(entry, arrival.trace)
        entry.entered_ms = min(entry.entered_ms, arrival.trace.entered_ms)
        self.store.changed(rid)
        if self.rule.verdict(entry.branches, entry.expect).complete:
            self._complete[rid] = None

    def ready(self) -> list[str]:
        self._evicted = 0
        return list(self._complete)

    def due(self, now: int) -> list[str]:
        """Completed requests, those whose timeout or deadline passed, and the oldest
        beyond ``max_pending``."""
        due = dict(self._complete)
        aged = now - self.join.timeout_ms
        look = self.progress.look(now, self.rule.branches)
        open_ = self.store.open_entries()
        due.update((rid, None) for rid, e in open_
                   if e.expired(now) or (e.first_ms <= aged and self._given_up(e, look)))
        excess = len(open_) - len(due) - self.join.max_pending
        evicted = list(itertools.islice((rid for rid, _ in open_ if rid not in due),
                                        max(excess, 0)))
        due.update((rid, None) for rid in evicted)
        self._evicted = len(evicted)
        return list(due)

    def _given_up(self, entry: JoinEntry, look: ProgressLook) -> bool:
        """Whether no branch the request still misses has anything more to give it (of
        the joiner's inputs, or of the experts a gate named)."""
        if entry.expect is None and not look.may_give_up(entry.partition, entry.entered_ms):
            return False
        return look.gave_up(self.rule.missing(entry.branches, entry.expect), entry.partition,
                            entry.entered_ms, entry.first_ms)

    def opens(self, request_id: str) -> bool:
        return not self.store.is_pending(request_id) and not self.store.is_done(request_id)

    def room(self, resuming: bool = False) -> int:
        margin = self.join.max_pending // 10 if resuming else 0
        return self.join.max_pending - margin - self.store.pending_count()

    def resumed(self, now: int) -> None:
        self.progress.resumed(now)

    def unread(self, topics: Iterable[str], now: int) -> None:
        for topic in topics:
            self.progress.unread(self.branch_of[topic], now)

    def forget(self, partitions: Iterable[int]) -> None:
        partitions = list(partitions)
        super().forget(partitions)
        self.progress.forget(partitions)

    def on_due(self, request_ids: list[str], now: int) -> None:
        self.events["evicted"] += self._evicted
        self._complete = {}
        jobs = [self._prepare(rid) for rid in request_ids]
        fused = iter(self.aggregate([b for _, _, _, b in jobs if not isinstance(b, Exception)]))
        for rid, entry, verdict, branches in jobs:
            self.store.answer(rid, now)
            result = branches if isinstance(branches, Exception) else next(fused)
            self._finish(rid, entry, verdict, branches, result)

    def _prepare(self, rid: str) -> tuple[str, JoinEntry, Verdict, Any]:
        entry = self.store.pending_entry(rid)
        verdict = self.rule.verdict(entry.branches, entry.expect)
        if entry.expired(self.now):
            return rid, entry, verdict, expired_error(entry.trace(rid, self.agent), self.agent,
                                                      self.now)
        if verdict.dead_letter:
            return rid, entry, verdict, StrategyError(
                f"join timed out after {self.join.timeout_ms:g} ms; missing: "
                f"{', '.join(verdict.missing)}")
        try:
            return rid, entry, verdict, [(b, decode_payload(entry.branches[b]))
                                         for b in verdict.answered]
        except StreamComposeError as exc:
            return rid, entry, verdict, exc

    def _finish(self, rid: str, entry: JoinEntry, verdict: Verdict, branches: Any,
                result: Any) -> None:
        trace = self.answer_trace(rid, entry)
        if not isinstance(result, Exception):
            missing = {"missing": list(verdict.missing)} if verdict.missing else {}
            payload = merge_result(branches[0][1], {**result, **missing}, self.drop)
            try:
                value = encode_payload(payload, self.out_type)
            except StreamComposeError as exc:  # an aggregator's result, say
                result = StrategyError(f"the joined result cannot be encoded: {exc}")
        if isinstance(result, Exception):
            if isinstance(result, RequestExpiredError):
                self.events["expired"] += 1
            elif verdict.dead_letter:
                self.events["timeout"] += 1
            self.dead_letter(trace, entry.partition, encode_payload(entry.branches),
                             ",".join(self.branch_of), result)
            return
        if not verdict.complete:
            self.events["partial"] += 1
        self.send(self.out_topic, value, trace, entry.partition, self.out_type)
        self.events["out"] += 1
