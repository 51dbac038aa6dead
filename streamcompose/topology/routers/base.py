"""What every router kind declares, once: how it is read from YAML, where its targets
are named, its own checks, what it adds to payloads, how it is drawn, and its traits.

A router kind is one module of this package with one :class:`RouterKind`, registered in
:data:`streamcompose.topology.routers.ROUTERS`; its step (what runs in the workers) is
registered in :mod:`streamcompose.kinds`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamcompose.topology.parse_specs import Reader
from streamcompose.topology.specs import AgentSpec, RouterSpec
from streamcompose.topology.yamlsource import YamlDocument

if TYPE_CHECKING:
    from streamcompose.topology.model import Topology


class RouterKind(ABC):
    """One kind of router.

    * ``stateful``: keeps open requests in a changelog (always exactly-once, inputs
      co-partitioned), and its targets' results and dead letters come back to it; it
      then writes the answer to a topic of its own.
    * ``control``: takes run-time settings on the topology's control topic.
    * ``gives``: payload fields it adds (None: unknown before running).
    """

    name: str
    stateful: bool = False
    control: bool = False
    gives: tuple[str, ...] | None = ()

    @abstractmethod
    def parse(self, r: Reader, raw: Any, key: str, base_dir: Path) -> RouterSpec:
        """The router written at ``key``."""

    @abstractmethod
    def target_keys(self, spec: RouterSpec) -> dict[str, str]:
        """Where (a key below the router's own) each target is named."""

    def check(self, t: Topology, doc: YamlDocument, agent: AgentSpec) -> None:  # noqa: B027
        """Checks of this kind beyond its targets'."""

    @abstractmethod
    def label(self, spec: RouterSpec, target: str) -> str:
        """What the arrow to ``target`` says in the graph picture."""

    def title(self, spec: RouterSpec) -> str:
        """What the router's box says under its name."""
        return self.name


def shorten(text: str, width: int = 30) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis.

    >>> shorten("'urgent' in tags or (has(priority) and priority >= 5)")
    "'urgent' in tags or (has(prio…"
    """
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1].rstrip() + "…"


def only_from(t: Topology, doc: YamlDocument, agent: AgentSpec, names: tuple[str, ...],
              role: str) -> None:
    """Agents that answer one router only (shadows, a fallback's primary and backup):
    they read nothing else and nobody reads them."""
    for name in names:
        readers = [a.name for a in t.agents if name in a.inputs]
        if readers:
            raise doc.error(f"agent {name!r} is {role}; its results cannot feed other agents "
                            f"({', '.join(readers)})", f"agents.{readers[0]}.inputs")
        if t.agent(name).inputs != (agent.name,):
            raise doc.error(f"agent {name!r} takes its requests from router {agent.name!r} "
                            f"only; its inputs must be [{agent.name}]", f"agents.{name}.inputs")
