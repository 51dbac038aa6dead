"""Turning a topology YAML document into a :class:`Topology`.

This module checks the shape of the document (known keys, value types, ranges); the
graph-level checks (references, cycles, topics, replicas, routers, joiners) are in
:mod:`streamcompose.topology.validate`. Loading reads the YAML file and nothing else: no
model file is opened, no entrypoint imported, so a worker that loads the topology pays
only for its own model. What needs the models (files that exist and load, entrypoints
that import, the fields flowing between models) is checked by
``streamcompose.runtimes.check.check_models(topology)``, which ``validate``, ``graph``
and ``deploy`` run on the loaded topology.

>>> t = load_topology_text('''
... name: demo
... agents:
...   inc: {inputs: [$input], model: {runtime: python, entrypoint: "math:floor"}}
... ''')
>>> t.agent("inc").model.entrypoint
'math:floor'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamcompose.topology.colocate import group_keys, parse_colocate, validate_colocate
from streamcompose.topology.model import DELIVERIES, AgentSpec, Topology
from streamcompose.topology.monitor_spec import MonitorSpec, parse_monitor
from streamcompose.topology.parse_routers import ROUTER_KEYS, parse_router
from streamcompose.topology.parse_serving import parse_cache, parse_deadline, parse_priorities
from streamcompose.topology.parse_specs import Reader, parse_batch, parse_join, parse_model
from streamcompose.topology.replication import ReplicationSpec, parse_replication
from streamcompose.topology.scaling import parse_autoscale, parse_resources
from streamcompose.topology.validate import validate_topology
from streamcompose.topology.yamlsource import YamlDocument, read_yaml_file, read_yaml_text

TOPOLOGY_KEYS = {"name", "input", "output", "partitions", "output_format", "fields", "agents",
                 "delivery", "max_message_bytes", "replication", "deadline_ms", "priorities",
                 "colocate"}
AGENT_KEYS = {"inputs", "model", "join", "batch", "replicas", "drop", "delivery", "autoscale",
              "resources", "deadline_ms", "cache", "monitor", *ROUTER_KEYS}
MIN_MESSAGE_BYTES = 1 << 16


def _delivery(r: Reader, raw: Any, key: str) -> str:
    value = r.string(raw, key)
    if value not in DELIVERIES:
        raise r.doc.error(f"must be one of {', '.join(DELIVERIES)}, got {value!r}", key)
    return value


def _agent(r: Reader, name: str, raw: Any, base_dir: Path) -> AgentSpec:
    key = f"agents.{name}"
    r.name(name, key)
    a = r.mapping(raw, key, AGENT_KEYS)
    if "inputs" not in a:
        raise r.doc.error("missing 'inputs' (use [$input] to read the topology's input)", key)
    kinds = [k for k in ("model", "join", *ROUTER_KEYS) if k in a]
    if len(kinds) != 1:
        raise r.doc.error("an agent needs one of: model, join, " + ", ".join(ROUTER_KEYS)
                          if not kinds else "an agent has exactly one of model, join or a "
                          f"router; this one has {' and '.join(kinds)}", key)
    model = parse_model(r, a["model"], f"{key}.model", base_dir) if "model" in a else None
    autoscale = parse_autoscale(r, a["autoscale"], f"{key}.autoscale") if "autoscale" in a \
        else None
    if autoscale is not None and "replicas" in a:
        raise r.doc.error("autoscale decides the number of workers (from autoscale.min); "
                          "remove replicas", f"{key}.replicas")
    return AgentSpec(
        name=name,
        inputs=r.strings(a["inputs"], f"{key}.inputs"),
        model=model,
        join=parse_join(r, a["join"], f"{key}.join", base_dir) if "join" in a else None,
        router=parse_router(r, kinds[0], a[kinds[0]], f"{key}.{kinds[0]}", base_dir)
        if kinds[0] in ROUTER_KEYS else None,
        batch=parse_batch(r, a.get("batch", {}), f"{key}.batch",
                          model.device if model is not None else "cpu"),
        replicas=autoscale.min if autoscale is not None
        else r.number(a.get("replicas", 1), f"{key}.replicas", integer=True, minimum=1),
        drop=r.strings(a["drop"], f"{key}.drop") if "drop" in a else (),
        delivery=_delivery(r, a["delivery"], f"{key}.delivery") if "delivery" in a else None,
        autoscale=autoscale,
        resources=parse_resources(r, a["resources"], f"{key}.resources")
        if "resources" in a else None,
        deadline_ms=parse_deadline(r, a["deadline_ms"], f"{key}.deadline_ms")
        if "deadline_ms" in a else None,
        cache=parse_cache(r, a["cache"], f"{key}.cache") if "cache" in a else None,
        monitor=_monitor(r, a, key, base_dir, kinds[0]),
    )


def _monitor(r: Reader, a: dict[str, Any], key: str, base_dir: Path, kind: str
             ) -> MonitorSpec | None:
    if "monitor" not in a:
        return None
    if kind != "model":
        raise r.doc.error(f"monitor watches a model agent's inputs and results; this agent "
                          f"is a {kind}", f"{key}.monitor")
    return parse_monitor(r, a["monitor"], f"{key}.monitor", base_dir)


def topology_from_document(doc: YamlDocument, base_dir: Path,
                           source: Path | None = None) -> Topology:
    """Build and validate a :class:`Topology` from a parsed document."""
    r = Reader(doc)
    top = r.mapping(doc.data, "", TOPOLOGY_KEYS)
    if "name" not in top:
        raise doc.error("missing 'name'", "")
    if not top.get("agents"):
        raise doc.error("a topology needs at least one agent", "agents")
    raw_agents = top["agents"]
    agents = r.mapping(raw_agents, "agents", set(raw_agents) if isinstance(raw_agents, dict)
                       else set())
    output_format = top.get("output_format", "msgpack")
    if output_format not in ("msgpack", "json"):
        raise doc.error(f"must be msgpack or json, got {output_format!r}", "output_format")
    fields = top.get("fields")
    topology = Topology(
        name=r.name(top["name"], "name"),
        input=r.string(top["input"], "input") if "input" in top else None,
        output=r.string(top["output"], "output") if "output" in top else None,
        partitions=r.number(top.get("partitions", 3), "partitions", integer=True, minimum=1),
        output_format=output_format,
        fields=r.strings(fields, "fields") if fields is not None else None,
        agents=tuple(_agent(r, name, raw, base_dir) for name, raw in agents.items()),
        base_dir=base_dir,
        source=source,
        delivery=_delivery(r, top["delivery"], "delivery") if "delivery" in top
        else "exactly_once",
        max_message_bytes=r.number(top.get("max_message_bytes", 1 << 20), "max_message_bytes",
                                   integer=True, minimum=MIN_MESSAGE_BYTES),
        replication=parse_replication(r, top["replication"], "replication")
        if "replication" in top else ReplicationSpec(),
        deadline_ms=parse_deadline(r, top["deadline_ms"], "deadline_ms")
        if "deadline_ms" in top else None,
        priorities=parse_priorities(r, top["priorities"], "priorities")
        if "priorities" in top else None,
        colocate=parse_colocate(r, top["colocate"]) if "colocate" in top else (),
        where=doc.source_map(),
    )
    validate_topology(topology, doc)
    if topology.colocate:
        validate_colocate(topology, doc, group_keys(top["colocate"]))
    return topology


def load_topology(path: str | Path, name: str | None = None,
                  base_dir: str | Path | None = None) -> Topology:
    """Read, check and return the topology in a YAML file (its graph only: see the module
    documentation; ``check_models`` checks the models it names).

    ``name`` replaces the file's ``name`` (and so the topics derived from it), to deploy
    one file several times. Raises :class:`~streamcompose.errors.TopologyError` naming
    the file, key and line of the first problem found. ``base_dir`` resolves relative
    model paths and python modules instead of the file's folder.
    """
    path = Path(path).resolve()
    doc = read_yaml_file(path)
    if name is not None and isinstance(doc.data, dict):
        doc.data["name"] = name
    return topology_from_document(doc, Path(base_dir).resolve() if base_dir else path.parent,
                                  path)


def load_topology_text(text: str, base_dir: str | Path = ".") -> Topology:
    """Like :func:`load_topology` for YAML text; relative paths resolve against base_dir."""
    return topology_from_document(read_yaml_text(text), Path(base_dir).resolve())
