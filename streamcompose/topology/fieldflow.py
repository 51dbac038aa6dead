"""Field flow: every model's inputs are produced upstream, every joiner's branches give
the field it combines, with one shape.

These checks need to know what each model reads and writes (a :class:`ModelInfo` per
agent), which only the model files and entrypoints tell; the runtimes describe them
(:func:`streamcompose.runtimes.check.check_models`) and hand the descriptions here.
This module itself never opens a model.

>>> from streamcompose.topology.model import AgentSpec, ModelSpec
>>> t = Topology(name="demo", fields=("x",), agents=(
...     AgentSpec(name="inc", inputs=(INPUT,), model=ModelSpec(runtime="python")),))
>>> check_field_flow(t, {"inc": ModelInfo(inputs=("y",), outputs=None)})
Traceback (most recent call last):
  ...
streamcompose.errors.TopologyError: agents.inc.inputs: agent 'inc' needs field(s) y that \
no upstream produces (available: x)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from streamcompose.topology.model import INPUT, JOIN_STRATEGIES, AgentSpec, ModelSpec, Topology
from streamcompose.topology.routers import ROUTERS


@dataclass(frozen=True)
class ModelInfo:
    """What is known of a model before running it: the payload fields it reads and
    writes (``None`` where unknown) and the per-request shapes of its outputs (by field,
    where the model file declares them)."""

    inputs: tuple[str, ...] | None
    outputs: tuple[str, ...] | None
    shapes: Mapping[str, tuple[int | None, ...]] = field(default_factory=dict)


def model_specs(t: Topology) -> list[tuple[str, ModelSpec, str]]:
    """Every model of the topology as (agent name, spec, key of the spec in the file):
    agents' models, stacking joiners' meta-models and routers' gate models."""
    specs: list[tuple[str, ModelSpec, str]] = []
    for a in t.agents:
        if a.model is not None:
            specs.append((a.name, a.model, f"agents.{a.name}.model"))
        if a.join is not None and a.join.model is not None:
            specs.append((a.name, a.join.model, f"agents.{a.name}.join.model"))
        if a.router is not None and a.router.model is not None:
            specs.append((a.name, a.router.model, f"agents.{a.name}.{a.router.kind}.model"))
    return specs


def _join_gives(agent: AgentSpec, described: Mapping[str, ModelInfo]) -> tuple[str, ...] | None:
    join = agent.join
    assert join is not None
    if join.strategy == "merge":
        return agent.inputs
    if join.strategy == "stacking":
        return described[agent.name].outputs if agent.name in described else None
    if join.strategy == "python":
        return None
    extra = ("branches",) if join.keep_branches else ()
    joined = () if join.strategy == "majority_vote" else (join.field,)
    return (*joined, *(JOIN_STRATEGIES[join.strategy] or ()), "missing", *extra)


def _check_joined_field(t: Topology, agent: AgentSpec, out: dict[str, frozenset[str] | None],
                        described: Mapping[str, ModelInfo]) -> None:
    join = agent.join
    if join is None or join.strategy in ("merge", "python"):
        return
    shapes: dict[str, tuple] = {}
    for branch in agent.inputs:
        fields = out.get(branch)
        if fields is not None and join.field not in fields:
            raise t.error(f"branch {branch!r} does not produce field {join.field!r} "
                          f"(it gives: {', '.join(sorted(fields))})",
                          f"agents.{agent.name}.join.field")
        shape = described[branch].shapes.get(join.field) if branch in described else None
        if shape is not None:
            shapes[branch] = shape
    if len(set(shapes.values())) > 1:
        first, *others = shapes.items()
        odd = next(b for b, s in others if s != first[1])
        raise t.error(f"branch {odd!r} gives {join.field!r} with shape {shapes[odd]}, "
                      f"branch {first[0]!r} with {first[1]}", f"agents.{agent.name}.join.field")


def check_field_flow(t: Topology, described: Mapping[str, ModelInfo]) -> None:
    """Each model's inputs must be produced upstream, where every upstream is known; each
    joiner's field must be given by every branch, with one shape. ``described`` holds
    what is known of each agent's model, by agent name."""
    out: dict[str, frozenset[str] | None] = {
        INPUT: frozenset(t.fields) if t.fields is not None else None}
    for name in t.order():
        agent = t.agent(name)
        sources = [out[src] for src in agent.inputs]
        available = (None if any(s is None for s in sources)
                     else frozenset.intersection(*sources))
        info = described.get(name)
        if agent.join is not None:
            _check_joined_field(t, agent, out, described)
            needs, gives = None, _join_gives(agent, described)
        elif agent.router is not None:
            needs, gives = info.inputs if info else None, ROUTERS[agent.router.kind].gives
        else:
            needs, gives = (info.inputs, info.outputs) if info else (None, None)
        if available is not None and needs is not None:
            missing = [f for f in needs if f not in available]
            if missing:
                raise t.error(
                    f"agent {name!r} needs field(s) {', '.join(missing)} that no upstream "
                    f"produces (available: {', '.join(sorted(available)) or 'none'})",
                    f"agents.{name}.inputs")
        out[name] = (None if available is None or gives is None
                     else (available | set(gives)) - set(agent.drop))
