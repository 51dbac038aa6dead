"""Every kind of agent, registered in one place: the step that runs it. Adding a kind is
one module with its step, plus a line here (and its spec in the topology).

>>> from streamcompose.topology import load_topology_text
>>> t = load_topology_text('''
... name: demo
... agents:
...   same: {inputs: [$input], model: {runtime: python, entrypoint: "copy:copy"}}
... ''')
>>> type(build_step(t, "same")).__name__
'ModelStep'
"""

from __future__ import annotations

from streamcompose.colocate.step import GroupStep
from streamcompose.errors import AgentError
from streamcompose.join.step import JoinStep
from streamcompose.route.fallback import FallbackStep
from streamcompose.route.steps import GateStep, ShadowStep, SplitStep, SwitchStep
from streamcompose.steps.base import Step
from streamcompose.steps.model import ModelStep
from streamcompose.steps.stateful import StatefulStep
from streamcompose.topology.model import Topology

STEPS: dict[str, type[Step] | type[StatefulStep]] = {
    "model": ModelStep,
    "route": GateStep,
    "switch": SwitchStep,
    "split": SplitStep,
    "shadow": ShadowStep,
    "join": JoinStep,
    "fallback": FallbackStep,
    "colocate": GroupStep,
}


def build_step(topology: Topology, agent: str) -> Step | StatefulStep:
    """The step that runs ``agent`` (loading its model, if it has one)."""
    kind = topology.agent(agent).kind
    step = STEPS.get(kind)
    if step is None:
        raise AgentError(f"agent {agent!r} is of kind {kind!r}, which no step runs "
                         f"(kinds: {', '.join(STEPS)})", agent=agent)
    return step(topology, agent)
