"""A docker compose file of a topology: an Apache Kafka broker (KRaft, one node), a
one-shot service creating the topics, and one service per agent (its ``replicas``, a GPU
reserved for ``device: cuda`` agents). The topology file is given to the services as a
compose ``config``; the Kafka connection as ``$STREAMCOMPOSE_BOOTSTRAP``. From the host,
the broker answers on ``localhost:9094``.

>>> from streamcompose.topology import load_topology
>>> from streamcompose.render.common import RenderOptions
>>> c = render_compose(load_topology("topologies/digits_cascade.yaml"),
...                    RenderOptions(image="sc:cpu"))
>>> list(c["services"])
['kafka', 'topics', 'preprocess', 'cnn', 'postprocess']
"""

from __future__ import annotations

from typing import Any

from streamcompose.render.common import (
    BOOTSTRAP_ENV,
    DRAIN_GRACE_S,
    TOPOLOGY_FILE,
    RenderOptions,
    is_gpu,
    topology_text,
    worker_args,
)
from streamcompose.topology import Topology

KAFKA_IMAGE = "apache/kafka:4.1.1"
KAFKA_BOOTSTRAP = "kafka:9092"
#: the broker as the host that runs compose reaches it (publish, subscribe, status)
HOST_BOOTSTRAP = "HOST://localhost:9094"


def _kafka() -> dict[str, Any]:
    return {
        "image": KAFKA_IMAGE,
        "environment": {
            "KAFKA_NODE_ID": "1",
            "KAFKA_PROCESS_ROLES": "broker,controller",
            "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093,HOST://:9094",
            "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{KAFKA_BOOTSTRAP},{HOST_BOOTSTRAP}",
            "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,HOST:PLAINTEXT",
            "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@kafka:9093",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        },
        "healthcheck": {
            "test": ["CMD", "/opt/kafka/bin/kafka-broker-api-versions.sh",
                     "--bootstrap-server", "localhost:9092"],
            "interval": "5s", "timeout": "10s", "retries": 20},
        "ports": ["127.0.0.1:9094:9094"],
        "volumes": ["kafka-data:/var/lib/kafka/data"],
    }


def _service(o: RenderOptions, args: list[str]) -> dict[str, Any]:
    service: dict[str, Any] = {
        "image": o.image, "command": args,
        "environment": {BOOTSTRAP_ENV: KAFKA_BOOTSTRAP},
        "configs": [{"source": "topology", "target": TOPOLOGY_FILE}]}
    if o.models_claim:  # here: a host folder or named volume holding the models
        service["volumes"] = [f"{o.models_claim}:{o.base_dir}/models:ro"]
    return service


def render_compose(t: Topology, o: RenderOptions) -> dict[str, Any]:
    """The compose file as a mapping (``yaml.safe_dump`` it)."""
    topics = {**_service(o, ["topics", "create", TOPOLOGY_FILE]), "restart": "on-failure",
              "depends_on": {"kafka": {"condition": "service_healthy"}}}
    services: dict[str, Any] = {"kafka": _kafka(), "topics": topics}
    probe = ("import urllib.request; urllib.request.urlopen("
             f"'http://127.0.0.1:{o.metrics_port}/healthz', timeout=5)")
    for agent in t.units():
        service = {**_service(o, worker_args(o, agent)),
                   "depends_on": {"topics": {"condition": "service_completed_successfully"}},
                   "restart": "unless-stopped", "stop_grace_period": f"{DRAIN_GRACE_S}s",
                   "expose": [str(o.metrics_port)],
                   "healthcheck": {"test": ["CMD", "python", "-c", probe],
                                   "interval": "10s", "timeout": "5s", "retries": 3,
                                   "start_period": "300s"},
                   "deploy": {"replicas": t.agent(agent).replicas}}
        if is_gpu(t, agent):
            service["deploy"]["resources"] = {"reservations": {"devices": [
                {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]}}
        services[agent] = service
    return {"name": t.name.lower(), "services": services,
            "configs": {"topology": {"content": topology_text(t)}},
            "volumes": {"kafka-data": {}}}
