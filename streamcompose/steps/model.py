"""The step of a model agent: run the model on the batch, send each result on.

>>> from streamcompose.topology import load_topology_text
>>> t = load_topology_text('''
... name: demo
... agents:
...   same: {inputs: [$input], model: {runtime: python, entrypoint: "copy:copy"}}
... ''')
>>> [[(e.topic, e.fields)] for e, in ModelStep(t, "same")([("r1", {"x": 1})])]
[[('demo.out', {'x': 1})]]
"""

from __future__ import annotations

from typing import Any

from streamcompose.runtimes import RecordError, load_runtime
from streamcompose.runtimes.base import Result
from streamcompose.steps.base import Emission, Outcome, Request, Step, result_content_type
from streamcompose.topology.model import Topology


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
        return self._emissions(self.runtime.infer([payload for _, payload in requests]))

    def prepare(self, requests: list[Request]) -> Any | None:
        return self.runtime.bind([payload for _, payload in requests])

    def run_prepared(self, prepared: Any) -> Any:
        return self.runtime.run_bound(prepared)

    def outcomes(self, outputs: Any, size: int) -> list[Outcome]:
        return self._emissions(self.runtime.unbind(outputs, size))

    def _emissions(self, results: list[Result]) -> list[Outcome]:
        return [r if isinstance(r, RecordError) else
                [Emission(self.topic, r, content_type=self.content_type)] for r in results]
