"""What the worker carries for one consumed record, from its fetch to its delivery."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from streamcompose.codec import Trace
from streamcompose.delivery import Closing
from streamcompose.errors import StreamComposeError
from streamcompose.observe import tracing
from streamcompose.steps.base import Emission


@dataclass
class Item:
    """A consumed record: its payload, or why it cannot be processed."""

    record: ConsumerRecord
    trace: Trace
    payload: dict[str, Any] | None
    error: StreamComposeError | None = None
    emissions: list[Emission] | None = None
    epoch: int = 0  # of its partition's assignment when fetched (see AgentWorker.current)
    batch: dict[str, Any] | None = None  # its micro-batch's lineage entry
    skipped: bool = False  # a request redriven for another agent of its topic
    hop: tracing.Hop | None = None  # its spans, when tracing is on
    cost: float = 0.0  # for cost-aware batching
    tp: TopicPartition = field(kw_only=True)  # the record's partition, shared by its fetch


Processed = tuple[Closing, int, tracing.Hop | None]  # what a record gives, its epoch, spans
