"""The topology graph as frozen dataclasses.

A :class:`Topology` is a named graph of :class:`AgentSpec` steps with unique names.
Topic names are derived from the topology's name:

* ``<name>.in``  – the input topic (``input:`` overrides it); with ``priorities``, the
  default lane's, each other lane having ``<name>.in.<lane>``,
* ``<name>.out`` – the output topic every sink agent writes to (``output:`` overrides it),
* ``<name>.<agent>`` – the output topic of an agent that has downstream agents,
* ``<name>.<router>.<target>`` – the requests a router sends to one target,
* ``<name>.shadow.<agent>`` – a shadow's results (and ``.dlq``), never the output,
* ``<name>.<agent>.changelog`` – the durable state of a joiner or fallback router,
* ``<name>.<agent>.cache`` – the answers a ``cache: {shared: true}`` agent shares,
* ``<name>.control`` – run-time settings such as traffic split weights,
* ``<name>.dlq`` – the dead-letter topic.

>>> t = Topology(name="demo", agents=(AgentSpec(name="inc", inputs=(INPUT,)),))
>>> t.input_topic, t.output_topic, t.topic_of("inc")
('demo.in', 'demo.out', 'demo.out')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from streamcompose.errors import TopologyError
from streamcompose.topology import colocate
from streamcompose.topology.replication import ReplicationSpec
from streamcompose.topology.routers import ROUTERS
from streamcompose.topology.serving_specs import CacheSpec, PrioritySpec
from streamcompose.topology.specs import (
    DELIVERIES,
    INPUT,
    JOIN_MODES,
    JOIN_STRATEGIES,
    ROUTER_KINDS,
    RUNTIMES,
    AgentSpec,
    BatchSpec,
    Case,
    JoinSpec,
    ModelSpec,
    RouterSpec,
)
from streamcompose.topology.yamlsource import SourceMap

__all__ = ["DELIVERIES", "INPUT", "JOIN_MODES", "JOIN_STRATEGIES", "ROUTER_KINDS", "RUNTIMES",
           "AgentSpec", "BatchSpec", "CacheSpec", "Case", "JoinSpec", "ModelSpec",
           "PrioritySpec", "RouterSpec", "Topology"]


@dataclass(frozen=True)
class Topology:
    """A validated topology; build one with :func:`streamcompose.load_topology`."""

    name: str
    agents: tuple[AgentSpec, ...]
    input: str | None = None
    output: str | None = None
    partitions: int = 3
    output_format: str = "msgpack"
    fields: tuple[str, ...] | None = None
    base_dir: Path = Path(".")
    source: Path | None = None
    delivery: str = "exactly_once"
    max_message_bytes: int = 1 << 20
    replication: ReplicationSpec = field(default_factory=ReplicationSpec)
    deadline_ms: float | None = None
    priorities: PrioritySpec | None = None
    #: groups of agents that run in one worker process (streamcompose.topology.colocate)
    colocate: tuple[colocate.Colocation, ...] = ()
    #: where each key was written, so that later checks can name file and line
    where: SourceMap = field(default_factory=SourceMap, compare=False, repr=False)

    def error(self, message: str, key: str) -> TopologyError:
        """An error located at ``key`` (and its line, when the topology came from a file)."""
        return self.where.error(message, key)

    @property
    def input_topic(self) -> str:
        return self.input or f"{self.name}.in"

    @property
    def output_topic(self) -> str:
        return self.output or f"{self.name}.out"

    def entry_topics(self) -> tuple[str, ...]:
        """The topics requests enter by: every priority lane's, most urgent first, or the
        input topic."""
        return tuple(self.lane_topics().values()) or (self.input_topic,)

    def lane_topics(self) -> dict[str, str]:
        """Each priority lane's input topic, most urgent first; ``{}`` without lanes.

        >>> t = Topology(name="d", agents=(), priorities=PrioritySpec(("high", "normal")))
        >>> t.lane_topics()
        {'high': 'd.in.high', 'normal': 'd.in'}
        """
        p = self.priorities
        if p is None:
            return {}
        return {lane: self.input_topic if lane == p.default else f"{self.input_topic}.{lane}"
                for lane in p.lanes}

    def deadline_of(self, name: str) -> float | None:
        """The deadline (ms after entering) an agent gives requests that carry none."""
        return self.agent(name).deadline_ms or self.deadline_ms

    def cache_topic(self, name: str) -> str:
        """The compacted topic through which a shared cache's workers share answers."""
        return f"{self.name}.{name}.cache"

    def cache_topics(self) -> tuple[str, ...]:
        return tuple(self.cache_topic(a.name) for a in self.agents
                     if a.cache is not None and a.cache.shared)

    @property
    def dlq_topic(self) -> str:
        return f"{self.name}.dlq"

    @property
    def agent_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.agents)

    def agent(self, name: str) -> AgentSpec:
        """An agent's spec; a co-located group's name gives the group's own spec."""
        for spec in self.agents:
            if spec.name == name:
                return spec
        group = self.group(name)
        if group is not None:
            return colocate.group_spec(self, group)
        raise KeyError(name)

    def group(self, name: str) -> colocate.Colocation | None:
        """The co-located group called ``name``, if any."""
        return next((g for g in self.colocate if g.name == name), None)

    def group_of(self, agent: str) -> colocate.Colocation | None:
        """The co-located group ``agent`` runs in, if any."""
        return next((g for g in self.colocate if agent in g.members), None)

    def units(self) -> tuple[str, ...]:
        """What runs as worker processes: each co-located group once, every other agent,
        upstream first."""
        return tuple(dict.fromkeys(colocate.unit_of(self, a) for a in self.order()))

    def targets(self, name: str) -> tuple[str, ...]:
        """The agents a router sends requests to (none for other agents)."""
        if name == INPUT:
            return ()
        router = self.agent(name).router
        return router.targets if router is not None else ()

    def is_stateful(self, name: str) -> bool:
        """Whether an agent keeps open requests in a changelog: joiners and stateful
        routers (fallback). Their inputs are co-partitioned; they are always exactly-once."""
        spec = self.agent(name)
        return spec.join is not None or (spec.router is not None
                                         and ROUTERS[spec.router.kind].stateful)

    def takes_control(self, name: str) -> bool:
        """Whether an agent takes run-time settings on the control topic (split)."""
        router = self.agent(name).router
        return router is not None and ROUTERS[router.kind].control

    def returns_to(self, name: str) -> tuple[str, ...]:
        """Stateful routers that consume ``name``'s results (it is one of their targets:
        a fallback's primary or backup)."""
        return tuple(a.name for a in self.agents if a.router is not None
                     and self.is_stateful(a.name) and name in a.router.targets)

    def downstream(self, name: str) -> tuple[str, ...]:
        """Agents that consume ``name``'s results (not the requests a router routes)."""
        return tuple(a.name for a in self.agents if name in a.inputs
                     and a.name not in self.targets(name)) + self.returns_to(name)

    def is_sink(self, name: str) -> bool:
        return not self.downstream(name)

    def is_shadow(self, name: str) -> bool:
        """Whether ``name`` is a shadow copy whose results never reach the output."""
        return any(a.router is not None and name in a.router.shadows for a in self.agents)

    def emits_results(self, name: str) -> bool:
        """Every agent but the pure routers (a fallback router emits the answer itself)."""
        return self.agent(name).router is None or self.is_stateful(name)

    def topic_of(self, name: str) -> str:
        """The topic an agent (or ``$input``) writes its results to."""
        if name == INPUT:
            return self.input_topic
        if self.is_shadow(name):
            return f"{self.name}.shadow.{name}"
        return self.output_topic if self.is_sink(name) else f"{self.name}.{name}"

    def edge_topic(self, router: str, target: str) -> str:
        """The topic a router writes the requests it sends to ``target`` to."""
        return f"{self.name}.{router}.{target}"

    def dlq_of(self, name: str) -> str:
        """Where an agent's dead letters go: shadows keep theirs apart from the main path."""
        return f"{self.topic_of(name)}.dlq" if self.is_shadow(name) else self.dlq_topic

    @property
    def control_topic(self) -> str:
        """The compacted topic carrying run-time settings (traffic split weights)."""
        return f"{self.name}.control"

    def input_topics(self, name: str) -> tuple[str, ...]:
        """The topics an agent consumes: its ``inputs`` (a router's edge to it where the
        input is a router), then, for a stateful router (fallback), its targets' results
        and the dead letters; for a co-located group, what its members read from outside
        it."""
        group = self.group(name)
        if group is not None:
            return tuple(colocate.entries(self, group))
        topics = [t for src in self.agent(name).inputs for t in (
            self.entry_topics() if src == INPUT else [colocate.input_topic(self, src, name)])]
        router = self.agent(name).router
        if router is not None and self.is_stateful(name):
            topics += [*(self.topic_of(t) for t in router.targets), self.dlq_topic]
        return tuple(dict.fromkeys(topics))

    def topics(self) -> tuple[str, ...]:
        """Every topic the topology uses, input (lanes, most urgent first) first (not the
        ones a co-located group passes in memory)."""
        names = [*self.entry_topics()]
        for a in self.agents:
            names += [self.edge_topic(a.name, t) for t in self.targets(a.name)]
            if self.emits_results(a.name):
                names.append(self.topic_of(a.name))
            if self.is_shadow(a.name):
                names.append(self.dlq_of(a.name))
        names += [self.output_topic, self.dlq_topic]
        if any(self.takes_control(a.name) for a in self.agents):
            names.append(self.control_topic)
        hidden = {t for g in self.colocate if not g.inspect
                  for t in colocate.internal_topics(self, g)}
        return tuple(n for n in dict.fromkeys(names) if n not in hidden)

    def changelog_topics(self) -> tuple[str, ...]:
        """The changelog topics of the stateful agents (joiners, fallback routers)."""
        return tuple(self.changelog_topic(a.name) for a in self.agents
                     if self.is_stateful(a.name) and self.group_of(a.name) is None)

    def changelog_topic(self, name: str) -> str:
        """The compacted topic that makes a stateful agent's state durable."""
        return f"{self.name}.{name}.changelog"

    def delivery_of(self, name: str) -> str:
        """``exactly_once`` or ``at_least_once``: the agent's own ``delivery``, else the
        topology's. Joiners and fallback routers keep state and are always exactly-once.

        >>> t = Topology(name="d", agents=(AgentSpec("a", (INPUT,), delivery="at_least_once"),
        ...                                AgentSpec("b", ("a",))))
        >>> t.delivery_of("a"), t.delivery_of("b")
        ('at_least_once', 'exactly_once')
        """
        if self.is_stateful(name):
            return "exactly_once"
        return self.agent(name).delivery or self.delivery

    def group_id(self, name: str) -> str:
        """The consumer group of an agent's workers."""
        return f"streamcompose.{self.name}.{name}"

    def order(self) -> tuple[str, ...]:
        """Agent names in topological order (upstream first)."""
        done: list[str] = []
        pending = list(self.agents)
        while pending:
            ready = [a for a in pending if all(i == INPUT or i in done for i in a.inputs)]
            if not ready:
                raise ValueError("the agent graph has a cycle")
            done.extend(a.name for a in ready)
            pending = [a for a in pending if a not in ready]
        return tuple(done)
