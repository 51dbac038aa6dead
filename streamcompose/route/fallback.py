"""The fallback router: a request goes to the primary; when the primary dead-letters it
or gives no answer within ``deadline_ms``, it goes to the backup. Exactly one answer per
request reaches the output, with ``served_by`` naming the agent that gave it; a
primary's answer that comes after the fallback is counted as late and dropped.

The router reads its requests, both agents' answers and the dead letters
(co-partitioned) and keeps each open request, with whether and why it fell back.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamcompose.codec import decode_payload, encode_payload
from streamcompose.codec.lineage import read_lineage
from streamcompose.errors import RequestExpiredError, RequestTimeoutError, StreamComposeError
from streamcompose.steps.stateful import Arrival, RequestEntry, StatefulStep
from streamcompose.steps.store import RequestStore
from streamcompose.topology.model import Topology

BACKUP_GRACE_MS = 60_000
REMEMBER_MS, REMEMBER_MAX = 600_000, 100_000


@dataclass
class FallbackEntry(RequestEntry):
    """An open request: its payload (msgpack), and why it fell back, if it did."""

    request: bytes = b""
    fell_back: str | None = None


class FallbackStep(StatefulStep):
    """The rules of one fallback router."""

    def __init__(self, topology: Topology, agent: str) -> None:
        super().__init__(topology, agent)
        router = topology.agent(agent).router
        assert router is not None and router.primary and router.backup
        self.primary, self.backup = router.primary, router.backup
        self.deadline_ms = router.deadline_ms
        self.edges = {a: topology.edge_topic(agent, a) for a in (self.primary, self.backup)}
        self.answers = {topology.topic_of(self.primary): self.primary,
                        topology.topic_of(self.backup): self.backup}
        self.requests = (set(topology.input_topics(agent)) - set(self.answers)
                         - {topology.dlq_topic})
        self.store: RequestStore[FallbackEntry] = RequestStore(FallbackEntry, REMEMBER_MS,
                                                               REMEMBER_MAX)

    def on_record(self, arrival: Arrival) -> None:
        if arrival.topic in self.requests:
            self._request(arrival)
        elif arrival.topic in self.answers:
            self._answer(arrival, self.answers[arrival.topic])
        else:
            self._dead_letter_seen(arrival)

    def due(self, now: int) -> list[str]:
        """Requests still with the primary past the deadline, and requests the backup
        has not answered either within :data:`BACKUP_GRACE_MS` more."""
        return [rid for rid, e in self.store.open_entries()
                if now - e.first_ms >= self.deadline_ms + (BACKUP_GRACE_MS if e.fell_back
                                                           else 0)]

    def on_due(self, request_ids: list[str], now: int) -> None:
        for rid in request_ids:
            entry = self.store.pending_entry(rid)
            if not entry.fell_back:
                self._fall_back(rid, f"no answer within {self.deadline_ms:g} ms")
                continue
            self.store.answer(rid, now)  # neither answered: say so, once
            self.dead_letter(entry.trace(rid, self.agent), entry.partition, b"",
                             self.edges[self.backup], RequestTimeoutError(
                                 f"neither {self.primary} nor {self.backup} answered within "
                                 f"{self.deadline_ms + BACKUP_GRACE_MS:g} ms", request_id=rid))

    def _request(self, arrival: Arrival) -> None:
        trace, rid = arrival.trace, arrival.trace.request_id
        if self.store.is_pending(rid) or self.store.is_done(rid):
            self.events["duplicate"] += 1
            return
        try:  # stored as msgpack whatever it came as, so forwarding can label it so
            value = encode_payload(decode_payload(arrival.value, trace.content_type))
        except StreamComposeError as exc:
            self.dead_letter(trace.passed(self.agent), arrival.partition, arrival.value or b"",
                             arrival.topic, exc, arrival.offset)
            return
        # the deadline runs from when the request was forwarded, or, while a restarted
        # worker catches up (its clock behind), from when the request was written
        first = max(self.now, arrival.timestamp)
        entry = FallbackEntry(arrival.partition, first, trace.entered_ms, list(trace.path),
                              request=value, lineage=read_lineage(trace.extra))
        entry.take_deadline(self.arrived(arrival))
        self.store.open(rid, entry)
        self.remember_trace(entry, trace)
        self._forward(rid, self.primary)

    def _forward(self, rid: str, target: str) -> None:
        """Send the request to ``target``, or, once its deadline passed, dead-letter it
        as expired (and close it)."""
        entry = self.store.pending_entry(rid)
        if entry.expired(self.now):
            self.store.answer(rid, self.now)
            self.expire(entry.trace(rid, self.agent), entry.partition, self.edges[target])
            return
        self.send(self.edges[target], entry.request, self.answer_trace(rid, entry),
                  entry.partition)
        self.events[f"routed:{target}"] += 1

    def _answer(self, arrival: Arrival, agent: str) -> None:
        rid = arrival.trace.request_id
        pending = self.store.is_pending(rid)
        fell_back = pending and self.store.pending_entry(rid).fell_back is not None
        if not pending or fell_back != (agent == self.backup):
            self.events["late"] += 1
            return
        entry = self.store.answer(rid, self.now)
        try:
            payload = decode_payload(arrival.value, arrival.trace.content_type)
        except StreamComposeError as exc:
            self.dead_letter(arrival.trace, entry.partition, arrival.value or b"",
                             arrival.topic, exc)
            return
        self.send(self.out_topic, encode_payload({**payload, "served_by": agent}, self.out_type),
                  arrival.trace.passed(self.agent), entry.partition, self.out_type)
        self.events["out"] += 1

    def _dead_letter_seen(self, arrival: Arrival) -> None:
        rid = arrival.trace.request_id
        if not self.store.is_pending(rid):
            return
        try:
            letter = decode_payload(arrival.value)
        except StreamComposeError:
            return
        fell_back = self.store.pending_entry(rid).fell_back is not None
        if letter.get("error_type") == RequestExpiredError.reason:
            self.store.answer(rid, self.now)  # it expired there; that letter says so
        elif letter.get("agent") == self.primary and not fell_back:
            self._fall_back(rid, f"the primary failed: {letter.get('error')}")
        elif letter.get("agent") == self.backup and fell_back:
            self.store.answer(rid, self.now)  # both failed; the backup's letter says why

    def _fall_back(self, rid: str, reason: str) -> None:
        entry = self.store.pending_entry(rid)
        if not entry.expired(self.now):  # else _forward dead-letters it
            entry.fell_back = reason
            self.store.changed(rid)
            self.events["fallback"] += 1
        self._forward(rid, self.backup)
