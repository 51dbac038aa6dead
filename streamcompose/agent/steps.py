"""What an agent worker does with a batch: a :class:`Step` turns each request into the
records to send (:class:`Emission`), or into a :class:`RecordError` for the dead-letter
topic. A model agent's step runs its model and sends the merged payload downstream;
a router's step decides which agents' topics get the request.

>>> from streamcompose.topology import load_topology_text
>>> t = load_topology_text('''
... name: demo
... agents:
...   same: {inputs: [$input], model: {runtime: python, entrypoint: "copy:copy"}}
... ''')
>>> [[(e.topic, e.fields)] for e, in build_step(t, "same")([("r1", {"x": 1})])]
[[('demo.out', {'x': 1})]]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from streamcompose.agent.base import result_content_type
from streamcompose.codec import MSGPACK
from streamcompose.runtimes import RecordError, load_runtime
from streamcompose.topology.model import Topology

Request = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Emission:
    """One record to send for a request: the fields merged into its payload, extra
    headers, the topic, and (for routers) the agent it is routed to."""

    topic: str
    fields: dict[str, Any] = field(default_factory=dict)
    headers: tuple[tuple[str, bytes], ...] = ()
    content_type: str = MSGPACK
    target: str | None = None


Outcome = list[Emission] | RecordError


def merge_result(payload: dict[str, Any], fields: dict[str, Any],
                 drop: tuple[str, ...]) -> dict[str, Any]:
    """The payload an agent passes on: the one it received updated with the fields it
    produced, less its ``drop`` fields.

    >>> merge_result({"x": 1, "image": b"..."}, {"y": 2}, ("image",))
    {'x': 1, 'y': 2}
    """
    merged = {**payload, **fields}
    for name in drop:
        merged.pop(name, None)
    return merged


class Step(ABC):
    """Turns a batch of requests (request id, payload) into outcomes, one per request."""

    def warmup(self) -> None:  # noqa: B027 - most steps need none
        """Prepare before consuming (a model's first call)."""

    @abstractmethod
    def __call__(self, requests: list[Request]) -> list[Outcome]:
        """Runs off the event loop, in the worker's model thread."""

    def apply_control(self, settings: dict[str, Any]) -> None:
        """Apply run-time settings published on the topology's control topic."""
        raise RecordError(f"{type(self).__name__} takes no run-time settings")


class ModelStep(Step):
    """Runs the agent's model and sends each result to the agent's output topic."""

    def __init__(self, topology: Topology, agent: str) -> None:
        spec = topology.agent(agent)
        assert spec.model is not None
        self.runtime = load_runtime(spec.model, topology.base_dir, agent)
        self.topic = topology.topic_of(agent)
        self.content_type = result_content_type(topology, agent)

    def warmup(self) -> None:
        self.runtime.warmup()

    def __call__(self, requests: list[Request]) -> list[Outcome]:
        results = self.runtime.infer([payload for _, payload in requests])
        return [r if isinstance(r, RecordError) else
                [Emission(self.topic, r, content_type=self.content_type)] for r in results]


def build_step(topology: Topology, agent: str) -> Step:
    """The step of a model agent or of a stateless router."""
    kind = topology.agent(agent).kind
    if kind == "model":
        return ModelStep(topology, agent)
    from streamcompose.route.steps import ROUTER_STEPS

    return ROUTER_STEPS[kind](topology, agent)
