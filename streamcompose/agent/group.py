"""The worker of a co-located group: the one worker core, running a group's step.

A group (:mod:`streamcompose.topology.colocate`) is deployed like one agent: one worker
process per replica, one consumer group, one transactional producer. It consumes every
topic its members read from outside, batches what it fetched, runs the
:class:`~streamcompose.colocate.step.GroupStep` on the batch (members in memory) and
closes each consumed record with every record the group sends for it: results leaving
the group, routed requests, the members' dead letters (each naming its member). Under
exactly-once they go in one transaction with the record's offset, as any agent's do, so
a record is committed only once every output of every in-group path is stored.

Each member keeps its own metrics series (``agent`` label: the member), served by the
group's worker beside the group's own (records consumed, batches, records in flight).

Example (needs a broker; ``deploy`` starts these for you)::

    topology = load_topology("topologies/digits_ensemble_colocated.yaml")
    worker = worker_class(topology, "ensemble")(topology, "ensemble", "127.0.0.1:9092")
    mode.Worker(worker).execute_from_commandline()
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from streamcompose.agent.item import Item
from streamcompose.agent.worker import AgentWorker
from streamcompose.codec import Trace, encode_payload
from streamcompose.colocate.step import GroupOutput, GroupRequest, GroupStep
from streamcompose.delivery import Closing, Output
from streamcompose.errors import StreamComposeError
from streamcompose.metrics import AgentMetrics
from streamcompose.runtimes import RecordError
from streamcompose.topology import colocate
from streamcompose.topology.model import Topology
from streamcompose.topology.versions import agent_version


class _Merged:
    """A Prometheus collector serving several registries as one exposition: the series
    of each metric family, whichever registry holds them, under one family."""

    def __init__(self, registries: list[CollectorRegistry]) -> None:
        self.registries = registries

    def collect(self) -> list[Metric]:
        families: dict[str, Metric] = {}
        for registry in self.registries:
            for family in registry.collect():
                if family.name in families:
                    families[family.name].samples.extend(family.samples)
                else:
                    merged = Metric(family.name, family.documentation, family.type,
                                    family.unit)
                    merged.samples = list(family.samples)
                    families[family.name] = merged
        return list(families.values())


class GroupWorker(AgentWorker):
    """Runs one replica of a co-located group of agents."""

    def __init__(self, topology: Topology, agent: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(topology, agent, *args, **kwargs)
        group = topology.group(agent)
        assert group is not None
        self.colocation = group
        self.members = {m: AgentMetrics(topology.name, m, self.replica) for m in group.members}
        self.dead_letter_topics = {topology.dlq_topic, *map(topology.dlq_of, group.members)}
        self.versions = {m: agent_version(topology, m) for m in group.members}
        self.serves = group.members
        self._member_entries: dict[tuple[str, tuple[str, ...]], tuple[dict[str, Any], ...]] = {}
        self.inline_step_s = self.settings.group_inline_ms / 1000

    def output_topics(self) -> list[str]:
        return list(colocate.exits(self.topology, self.colocation))

    def registry(self) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Merged([self.metrics.registry,
                                   *(m.registry for m in self.members.values())]))
        return registry

    async def on_start(self) -> None:
        await super().on_start()
        assert isinstance(self.step, GroupStep)
        self.step.observer = self

    def called(self, member: str, size: int, seconds: float) -> None:
        m = self.members[member]
        m.records_in.inc(size)
        m.batch_size.observe(size)
        m.inference_seconds.observe(seconds)

    def counted(self, member: str, events: Counter[str]) -> None:
        self.members[member].step_events(events)

    def _decode(self, record: Any, tp: TopicPartition) -> Item:
        item = super()._decode(record, tp)
        if item.payload is not None:
            item.payload = GroupRequest(item.payload, record.topic, item.trace.extra)
        return item

    def _closing(self, item: Item) -> Closing:
        if item.error is not None or item.emissions is None:
            return super()._closing(item)  # not decodable, or the group's step failed
        outputs = [self._output(item, o) for o in item.emissions]  # type: ignore[arg-type]
        self.metrics.records_out.inc(sum(o.topic not in self.dead_letter_topics
                                         for o in outputs))
        return Closing(item.tp, item.record.offset, outputs)

    def _output(self, item: Item, o: GroupOutput) -> Output:
        """A record the group sends for ``item``; a member's dead letter names the member,
        and its original is the record the group consumed (redriving it runs the group
        again)."""
        trace = Trace(item.trace.request_id, item.trace.entered_ms, (*item.trace.path, *o.path),
                      extra=o.headers)
        if o.error is not None:
            return self._letter(item, o.agent, trace, trace.headers(), o.error)
        try:
            output = Output(o.topic, encode_payload(o.payload, o.content_type), trace.key,
                            self._stamp_members(trace.headers(o.content_type), item, o.path),
                            self.partition_of(o.topic, item.record.partition))
        except StreamComposeError as exc:
            return self._failed(item, o.agent, trace, f"the result cannot be encoded: {exc}")
        refused = self.too_large(output)
        return output if refused is None else self._failed(
            item, o.agent, trace, f"the result cannot be stored: {refused}")

    def _stamp_members(self, headers: list[tuple[str, bytes]], item: Item,
                       members: tuple[str, ...]) -> list[tuple[str, bytes]]:
        """Lineage: an entry for each member a result passed, in the group's batch."""
        batch = item.batch or self.lineage.next_batch(1)
        key = (batch["batch"], members)
        entries = self._member_entries.get(key)
        if entries is None:  # made once for the batch's records that passed ``members``
            if len(self._member_entries) > 64:
                self._member_entries.clear()
            entries = self._member_entries[key] = tuple(
                {**batch, "agent": m, "version": self.versions[m], "group": self.agent}
                for m in members)
        return self.lineage.stamp(headers, *entries)

    def _failed(self, item: Item, agent: str, trace: Trace, reason: str) -> Output:
        error = RecordError(reason, agent=agent)
        self.members[agent].error(type(error).__name__)
        return self._letter(item, agent, trace, trace.headers(), error)


def worker_class(topology: Topology, name: str) -> type[AgentWorker]:
    """The worker that runs ``name``: a group's, or an agent's."""
    return GroupWorker if topology.group(name) is not None else AgentWorker
