"""Kubernetes manifests of a topology, plain YAML for ``kubectl apply``:

* a ConfigMap holding the topology file (no Kafka settings: those come from a Secret),
* per agent a Deployment (replicas, ``resources:``, ``nvidia.com/gpu`` for ``device:
  cuda`` agents, probes on ``/healthz`` and ``/readyz``, the metrics port annotated for
  Prometheus) and a PodDisruptionBudget,
* a Job creating the topics (``streamcompose topics create``),
* per agent with ``autoscale:`` a KEDA ScaledObject with the Kafka trigger on its
  consumer group and input topics.

The Kafka connection comes from the Secret ``<name>-kafka`` (``--kafka-secret``): its key
``bootstrap`` becomes ``$STREAMCOMPOSE_BOOTSTRAP`` and its key ``client.properties`` is
mounted as the file ``$STREAMCOMPOSE_KAFKA_CONFIG`` names (security settings).

>>> from streamcompose.topology import load_topology
>>> from streamcompose.render.common import RenderOptions
>>> t = load_topology("topologies/digits_cascade.yaml")
>>> [o["kind"] for o in render_k8s(t, RenderOptions(image="sc:cpu"))][:4]
['ConfigMap', 'Job', 'Deployment', 'PodDisruptionBudget']
"""

from __future__ import annotations

from typing import Any

from streamcompose.render.common import (
    BOOTSTRAP_ENV,
    DRAIN_GRACE_S,
    KAFKA_CONFIG_ENV,
    KAFKA_DIR,
    KAFKA_PROPERTIES,
    TOPOLOGY_DIR,
    TOPOLOGY_FILE,
    RenderOptions,
    dns_name,
    is_gpu,
    topology_text,
    worker_args,
)
from streamcompose.topology import Topology
from streamcompose.topology.scaling import GPU_RESOURCE

PART_OF = "streamcompose"


def _labels(t: Topology, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": dns_name(component), "app.kubernetes.io/instance":
            dns_name(t.name), "app.kubernetes.io/part-of": PART_OF}


def _meta(t: Topology, name: str, component: str) -> dict[str, Any]:
    return {"name": name, "labels": _labels(t, component)}


def _connection(t: Topology, o: RenderOptions) -> tuple[list[dict], list[dict], list[dict]]:
    """The env, volumes and mounts giving a container the topology and the Kafka
    connection (bootstrap from the Secret, its properties file mounted)."""
    env = [{"name": BOOTSTRAP_ENV, "valueFrom": {"secretKeyRef": {
               "name": o.secret(t), "key": "bootstrap"}}},
           {"name": KAFKA_CONFIG_ENV, "value": f"{KAFKA_DIR}/{KAFKA_PROPERTIES}"}]
    volumes = [{"name": "topology", "configMap": {"name": dns_name(t.name, "topology")}},
               {"name": "kafka", "secret": {"secretName": o.secret(t), "items": [
                   {"key": KAFKA_PROPERTIES, "path": KAFKA_PROPERTIES}]}}]
    mounts = [{"name": "topology", "mountPath": TOPOLOGY_DIR, "readOnly": True},
              {"name": "kafka", "mountPath": KAFKA_DIR, "readOnly": True}]
    if o.models_claim:
        volumes.append({"name": "models", "persistentVolumeClaim": {
            "claimName": o.models_claim, "readOnly": True}})
        mounts.append({"name": "models", "mountPath": f"{o.base_dir}/models",
                       "readOnly": True})
    return env, volumes, mounts


def _resources(t: Topology, agent: str) -> dict[str, dict[str, str]]:
    spec = t.agent(agent).resources
    requests = dict(spec.requests) if spec else {}
    limits = dict(spec.limits) if spec else {}
    if is_gpu(t, agent):  # extended resources are requested through limits
        limits.setdefault(GPU_RESOURCE, requests.pop(GPU_RESOURCE, "1"))
        requests.pop(GPU_RESOURCE, None)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "metrics"}, "periodSeconds": period,
            "failureThreshold": failures}


