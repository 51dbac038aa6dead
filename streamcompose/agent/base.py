"""What every worker process shares: its identity, state file, metrics and Kafka clients.

>>> from streamcompose.topology import load_topology_text
>>> t = load_topology_text('''
... name: demo
... output_format: json
... agents:
...   same: {inputs: [$input], model: {runtime: python, entrypoint: "copy:copy"}}
... ''')
>>> result_content_type(t, "same")
'application/json'
"""

from __future__ import annotations

import mode
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamcompose.agent.state import WorkerState
from streamcompose.codec import JSON, MSGPACK
from streamcompose.metrics import AgentMetrics
from streamcompose.topology.model import Topology


def result_content_type(topology: Topology, agent: str) -> str:
    """JSON for the results a topology with ``output_format: json`` puts on its output
    topic; msgpack everywhere else."""
    sink = topology.is_sink(agent) and not topology.is_shadow(agent)
    return JSON if sink and topology.output_format == "json" else MSGPACK


class WorkerBase(mode.Service):
    """One replica of one agent: identity, state file, metrics and Kafka clients."""

    def __init__(self, topology: Topology, agent: str, bootstrap: str, replica: int = 0,
                 state: WorkerState | None = None, metrics_port: int = 0) -> None:
        super().__init__()
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

    async def partition_for(self, topic: str, partition: int) -> int | None:
        """Where to write a request's record: the partition number it came from, when
        ``topic`` has it. Every record of a request then stays on one partition number,
        whatever partitioner its first producer used (kcat's differs from the Java
        client's), which keeps the topics a joiner reads co-partitioned and spares hashing
        the key; ``None`` (hash the key) for a topic with fewer partitions."""
        count = self._partition_counts.get(topic)
        if count is None:
            assert self.producer is not None
            count = self._partition_counts[topic] = len(await self.producer.partitions_for(topic))
        return partition if partition < count else None

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
