"""The fallback router: a request goes to the primary; when the primary dead-letters it
or gives no answer within ``deadline_ms``, it goes to the backup. Exactly one answer per
request reaches the output, with ``served_by`` naming the agent that gave it; a
primary's answer that comes after the fallback is counted as late and dropped.

The router reads its requests, both agents' answers and the dead letters
(co-partitioned, exactly once: see :mod:`streamcompose.join.stateful`) and keeps each
open request, with whether it fell back, in its changelog.
"""

from __future__ import annotations

from typing import Any

from aiokafka import ConsumerRecord

from streamcompose.codec import Trace, decode_payload, encode_payload
from streamcompose.errors import RequestTimeoutError, StreamComposeError
from streamcompose.join.stateful import StatefulWorker

REQUEST, FELL_BACK = "$request", "$fell-back"
BACKUP_GRACE_MS = 60_000


class FallbackWorker(StatefulWorker):
    """Runs one replica of a fallback router."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        router = self.spec.router
        assert router is not None and router.primary and router.backup
        self.primary, self.backup, self.deadline_ms = (router.primary, router.backup,
                                                       router.deadline_ms)
        t = self.topology
        self.edges = {a: t.edge_topic(self.agent, a) for a in (self.primary, self.backup)}
        self.answers = {t.topic_of(self.primary): self.primary,
                        t.topic_of(self.backup): self.backup}
        self.requests = set(t.input_topics(self.agent)) - set(self.answers) - {t.dlq_topic}

    def due(self, now: int) -> list[str]:
        """Requests still with the primary past the deadline, and requests the backup
        has not answered either within :data:`BACKUP_GRACE_MS` more."""
        return [rid for rid, e in self.store.pending()
                if now - e.first_ms >= self.deadline_ms + (
                    BACKUP_GRACE_MS if FELL_BACK in e.branches else 0)]

    async def handle(self, records: list[ConsumerRecord], now: int) -> None:
        for record in records:
            trace = Trace.from_record(record.key, record.headers)
            if record.topic in self.requests:
                await self._request(record, trace, now)
            elif record.topic in self.answers:
                await self._answer(record, trace, self.answers[record.topic], now)
            else:
                await self._dead_letter_seen(record, trace, now)
        for rid in self.due(now):
            if not self.store.is_pending(rid):
                continue
            if FELL_BACK not in self.store.branches_of(rid):
                await self._fall_back(rid, f"no answer within {self.deadline_ms:g} ms", now)
                continue
            entry = self.store.mark_done(rid, now)  # neither answered: say so, once
            trace = Trace(rid, entry.entered_ms, (*entry.path, self.agent))
            await self.dead_letter(trace, entry.partition, b"", self.edges[self.backup],
                                   RequestTimeoutError(
                                       f"neither {self.primary} nor {self.backup} answered "
                                       f"within {self.deadline_ms + BACKUP_GRACE_MS:g} ms",
                                       request_id=rid))
            await self.write_changelog(rid, entry.partition, entry)

    async def _request(self, record: ConsumerRecord, trace: Trace, now: int) -> None:
        try:  # stored as msgpack whatever it came as, so forwarding can label it so
            value = encode_payload(decode_payload(record.value, trace.content_type))
        except StreamComposeError as exc:
            await self.dead_letter(trace.passed(self.agent), record.partition,
                                   record.value or b"", record.topic, exc, record.offset)
            return
        entry = self.store.add_branch(record.partition, trace.request_id, REQUEST, value,
                                      first_ms=max(now, record.timestamp), entered_ms=trace.entered_ms,
                                      path=list(trace.path))
        if entry is None:
            self.metrics.join_event("duplicate")
            return
        await self.write_changelog(trace.request_id, record.partition, entry)
        await self._forward(trace.request_id, self.primary)

    async def _forward(self, rid: str, target: str) -> None:
        entry = self.store.pending_entry(rid)
        trace = Trace(rid, entry.entered_ms, (*entry.path, self.agent))
        await self.send(self.edges[target], entry.branches[REQUEST], trace, entry.partition)
        self.metrics.routed(target)

    async def _answer(self, record: ConsumerRecord, trace: Trace, agent: str, now: int) -> None:
        pending = self.store.is_pending(trace.request_id)
        fell_back = pending and FELL_BACK in self.store.branches_of(trace.request_id)
        if not pending or fell_back != (agent == self.backup):
            self.metrics.join_event("late")
            return
        try:
            payload = decode_payload(record.value, trace.content_type)
        except StreamComposeError as exc:
            entry = self.store.mark_done(trace.request_id, now)
            await self.dead_letter(trace, entry.partition, record.value or b"", record.topic,
                                   exc)
            await self.write_changelog(trace.request_id, entry.partition, entry)
            return
        entry = self.store.mark_done(trace.request_id, now)
        await self.send(self.out_topic, encode_payload({**payload, "served_by": agent},
                                                       self.out_type),
                        trace.passed(self.agent), entry.partition, self.out_type)
        await self.write_changelog(trace.request_id, entry.partition, entry)
        self.metrics.records_out.inc()

    async def _dead_letter_seen(self, record: ConsumerRecord, trace: Trace, now: int) -> None:
        rid = trace.request_id
        if not self.store.is_pending(rid):
            return
        try:
            letter = decode_payload(record.value)
        except StreamComposeError:
            return
        fell_back = FELL_BACK in self.store.branches_of(rid)
        if letter.get("agent") == self.primary and not fell_back:
            await self._fall_back(rid, f"the primary failed: {letter.get('error')}", now)
        elif letter.get("agent") == self.backup and fell_back:
            entry = self.store.mark_done(rid, now)  # both failed; the backup's letter says why
            await self.write_changelog(rid, entry.partition, entry)

    async def _fall_back(self, rid: str, reason: str, now: int) -> None:
        entry = self.store.pending_entry(rid)
        self.store.add_branch(entry.partition, rid, FELL_BACK, reason.encode(), first_ms=now,
                              entered_ms=entry.entered_ms, path=entry.path)
        await self.write_changelog(rid, entry.partition, entry)
        self.metrics.join_event("fallback")
        await self._forward(rid, self.backup)
