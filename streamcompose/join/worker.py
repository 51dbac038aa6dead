"""The joiner worker: fuses the results several branch agents give for one request.

Each branch writes to its own topic; the joiner reads them all (co-partitioned, see
:mod:`streamcompose.join.stateful`), keeps each request's branch results in its
changelog until the join completes (``mode``), times out (``timeout_ms``) or is evicted
(``max_pending``), and emits exactly one result per request. Branch results that
arrive after that are counted as late and dropped; redelivered ones (same request,
same branch) as duplicates.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import ConsumerRecord

from streamcompose.agent.steps import merge_result
from streamcompose.codec import Trace, decode_payload, encode_payload
from streamcompose.codec.record import EXPECT
from streamcompose.errors import StreamComposeError
from streamcompose.join.aggregate import Aggregator
from streamcompose.join.stateful import StatefulWorker
from streamcompose.join.store import Entry
from streamcompose.join.strategies import StrategyError


class JoinWorker(StatefulWorker):
    """Runs one replica of a joiner agent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert self.spec.join is not None
        self.join = self.spec.join
        self.remember_ms = self.join.remember_ms
        self.branches = list(self.spec.inputs)
        self.needed = self.join.needed(len(self.branches))
        self.branch_of = {self.topology.topic_of(b): b for b in self.branches}
        self.aggregate: Aggregator | None = None

    async def prepare(self) -> None:
        loop = asyncio.get_running_loop()
        self.aggregate = await loop.run_in_executor(
            None, Aggregator, self.join, self.topology.base_dir, self.agent)
        await loop.run_in_executor(None, self.aggregate.warmup)

    async def handle(self, records: list[ConsumerRecord], now: int) -> None:
        completed = [rid for r in records if (rid := await self._on_branch(r))]
        due = self.due(now)
        evicted = sum(now - self.store.pending_entry(rid).first_ms < self.join.timeout_ms
                      for rid in due)
        if evicted:
            self.metrics.join_event("evicted", evicted)
        await self._emit(completed + due, now)

    async def _on_branch(self, record: ConsumerRecord) -> str | None:
        """Add one branch result; returns the request id when it completed the join."""
        trace = Trace.from_record(record.key, record.headers)
        branch = self.branch_of[record.topic]
        expect = dict(trace.extra).get(EXPECT)
        entry = self.store.add_branch(record.partition, trace.request_id, branch,
                                      record.value or b"", first_ms=record.timestamp,
                                      entered_ms=trace.entered_ms, path=list(trace.path),
                                      limit=self.needed,
                                      expect=expect.decode().split(",") if expect else None)
        if entry is None:
            late = (self.store.is_done(trace.request_id)
                    or branch not in self.store.branches_of(trace.request_id))
            self.metrics.join_event("late" if late else "duplicate")
            return None
        await self.write_changelog(trace.request_id, record.partition, entry)
        done = len(entry.branches) >= entry.needed(self.needed)
        return trace.request_id if done else None

    def due(self, now: int) -> list[str]:
        """Requests whose timeout passed, and the oldest beyond ``max_pending``."""
        due = [rid for rid, e in self.store.pending() if now - e.first_ms >= self.join.timeout_ms]
        excess = self.store.pending_count() - len(due) - self.join.max_pending
        if excess > 0:
            due += [rid for rid, _ in self.store.pending() if rid not in due][:excess]
        return due

    async def _emit(self, request_ids: list[str], now: int) -> None:
        taken = [(rid, dict(self.store.branches_of(rid))) for rid in dict.fromkeys(request_ids)]
        if not taken:
            return
        decoded: list[list[tuple[str, dict[str, Any]]] | StreamComposeError] = []
        for _, seen in taken:
            try:
                decoded.append([(b, decode_payload(seen[b])) for b in self.branches
                                if b in seen])
            except StreamComposeError as exc:
                decoded.append(exc)
        assert self.aggregate is not None
        fused = iter(await asyncio.get_running_loop().run_in_executor(
            None, self.aggregate, [d for d in decoded if not isinstance(d, Exception)]))
        for (rid, seen), branches in zip(taken, decoded, strict=True):
            entry = self.store.mark_done(rid, now)
            result = branches if isinstance(branches, Exception) else next(fused)
            await self._finish(rid, entry, seen, branches, result)
            await self.write_changelog(rid, entry.partition, entry)

    async def _finish(self, rid: str, entry: Entry, seen: dict[str, bytes], branches: Any,
                      result: Any) -> None:
        missing = [b for b in entry.expect or self.branches if b not in seen]
        complete = len(seen) >= entry.needed(self.needed)
        trace = Trace(rid, entry.entered_ms, (*entry.path, self.agent))
        if not complete and self.join.on_timeout == "dlq":
            self.metrics.join_event("timeout")
            result = StrategyError(f"join timed out after {self.join.timeout_ms:g} ms; "
                                   f"missing: {', '.join(missing)}")
        if isinstance(result, Exception):
            await self.dead_letter(trace, entry.partition, encode_payload(dict(seen)),
                                   ",".join(self.branch_of), result)
            return
        if not complete:
            self.metrics.join_event("partial")
        payload = merge_result(branches[0][1], {**result, **({"missing": missing}
                                                              if not complete else {})},
                               self.spec.drop)
        await self.send(self.out_topic, encode_payload(payload, self.out_type), trace,
                        entry.partition, self.out_type)
        self.metrics.records_out.inc()
