"""What every worker process shares: its identity, state file, metrics and Kafka clients."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import mode
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from prometheus_client import CollectorRegistry

from streamcompose.agent.probes import Probes
from streamcompose.agent.probes import serve as serve_probes
from streamcompose.agent.settings import WorkerSettings
from streamcompose.agent.state import WorkerState
from streamcompose.codec.lineage import LineageStamp
from streamcompose.delivery import Output
from streamcompose.errors import StreamComposeError
from streamcompose.kafka.admin import message_limits
from streamcompose.kafka.clients import make_consumer, make_producer, start_patiently
from streamcompose.kafka.groups import leave_group
from streamcompose.metrics import RESTARTS_ENV, AgentMetrics
from streamcompose.observe.prometheus_config import write_target
from streamcompose.topology.model import Topology
from streamcompose.topology.versions import agent_version

LEAVE_TIMEOUT_S = 5.0
log = logging.getLogger("streamcompose.agent")


class WorkerBase(mode.Service):
    """One replica of one agent: identity, state file, metrics and Kafka clients."""

    #: where the metrics and probes listen: all interfaces in a container
    metrics_host = "127.0.0.1"

    def __init__(self, topology: Topology, agent: str, bootstrap: str, replica: int = 0,
                 state: WorkerState | None = None, metrics_port: int = 0,
                 settings: WorkerSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or WorkerSettings()
        self.topology, self.agent = topology, agent
        self.bootstrap, self.replica = bootstrap, replica
        self.spec = topology.agent(agent)
        self.group = topology.group_id(agent)
        self.client_id = f"{topology.name}.{agent}.{replica}"
        self.wstate = state or WorkerState.disabled()
        self.version = agent_version(topology, agent)
        self.lineage = LineageStamp(agent, self.version, replica)
        self.metrics = AgentMetrics(topology.name, agent, replica)
        self.metrics.restarts.inc(int(os.environ.get(RESTARTS_ENV, "0") or 0))
        self.metrics_port = metrics_port
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self._partition_counts: dict[str, int] = {}
        self.exactly_once = topology.delivery_of(agent) == "exactly_once"
        self.limits: dict[str, int] = {}

    def output_topics(self) -> list[str]:
        """Every topic this agent may write: results, routed requests, dead letters and,
        for stateful agents, the changelog."""
        t, name = self.topology, self.agent
        topics = [t.edge_topic(name, x) for x in t.targets(name)]
        if t.emits_results(name):
            topics.append(t.topic_of(name))
        if t.changelog_topic(name) in t.changelog_topics():
            topics.append(t.changelog_topic(name))
        if t.cache_topic(name) in t.cache_topics():
            topics.append(t.cache_topic(name))
        return list(dict.fromkeys([*topics, t.dlq_of(name), t.dlq_topic]))

    async def start_clients(self, listener: ConsumerRebalanceListener,
                            **consumer_options: Any) -> None:
        """Start the producer (transactional under exactly-once) and the consumer (a static
        group member per replica), waiting for the broker when it is away."""
        s, retry = self.settings, self.settings.connect_retry_s

        async def read_limits() -> None:
            self.limits = await message_limits(self.bootstrap, self.output_topics())

        await start_patiently(read_limits, self.client_id, self.bootstrap, retry)
        transactional = ({"transactional_id": f"{self.group}.{self.replica}",
                          "transaction_timeout_ms": s.transaction_timeout_ms}
                         if self.exactly_once else {})
        self.producer = make_producer(self.bootstrap, self.client_id,
                                      max_message_bytes=max(self.limits.values()),
                                      # the broker checks a whole batch against the limit
                                      max_batch_size=min(1 << 20, *self.limits.values()),
                                      request_timeout_ms=s.request_timeout_ms,
                                      retry_backoff_ms=s.retry_backoff_ms, **transactional)
        await start_patiently(self.producer.start, self.client_id, self.bootstrap, retry)
        for topic in self.output_topics():
            self._partition_counts[topic] = len(await self.producer.partitions_for(topic))
        self.consumer = make_consumer(
            self.bootstrap, self.group, self.client_id, group_instance_id=self.client_id,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms, **consumer_options)
        self.consumer.subscribe(list(self.topology.input_topics(self.agent)), listener=listener)
        await start_patiently(self.consumer.start, self.client_id, self.bootstrap, retry)

    def too_large(self, output: Output) -> str | None:
        """Why ``output`` cannot be stored (larger than its topic's ``max.message.bytes``),
        or None."""
        limit = self.limits.get(output.topic)
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(output.key, output.value,
                                                                output.headers)
        if limit is not None and size > limit:
            return (f"the record for {output.topic!r} would be {size} bytes, more than the "
                    f"topic's max.message.bytes {limit}")
        return None

    def partition_of(self, topic: str, partition: int) -> int | None:
        """Where to write a request's record: the partition number it came from, when
        ``topic`` has it. Every record of a request then stays on one partition number,
        whatever partitioner its first producer used (kcat's differs from the Java
        client's), which keeps the topics a joiner reads co-partitioned and spares hashing
        the key; ``None`` (hash the key) for a topic with fewer partitions."""
        return partition if partition < self._partition_counts.get(topic, 0) else None

    def serve_metrics(self) -> None:
        """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on the metrics port."""
        probes = Probes(lambda: self.wstate.data)
        port = serve_probes(probes, self.registry(), self.metrics_port, self.metrics_host)
        self.wstate.update(status="loading", version=self.version, metrics_port=port)
        if self.wstate.path is not None:  # a deployed worker: announce it to Prometheus
            write_target(self.wstate.path, port, self.topology.name, self.agent, self.replica)
        self.add_future(self._heartbeat(probes))

    def registry(self) -> CollectorRegistry:
        """What ``/metrics`` serves."""
        return self.metrics.registry

    async def _heartbeat(self, probes: Probes) -> None:
        while True:
            probes.beat()
            await asyncio.sleep(1.0)

    def joined(self, assigned: list[TopicPartition]) -> None:
        """Record the partitions the group gave this replica."""
        self.wstate.update(joined=True, partitions=sorted(f"{tp.topic}[{tp.partition}]"
                                                          for tp in assigned))

    async def close_clients(self) -> None:
        for client in (self.consumer, self.producer):
            if client is not None:
                await client.stop()
        if self.consumer is not None:
            await self._leave_group()
        self.wstate.update(status="stopped", joined=False)

    async def _leave_group(self) -> None:
        """A static member that stops gracefully (scaled down, stopped) hands its
        partitions over now rather than after the session timeout; one that is killed
        keeps them for its successor."""
        try:
            await asyncio.wait_for(leave_group(self.bootstrap, self.group, self.client_id),
                                   LEAVE_TIMEOUT_S)
        except (StreamComposeError, TimeoutError) as exc:
            log.warning("%s: could not leave group %s (%s); its partitions move after the "
                        "session timeout", self.client_id, self.group, exc)
