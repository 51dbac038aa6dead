"""Co-located agents: several agents of a topology run in one worker process.

A topology's ``colocate`` key names groups of agents::

    colocate:
      ensemble: [features, logreg, forest, mlp, cnn, vote]
      # or, with options: ensemble: {agents: [...], inspect: true}

Inside a group records pass in memory; the group's boundaries stay Kafka topics. The
group is deployed as one *worker unit* (one process per replica) that consumes every
topic its members read from outside the group and writes every topic they write out of
it. This module holds the group's spec, its parsing and validation, and the topics it
reads and writes; :mod:`streamcompose.colocate` runs it.

>>> from streamcompose.topology import load_topology_text
>>> t = load_topology_text('''
... name: demo
... colocate: {pair: [a, b]}
... agents:
...   a: {inputs: [$input], model: {runtime: python, entrypoint: "copy:copy"}}
...   b: {inputs: [a], model: {runtime: python, entrypoint: "copy:copy"}}
... ''')
>>> t.units(), t.input_topics("pair"), exits(t, t.group("pair"))
(('pair',), ('demo.in',), ('demo.out', 'demo.dlq'))
>>> "demo.a" in t.topics()  # in memory only, unless the group has inspect: true
False
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamcompose.topology.specs import INPUT, AgentSpec, BatchSpec

if TYPE_CHECKING:
    from streamcompose.topology.model import Topology
    from streamcompose.topology.parse_specs import Reader

GROUP_KEYS = {"agents", "inspect"}
#: router kinds a group cannot hold: a fallback waits on deadlines across records, a
#: split takes run-time weights on the control topic addressed to its own workers
NOT_COLOCATED = {"fallback": "a fallback router waits on deadlines and keeps a changelog",
                 "split": "a split router follows its weights on the control topic"}


@dataclass(frozen=True)
class Colocation:
    """A group of agents run by one worker process per replica. ``inspect`` also writes
    the results passed in memory to their topics, for ``streamcompose inspect``."""

    name: str
    members: tuple[str, ...]
    inspect: bool = False


def parse_colocate(r: Reader, raw: Any) -> tuple[Colocation, ...]:
    """``{name: [agents]}``, ``{name: {agents: [...], inspect: bool}}`` or a list of agent
    lists (each group then named after its agents joined by ``-``)."""
    if isinstance(raw, list):
        groups = {}
        for i, members in enumerate(raw):
            names = r.strings(members, f"colocate.{i}")
            if "-".join(names) in groups:
                raise r.doc.error(f"the group {list(names)} is given twice", f"colocate.{i}")
            groups["-".join(names)] = (names, False, f"colocate.{i}")
    elif isinstance(raw, dict):
        groups = {}
        for name, value in raw.items():
            key = f"colocate.{r.name(name, 'colocate')}"
            if isinstance(value, dict):
                g = r.mapping(value, key, GROUP_KEYS)
                inspect = g.get("inspect", False)
                if not isinstance(inspect, bool):
                    raise r.doc.error(f"must be true or false, got {inspect!r}",
                                      f"{key}.inspect")
                groups[name] = (r.strings(g.get("agents"), f"{key}.agents"), inspect,
                                f"{key}.agents")
            else:
                groups[name] = (r.strings(value, key), False, key)
    else:
        raise r.doc.error("must map group names to lists of agents (or be a list of agent "
                          f"lists), got {type(raw).__name__}", "colocate")
    return tuple(Colocation(name, members, inspect) for name, (members, inspect, _)
                 in groups.items())


def group_keys(raw: Any) -> list[str]:
    """The document key of each group's agent list, in the order of :func:`parse_colocate`."""
    if isinstance(raw, list):
        return [f"colocate.{i}" for i in range(len(raw))]
    return [f"colocate.{name}.agents" if isinstance(value, dict) else f"colocate.{name}"
            for name, value in raw.items()]


def input_topic(t: Topology, source: str, agent: str) -> str:
    """The topic ``agent`` reads ``source``'s records from: the router's edge to it, or
    ``source``'s results."""
    return t.edge_topic(source, agent) if agent in t.targets(source) else t.topic_of(source)