def deployment(t: Topology, agent: str, o: RenderOptions) -> dict[str, Any]:
    """The Deployment running ``agent``'s workers."""
    env, volumes, mounts = _connection(t, o)
    name = dns_name(t.name, agent)
    container = {
        "name": "worker", "image": o.image, "args": worker_args(o, agent), "env": env,
        "ports": [{"name": "metrics", "containerPort": o.metrics_port}],
        "volumeMounts": mounts,
        "startupProbe": _probe("/healthz", 5, 60),
        "livenessProbe": _probe("/healthz", 10, 3),
        "readinessProbe": _probe("/readyz", 5, 3),
    }
    resources = _resources(t, agent)
    if resources:
        container["resources"] = resources
    pod: dict[str, Any] = {"containers": [container], "volumes": volumes,
                           "terminationGracePeriodSeconds": DRAIN_GRACE_S}
    if is_gpu(t, agent):
        if o.gpu_node_selector:
            pod["nodeSelector"] = dict(o.gpu_node_selector)
        if o.gpu_tolerations:
            pod["tolerations"] = [dict(x) for x in o.gpu_tolerations]
    labels = _labels(t, agent)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(t, name, agent),
        "spec": {
            "replicas": t.agent(agent).replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels, "annotations": {
                "prometheus.io/scrape": "true", "prometheus.io/port": str(o.metrics_port),
                "prometheus.io/path": "/metrics"}}, "spec": pod}}}


def disruption_budget(t: Topology, agent: str) -> dict[str, Any]:
    """At most one worker of an agent evicted at a time: the others keep consuming."""
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": _meta(t, dns_name(t.name, agent), agent),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _labels(t, agent)}}}


def topics_job(t: Topology, o: RenderOptions) -> dict[str, Any]:
    """The Job creating the topology's topics (idempotent: it may run again)."""
    env, volumes, mounts = _connection(t, o)
    container = {"name": "topics", "image": o.image, "env": env, "volumeMounts": mounts,
                 "args": ["topics", "create", TOPOLOGY_FILE]}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": _meta(t, dns_name(t.name, "topics"), "topics"),
            "spec": {"backoffLimit": 6, "template": {
                "metadata": {"labels": _labels(t, "topics")},
                "spec": {"restartPolicy": "OnFailure", "containers": [container],
                         "volumes": volumes}}}}


def scaled_object(t: Topology, agent: str, o: RenderOptions) -> dict[str, Any] | None:
    """The KEDA ScaledObject scaling ``agent`` on its consumer lag (None without
    ``autoscale:``): one Kafka trigger per input topic; never more replicas than
    partitions, zero only with ``to_zero``."""
    spec = t.agent(agent).autoscale
    if spec is None:
        return None
    low, high = spec.bounds(t.partitions)
    trigger_auth = {"authenticationRef": {"name": o.keda_auth}} if o.keda_auth else {}
    triggers = [{"type": "kafka", "metadata": {
                    "bootstrapServersFromEnv": BOOTSTRAP_ENV,
                    "consumerGroup": t.group_id(agent), "topic": topic,
                    "lagThreshold": str(spec.lag_per_replica),
                    "offsetResetPolicy": "earliest", "allowIdleConsumers": "false"},
                 **trigger_auth} for topic in t.input_topics(agent)]
    cooldown = round(spec.cooldown_s)
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": _meta(t, dns_name(t.name, agent), agent),
            "spec": {"scaleTargetRef": {"name": dns_name(t.name, agent)},
                     "minReplicaCount": low, "maxReplicaCount": high,
                     "cooldownPeriod": cooldown, "pollingInterval": 15,
                     "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                         "scaleDown": {"stabilizationWindowSeconds": cooldown}}}},
                     "triggers": triggers}}


def _check_names(t: Topology) -> None:
    """Object names are lower-case RFC 1123 labels: agents whose names differ only in
    case or ``_``/``-`` would give one object two meanings."""
    seen: dict[str, str] = {dns_name(t.name, x): x for x in ("topology", "topics")}
    for agent in t.agent_names:
        other = seen.setdefault(dns_name(t.name, agent), agent)
        if other != agent:
            raise t.error(f"its Kubernetes name {dns_name(t.name, agent)!r} is also that of "
                          f"{other!r}; rename one of them", f"agents.{agent}")


def render_k8s(t: Topology, o: RenderOptions) -> list[dict[str, Any]]:
    """Every object of the topology, in the order to apply them."""
    _check_names(t)
    config = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": _meta(t, dns_name(t.name, "topology"), "topology"),
              "data": {"topology.yaml": topology_text(t)}}
    objects = [config, topics_job(t, o)]
    for agent in t.units():
        objects += [deployment(t, agent, o), disruption_budget(t, agent)]
        scaler = scaled_object(t, agent, o)
        if scaler is not None:
            objects.append(scaler)
    return objects
