"""What the Kubernetes and compose renderings share: names, the worker's command line,
where the topology, the models and the Kafka settings sit in a container.

>>> dns_name("Digits_Cascade", "cnn_v2")
'digits-cascade-cnn-v2'
>>> worker_args(RenderOptions(image="sc:cpu"), "cnn")  # doctest: +NORMALIZE_WHITESPACE
['worker', '/etc/streamcompose/topology/topology.yaml', 'cnn', '--replica', 'auto', '--base-dir',
 '/app/topologies', '--metrics-port', '9100', '--log-format', 'json']
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

from streamcompose.deploy.control import _snapshot as deployed_yaml
from streamcompose.topology import Topology

TOPOLOGY_DIR = "/etc/streamcompose/topology"
TOPOLOGY_FILE = f"{TOPOLOGY_DIR}/topology.yaml"
KAFKA_DIR = "/etc/streamcompose/kafka"
KAFKA_PROPERTIES = "client.properties"
#: the variables every Kafka client of the project reads (bootstrap and security file)
BOOTSTRAP_ENV = "STREAMCOMPOSE_BOOTSTRAP"
KAFKA_CONFIG_ENV = "STREAMCOMPOSE_KAFKA_CONFIG"
DRAIN_GRACE_S = 60  # a stopping worker drains for up to 30 s (WorkerSettings)


@dataclass(frozen=True)
class RenderOptions:
    """How the rendered objects run the image.

    ``base_dir``: the folder in the image the topology's relative model paths and python
    modules resolve against (the image's ``/app/topologies``); ``models_claim``: a
    PersistentVolumeClaim mounted at ``<base_dir>/models`` instead of the baked models;
    ``kafka_secret``: the Secret holding ``bootstrap`` and ``client.properties``;
    ``gpu_node_selector`` / ``gpu_tolerations``: where ``device: cuda`` agents may run;
    ``keda_auth``: a KEDA TriggerAuthentication for a secured cluster.
    """

    image: str
    base_dir: str = "/app/topologies"
    models_claim: str | None = None
    kafka_secret: str | None = None
    metrics_port: int = 9100
    gpu_node_selector: Mapping[str, str] = field(default_factory=dict)
    gpu_tolerations: tuple[Mapping[str, str], ...] = ()
    keda_auth: str | None = None

    def secret(self, t: Topology) -> str:
        return self.kafka_secret or dns_name(t.name, "kafka")


def dns_name(*parts: str) -> str:
    """A Kubernetes object name (RFC 1123 label) from topology and agent names."""
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    return name[:63].rstrip("-")


def worker_args(options: RenderOptions, agent: str) -> list[str]:
    """The arguments of ``streamcompose`` that run one worker of ``agent`` in a container."""
    return ["worker", TOPOLOGY_FILE, agent, "--replica", "auto", "--base-dir",
            options.base_dir, "--metrics-port", str(options.metrics_port),
            "--log-format", "json"]


def topology_text(t: Topology) -> str:
    """The topology file as deployed (what ``deploy`` snapshots): the YAML, its name."""
    if t.source is None:
        raise ValueError(f"topology {t.name!r} was not read from a file")
    return deployed_yaml(t.source, t.name)


def is_gpu(t: Topology, agent: str) -> bool:
    model = t.agent(agent).model
    return model is not None and model.device.startswith("cuda")


class _Dumper(yaml.SafeDumper):
    """Plain YAML for people and kubectl: no anchors, multi-line strings as blocks."""

    def ignore_aliases(self, data: object) -> bool:
        return True


_Dumper.add_representer(str, lambda d, s: d.represent_scalar(
    "tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def dump(obj: object) -> str:
    """One object as YAML."""
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def dump_all(objects: list[dict]) -> str:
    """Objects as one multi-document YAML text."""
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, explicit_start=True,
                         allow_unicode=True)
