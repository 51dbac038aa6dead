"""What a worker runs on a batch: a :class:`Step` turns each request into the records to
send (:class:`Emission`), or into a :class:`RecordError` for the dead-letter topic. A
model agent's step runs its model and sends the merged payload downstream; a router's
step decides which agents' topics get the request. Steps know nothing of Kafka.

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

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from streamcompose.codec import JSON, MSGPACK
from streamcompose.runtimes import RecordError
from streamcompose.topology.model import Topology

Request = tuple[str, dict[str, Any]]


def result_content_type(topology: Topology, agent: str) -> str:
    """JSON for the results a topology with ``output_format: json`` puts on its output
    topic; msgpack everywhere else."""
    sink = topology.is_sink(agent) and not topology.is_shadow(agent)
    return JSON if sink and topology.output_format == "json" else MSGPACK


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

    stateful = False

    def warmup(self) -> None:  # noqa: B027 - most steps need none
        """Prepare before consuming (a model's first call)."""

    @abstractmethod
    def __call__(self, requests: list[Request]) -> list[Outcome]:
        """Runs off the event loop, in the worker's model thread; a co-located group's
        steps run on the event loop while they are quick
        (:attr:`~streamcompose.agent.settings.WorkerSettings.group_inline_ms`)."""

    def prepare(self, requests: list[Request]) -> Any | None:
        """On the event loop, while the model thread runs the batch before: the batch
        made ready for its model, so that the model thread only runs the model
        (:meth:`run_prepared`) and :meth:`outcomes` makes the outcomes back on the loop;
        None to run the whole step in the model thread (the default)."""
        return None

    def run_prepared(self, prepared: Any) -> Any:
        """In the model thread: the model's outputs for what :meth:`prepare` made; may
        raise, and the worker then runs the step on each request alone."""
        raise NotImplementedError(f"{type(self).__name__} prepares no batch")

    def outcomes(self, outputs: Any, size: int) -> list[Outcome]:
        """On the event loop: one outcome per request of a prepared batch of ``size``
        from :meth:`run_prepared`'s ``outputs``."""
        raise NotImplementedError(f"{type(self).__name__} prepares no batch")

    def apply_control(self, settings: dict[str, Any]) -> None:
        """Apply run-time settings published on the topology's control topic."""
        raise RecordError(f"{type(self).__name__} takes no run-time settings")