def consumers(t: Topology, topic: str) -> list[str]:
    """The agents that read ``topic``."""
    return [a.name for a in t.agents if topic in t.input_topics(a.name)]


def internal_topics(t: Topology, g: Colocation) -> tuple[str, ...]:
    """The topics between the group's members that nothing outside the group reads: they
    pass in memory (and exist only with ``inspect``)."""
    inside = set(g.members)
    topics = {input_topic(t, src, m) for m in g.members for src in t.agent(m).inputs
              if src in inside}
    return tuple(sorted(topic for topic in topics if set(consumers(t, topic)) <= inside))


def entries(t: Topology, g: Colocation) -> dict[str, tuple[str, ...]]:
    """Each topic the group reads from outside, with the members that read it."""
    inside = set(g.members)
    found: dict[str, list[str]] = {}
    for m in g.members:
        for src in t.agent(m).inputs:
            if src not in inside:
                for topic in t.entry_topics() if src == INPUT else (input_topic(t, src, m),):
                    found.setdefault(topic, []).append(m)
    return {topic: tuple(dict.fromkeys(ms)) for topic, ms in found.items()}


def writes(t: Topology, name: str) -> list[str]:
    """Every topic an agent writes results or routed requests to (unless a group passes
    them in memory)."""
    topics = [t.edge_topic(name, x) for x in t.targets(name)]
    if t.emits_results(name):
        topics.append(t.topic_of(name))
    return topics


def exits(t: Topology, g: Colocation) -> tuple[str, ...]:
    """The topics the group writes: its members' results and routed requests, less the
    ones passed in memory (unless ``inspect``), then the dead-letter topics."""
    hidden = () if g.inspect else internal_topics(t, g)
    topics = [topic for m in g.members for topic in writes(t, m) if topic not in hidden]
    return tuple(dict.fromkeys([*topics, *(t.dlq_of(m) for m in g.members), t.dlq_topic]))


def group_spec(t: Topology, g: Colocation) -> AgentSpec:
    """The group as the worker core sees one agent: the sources it reads from outside,
    batched as its entry members batch (the largest ``max_size`` and ``max_wait_ms`` of
    the members that read from outside), their replicas, and exactly-once delivery
    unless every member is at-least-once (a joiner in a group keeps no state, so it has
    the delivery of any agent)."""
    inside = set(g.members)
    entry = [t.agent(m) for m in g.members if any(s not in inside for s in t.agent(m).inputs)]
    deliveries = {t.agent(m).delivery or t.delivery for m in g.members}
    return AgentSpec(
        name=g.name,
        inputs=tuple(dict.fromkeys(s for a in entry for s in a.inputs if s not in inside)),
        batch=BatchSpec(max(a.batch.max_size for a in entry),
                        max(a.batch.max_wait_ms for a in entry)),
        replicas=t.agent(g.members[0]).replicas,
        delivery="at_least_once" if deliveries == {"at_least_once"} else "exactly_once",
        members=g.members)


def levels(t: Topology, g: Colocation) -> list[list[str]]:
    """The members in waves: each after every member it reads from; the members of one
    wave (a fan-out's branches) run concurrently."""
    inside = set(g.members)
    depth: dict[str, int] = {}
    for name in t.order():
        if name in inside:
            depth[name] = 1 + max((depth[s] for s in t.agent(name).inputs if s in inside),
                                  default=-1)
    waves: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for name, d in depth.items():
        waves[d].append(name)
    return waves


def unit_of(t: Topology, agent: str) -> str:
    """The worker unit that runs ``agent``: its group, or itself."""
    group = t.group_of(agent)
    return group.name if group is not None else agent


def _sources(t: Topology, agent: str, inside: set[str]) -> set[str]:
    """The topics from outside the group whose records reach ``agent`` inside it."""
    return {x for src in t.agent(agent).inputs
            for x in ({input_topic(t, src, agent)} if src not in inside
                      else _sources(t, src, inside))}


