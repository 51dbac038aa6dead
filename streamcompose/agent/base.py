"""What every worker process shares: its identity, state file, metrics and Kafka clients."""

from __future__ import annotations

from typing import Any

import mode
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from streamcompose.agent.settings import WorkerSettings
from streamcompose.agent.state import WorkerState
from streamcompose.delivery import Output
from streamcompose.kafka.admin import message_limits
from streamcompose.kafka.clients import make_consumer, make_producer, start_patiently
from streamcompose.metrics import AgentMetrics
from streamcompose.topology.model import Topology


class WorkerBase(mode.Service):
    """One replica of one agent: identity, state file, metrics and Kafka clients."""

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
        self.metrics = AgentMetrics(topology.name, agent, replica)
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
        self.wstate.update(status="loading", metrics_port=self.metrics.serve(self.metrics_port))

    def joined(self, assigned: list[TopicPartition]) -> None:
        """Record the partitions the group gave this replica."""
        self.wstate.update(joined=True, partitions=sorted(f"{tp.topic}[{tp.partition}]"
                                                          for tp in assigned))

    async def close_clients(self) -> None:
        for client in (self.consumer, self.producer):
            if client is not None:
                await client.stop()
        self.wstate.update(status="stopped", joined=False)
