"""The topology graph as frozen dataclasses.

A :class:`Topology` is a named graph of :class:`AgentSpec` steps with unique names.
Topic names are derived from the topology's name:

* ``<name>.in``  – the input topic (``input:`` overrides it),
* ``<name>.out`` – the output topic every sink agent writes to (``output:`` overrides it),
* ``<name>.<agent>`` – the output topic of an agent that has downstream agents,
* ``<name>.dlq`` – the dead-letter topic.

>>> t = Topology(name="demo", agents=(AgentSpec(name="inc", inputs=(INPUT,)),))
>>> t.input_topic, t.output_topic, t.topic_of("inc")
('demo.in', 'demo.out', 'demo.out')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as _field
from pathlib import Path
from types import MappingProxyType
from typing import Any

INPUT = "$input"
RUNTIMES = ("onnx", "torch", "python")


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class BatchSpec:
    """Micro-batching limits: a batch closes at ``max_size`` items or ``max_wait_ms``
    after its first item, whichever comes first."""

    max_size: int = 1
    max_wait_ms: float = 0.0


@dataclass(frozen=True)
class ModelSpec:
    """How an agent loads and calls its model.

    ``input_map`` maps a model input name to the payload field bound to it;
    ``output_map`` maps a model output name to the payload field it is stored as.
    ``outputs`` (optional) restricts which model outputs are kept.
    """

    runtime: str
    path: Path | None = None
    entrypoint: str | None = None
    device: str = "cpu"
    input_map: Mapping[str, str] = _field(default_factory=dict)
    output_map: Mapping[str, str] = _field(default_factory=dict)
    outputs: tuple[str, ...] | None = None
    options: Mapping[str, Any] = _field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("input_map", "output_map", "options"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))


JOIN_MODES = ("all", "any", "quorum")
JOIN_STRATEGIES = ("majority_vote", "soft_vote", "weighted_average", "max_confidence",
                   "entropy_weighted", "stacking", "merge", "python")


@dataclass(frozen=True)
class JoinSpec:
    """How a joiner combines the results its branches (its ``inputs``) give for one request.

    ``mode``: emit when ``all`` branches answered, at the first (``any``), or once
    ``quorum`` have. After ``timeout_ms`` from the first branch result, ``on_timeout``
    ``partial`` emits what arrived (with a ``missing`` list) and ``dlq`` dead-letters the
    request. ``field`` is the payload field combined; ``weights`` weigh branches by name.
    ``model`` is the stacking meta-model, ``entrypoint`` the python aggregator.
    At most ``max_pending`` requests wait at once (the oldest is sent on with
    ``on_timeout``); emitted request ids are remembered ``remember_ms`` to drop late
    branch results.
    """

    strategy: str
    mode: str = "all"
    quorum: int | None = None
    field: str = "proba"
    proba_field: str = "proba"
    weights: Mapping[str, float] = _field(default_factory=dict)
    timeout_ms: float = 2000.0
    on_timeout: str = "partial"
    keep_branches: bool = False
    max_pending: int = 10000
    remember_ms: float = 600_000.0
    model: ModelSpec | None = None
    entrypoint: str | None = None
    options: Mapping[str, Any] = _field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("weights", "options"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    def needed(self, branches: int) -> int:
        """How many branch results complete a request."""
        return {"all": branches, "any": 1}.get(self.mode, self.quorum or branches)


@dataclass(frozen=True)
class AgentSpec:
    """One step of the graph: a model agent consuming ``inputs`` (``$input`` or agents).

    ``drop`` names payload fields removed before the result goes downstream (bulky
    intermediates such as an image a later step no longer needs)."""

    name: str
    inputs: tuple[str, ...]
    model: ModelSpec | None = None
    join: JoinSpec | None = None
    batch: BatchSpec = _field(default_factory=BatchSpec)
    replicas: int = 1
    drop: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """``model`` or ``join``."""
        return "join" if self.join is not None else "model"


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

    @property
    def input_topic(self) -> str:
        return self.input or f"{self.name}.in"

    @property
    def output_topic(self) -> str:
        return self.output or f"{self.name}.out"

    @property
    def dlq_topic(self) -> str:
        return f"{self.name}.dlq"

    @property
    def agent_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.agents)

    def agent(self, name: str) -> AgentSpec:
        for spec in self.agents:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def downstream(self, name: str) -> tuple[str, ...]:
        """Agents that consume ``name``'s results."""
        return tuple(a.name for a in self.agents if name in a.inputs)

    def is_sink(self, name: str) -> bool:
        return not self.downstream(name)

    def topic_of(self, name: str) -> str:
        """The topic an agent (or ``$input``) writes to."""
        if name == INPUT:
            return self.input_topic
        return self.output_topic if self.is_sink(name) else f"{self.name}.{name}"

    def input_topics(self, name: str) -> tuple[str, ...]:
        """The topics an agent consumes, in the order of its ``inputs``."""
        return tuple(dict.fromkeys(self.topic_of(src) for src in self.agent(name).inputs))

    def topics(self) -> tuple[str, ...]:
        """Every topic the topology uses, input first."""
        names = [self.input_topic, *(self.topic_of(a.name) for a in self.agents),
                 self.output_topic, self.dlq_topic]
        return tuple(dict.fromkeys(names))

    def changelog_topics(self) -> tuple[str, ...]:
        """The changelog topics of the stateful agents (joiners)."""
        return tuple(self.changelog_topic(a.name) for a in self.agents if a.kind == "join")

    def changelog_topic(self, name: str) -> str:
        """The compacted topic that makes a stateful agent's state durable."""
        return f"{self.name}.{name}.changelog"

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