def _reachable(t: Topology, start: Iterable[str], through: set[str]) -> set[str]:
    """Agents downstream of ``start`` by paths whose inner agents are all in ``through``."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        for a in t.agents:
            if name in a.inputs and a.name not in seen:
                seen.add(a.name)
                if a.name in through:
                    todo.append(a.name)
    return seen


def validate_colocate(t: Topology, doc: Any, keys: list[str]) -> None:
    """Unknown or repeated agents, agents in two groups, groups that are not connected or
    that a path leaves and re-enters, kinds that cannot be co-located, joiners whose
    branches run elsewhere, members with different replicas."""
    names = set(t.agent_names)
    owner: dict[str, str] = {}
    for g, key in zip(t.colocate, keys, strict=True):
        if g.name in names:
            raise doc.error(f"group {g.name!r} has the name of an agent; name it otherwise",
                            key)
        if len(g.members) < 2:
            raise doc.error("a group co-locates two agents or more", key)
        for i, m in enumerate(g.members):
            if m not in names:
                raise doc.error(f"unknown agent {m!r} (agents: {', '.join(sorted(names))})",
                                f"{key}.{i}")
            if m in owner:
                where = ("twice in this group" if owner[m] == g.name
                         else f"already in group {owner[m]!r}")
                raise doc.error(f"agent {m!r} is {where}: an agent runs in one group", f"{key}.{i}")
            owner[m] = g.name
        _check_members(t, doc, g, key)


def _check_members(t: Topology, doc: Any, g: Colocation, key: str) -> None:
    inside = set(g.members)
    for m in g.members:
        spec = t.agent(m)
        if spec.router is not None and spec.router.kind in NOT_COLOCATED:
            raise doc.error(f"agent {m!r} cannot be co-located: "
                            f"{NOT_COLOCATED[spec.router.kind]}", key)
        if spec.join is not None:
            outside = [b for b in spec.inputs if b not in inside]
            if outside:
                raise doc.error(f"joiner {m!r} joins in memory in group {g.name!r}, but its "
                                f"branch {outside[0]!r} runs outside it; put its branches in "
                                "the group, or the joiner out of it", key)
            topics = sorted({x for b in spec.inputs for x in _sources(t, b, inside)})
            if len(topics) > 1:
                raise doc.error(f"joiner {m!r} joins in memory what one consumed record gives "
                                f"its branches, but they read different topics from outside "
                                f"group {g.name!r} ({', '.join(topics)}); put the agent that "
                                "fans out to them in the group too", key)
        if spec.replicas != t.agent(g.members[0]).replicas:
            raise doc.error(f"the agents of a group run in one process per replica: {m!r} has "
                            f"replicas {spec.replicas}, {g.members[0]!r} has "
                            f"{t.agent(g.members[0]).replicas}", f"agents.{m}.replicas")
    linked = {g.members[0]}
    grew = True
    while grew:
        near = {a.name for a in t.agents if a.name in inside and a.name not in linked and (
            linked & set(a.inputs) or a.name in {s for n in linked for s in t.agent(n).inputs})}
        linked |= near
        grew = bool(near)
    if linked != inside:
        apart = ", ".join(m for m in g.members if m not in linked)
        raise doc.error(f"group {g.name!r} is not connected: {apart} exchange no records "
                        f"with {g.members[0]!r} inside the group", key)
    outside = {a for a in t.agent_names if a not in inside}
    back = _reachable(t, _reachable(t, g.members, inside) & outside, outside) & inside
    if back:
        raise doc.error(f"records leave group {g.name!r} and come back into it (at "
                        f"{', '.join(sorted(back))}): a group must hold every agent between "
                        "two of its members", key)


def manifest_fields(t: Topology, name: str) -> dict[str, Any]:
    """What a deployment's manifest says of a worker unit beyond any agent's: for a group,
    the topics it writes results to (``outputs``), its members and, for each, the topics
    it writes that exist (``topics``) and the ones it passes in memory (``in_memory``);
    nothing for an agent."""
    group = t.group(name)
    if group is None:
        return {}
    hidden = set(() if group.inspect else internal_topics(t, group))
    members = {m: {"topics": [x for x in writes(t, m) if x not in hidden],
                   "in_memory": [x for x in writes(t, m) if x in hidden]}
               for m in group.members}
    return {"outputs": list(dict.fromkeys(x for m in members.values() for x in m["topics"])),
            "inspect": group.inspect, "members": members}
