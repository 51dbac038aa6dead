"""What a processed record gives: its results encoded as the records to produce, or the
dead letter that says why it has none.

Each result is the request's payload merged with the step's fields (less the agent's
``drop``), encoded in its content type, keyed and partitioned like the record it
answers, with the request's trace and a lineage entry for its micro-batch. A result that
cannot be encoded, or is larger than its topic takes, becomes a dead letter instead: the
worker never stops on one.
"""

from __future__ import annotations

import logging
from typing import Any

from streamcompose.agent.base import WorkerBase
from streamcompose.agent.item import Item
from streamcompose.codec import MSGPACK, Trace, encode_payload
from streamcompose.codec.deadletter import dead_letter_value, error_reason
from streamcompose.delivery import Closing, Output
from streamcompose.errors import StreamComposeError
from streamcompose.observe.tracing import HopTracer
from streamcompose.runtimes import RecordError
from streamcompose.serving.cache import cached_here
from streamcompose.steps.base import Emission, merge_result

log = logging.getLogger("streamcompose.agent")
DEAD_LETTER_ROOM = 4096  # bytes a dead letter needs beside the original it carries


class EncodingWorker(WorkerBase):
    """The encoding half of :class:`~streamcompose.agent.worker.AgentWorker`."""

    tracing: HopTracer | None = None

    def _closing(self, item: Item) -> Closing:
        """The records a processed item gives: its results, or a dead letter."""
        if item.skipped:
            return Closing(item.tp, item.record.offset, [])
        if item.error is None:
            assert item.payload is not None and item.emissions is not None
            outputs = self._encode(item, item.emissions, item.payload)
            if isinstance(outputs, list):
                self.metrics.records_out.inc(len(outputs))
                for e in item.emissions:
                    if e.target is not None:
                        self.metrics.routed(e.target)
                return Closing(item.tp, item.record.offset, outputs)
            item.error = outputs
        return Closing(item.tp, item.record.offset, [self._dead_letter(item, item.error)])

    def _encode(self, item: Item, emissions: list[Emission], payload: dict[str, Any]
                ) -> list[Output] | RecordError:
        trace = item.trace.passed(self.agent)
        if item.hop is not None and self.tracing:
            trace = self.tracing.produced(item.hop, trace)
        outputs = []
        try:
            for e in emissions:
                merged = merge_result(payload, e.fields, self.spec.drop)
                headers = [*trace.headers(e.content_type), *e.headers]
                outputs.append(Output(e.topic, encode_payload(merged, e.content_type),
                                      trace.key, self._stamp(headers, item),
                                      self.partition_of(e.topic, item.record.partition)))
        except StreamComposeError as exc:
            return RecordError(f"the result cannot be encoded: {exc}", agent=self.agent)
        refused = next((reason for o in outputs if (reason := self.too_large(o))), None)
        return outputs if refused is None else RecordError(
            f"the result cannot be stored: {refused}", agent=self.agent)

    def _dead_letter(self, item: Item, error: BaseException) -> Output:
        self.metrics.error(error_reason(error))
        trace = item.trace.passed(self.agent)
        if item.hop is not None and self.tracing:
            trace = self.tracing.produced(item.hop, trace, error)
        return self._letter(item, self.agent, trace,
                            self._stamp(trace.headers(MSGPACK), item), error)

    def _letter(self, item: Item, agent: str, trace: Trace,
                headers: list[tuple[str, bytes]], error: BaseException) -> Output:
        """The dead letter of ``agent`` for ``item``: why it failed, and the consumed
        record as its original, cut to fit the dead-letter topic."""
        record = item.record
        who = agent if agent == self.agent else f"{agent} (group {self.agent})"
        log.warning("agent %s: %s[%d]@%d -> dead letter: %s", who, record.topic,
                    record.partition, record.offset, error)
        dlq = self.topology.dlq_of(agent)
        room = self.limits.get(dlq, self.topology.max_message_bytes) - DEAD_LETTER_ROOM
        value = dead_letter_value(record.value, agent=agent, topic=record.topic,
                                  partition=record.partition, offset=record.offset,
                                  error=error, max_original=room)
        return Output(dlq, value, trace.key, headers, self.partition_of(dlq, record.partition))

    def _stamp(self, headers: list[tuple[str, bytes]], item: Item) -> list[tuple[str, bytes]]:
        entry = item.batch or self.lineage.next_batch(1)
        if cached_here(item.trace, item.record.headers):
            entry = {**entry, "cached": True}
        return self.lineage.stamp(headers, entry)
