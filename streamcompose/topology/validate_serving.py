"""Checks of the serving options: caches on model agents only, lane topics that no other
topic of the topology shares."""

from __future__ import annotations

from streamcompose.topology.model import Topology
from streamcompose.topology.yamlsource import YamlDocument


def validate_serving(t: Topology, doc: YamlDocument) -> None:
    for agent in t.agents:
        if agent.cache is not None and agent.model is None:
            raise doc.error(f"a cache answers for a model; agent {agent.name!r} is a "
                            f"{agent.kind} agent", f"agents.{agent.name}.cache")
    lanes = t.lane_topics()
    others = {topic for a in t.agents
              for topic in (t.topic_of(a.name), *(t.edge_topic(a.name, x)
                                                  for x in t.targets(a.name)))}
    for lane, topic in lanes.items():
        if topic in others or (topic != t.input_topic and topic in (t.output_topic,
                                                                     t.dlq_topic)):
            raise doc.error(f"the topic of lane {lane!r}, {topic!r}, is also another topic "
                            "of the topology; rename the lane or the agent", "priorities")
