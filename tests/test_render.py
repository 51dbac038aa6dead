"""Rendered Kubernetes manifests and compose files, checked offline: every Kubernetes
object strictly against the schemas of a current Kubernetes release (the
``kubernetes-validate`` package ships them), the KEDA ScaledObjects against KEDA's CRD
schema (tests/data, unknown fields made errors) and the Kafka scaler's documented
metadata, the compose file against the compose specification's schema."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from streamcompose.errors import TopologyError
from streamcompose.render.common import RenderOptions
from streamcompose.render.compose import render_compose
from streamcompose.render.k8s import render_k8s
from streamcompose.topology import Topology, load_topology
from tests.fixtures import CLI, ROOT, TOPOLOGIES

DATA = Path(__file__).parent / "data"
K8S_VERSION = kubernetes_validate.utils.latest_version()
#: the Kafka scaler's trigger metadata (KEDA pkg/scalers/kafka_scaler.go); those marked
#: resolvedEnv there may be given as <name>FromEnv
KAFKA_TRIGGER_KEYS = {
    "bootstrapServers", "bootstrapServersFromEnv", "consumerGroup", "consumerGroupFromEnv",
    "topic", "topicFromEnv", "partitionLimitation", "lagThreshold", "activationLagThreshold",
    "offsetResetPolicy", "allowIdleConsumers", "excludePersistentLag",
    "scaleToZeroOnInvalidOffset", "limitToPartitionsWithLag",
    "ensureEvenDistributionOfPartitions", "version", "tls", "sasl", "unsafeSsl"}
SCALING = """
name: scaled
partitions: 4
agents:
  prep:
    inputs: [$input]
    model: {runtime: python, entrypoint: "math:floor"}
    autoscale: {min: 1, max: 4, lag_per_replica: 500, cooldown_s: 30}
    resources: {requests: {cpu: 500m, memory: 512Mi}, limits: {memory: 1Gi}}
  gpu_model:
    inputs: [prep]
    model: {runtime: python, entrypoint: "math:floor", device: cuda}
    autoscale: {max: 2, lag_per_replica: 100, to_zero: true}
  left: {inputs: [gpu_model], model: {runtime: python, entrypoint: "math:floor"}}
  right: {inputs: [gpu_model], model: {runtime: python, entrypoint: "math:floor"}}
  vote:
    inputs: [left, right]
    join: {strategy: merge}
    autoscale: {min: 2, max: 3, lag_per_replica: 50}
"""


@pytest.fixture
def scaled(tmp_path: Path) -> Topology:
    path = tmp_path / "scaled.yaml"
    path.write_text(SCALING)
    return load_topology(path)


def _options(**kw: Any) -> RenderOptions:
    return RenderOptions(image="registry.example/streamcompose:cpu", **kw)


def _examples() -> list[Path]:
    return sorted(TOPOLOGIES.glob("*.yaml"))


def _check_scaled_object(obj: dict[str, Any], t: Topology) -> None:
    schema = json.loads((DATA / "keda_scaledobject.schema.json").read_text())
    jsonschema.validate(obj, schema)
    spec = obj["spec"]
    agent = next(a for a in t.agents if obj["metadata"]["name"].endswith(
        a.name.replace("_", "-")))
    assert agent.autoscale is not None
    assert spec["maxReplicaCount"] <= t.partitions
    assert spec["minReplicaCount"] == (0 if agent.autoscale.to_zero else agent.autoscale.min)
    assert [tr["metadata"]["topic"] for tr in spec["triggers"]] == list(
        t.input_topics(agent.name))
    for trigger in spec["triggers"]:
        assert trigger["type"] == "kafka"
        assert set(trigger["metadata"]) <= KAFKA_TRIGGER_KEYS
        assert trigger["metadata"]["consumerGroup"] == t.group_id(agent.name)
        assert trigger["metadata"]["lagThreshold"] == str(agent.autoscale.lag_per_replica)


@pytest.mark.parametrize("file", _examples(), ids=lambda p: p.stem)
def test_every_example_renders_valid_kubernetes_objects(file: Path):
    t = load_topology(file)
    objects = render_k8s(t, _options())
    kinds = [o["kind"] for o in objects]
    assert kinds.count("Deployment") == kinds.count("PodDisruptionBudget") == len(t.units())
    assert kinds.count("Job") == kinds.count("ConfigMap") == 1
    for obj in objects:
        if obj["kind"] == "ScaledObject":
            _check_scaled_object(obj, t)
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_autoscale_resources_and_gpus_reach_the_manifests(scaled: Topology):
    options = _options(gpu_node_selector={"pool": "gpu"}, models_claim="models",
                       gpu_tolerations=({"key": "nvidia.com/gpu", "operator": "Exists",
                                         "effect": "NoSchedule"},))
    objects = render_k8s(scaled, options)
    for obj in objects:
        if obj["kind"] == "ScaledObject":
            _check_scaled_object(obj, scaled)
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    prep = by_name["Deployment", "scaled-prep"]["spec"]["template"]
    container = prep["spec"]["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"},
                                      "limits": {"memory": "1Gi"}}
    assert "nodeSelector" not in prep["spec"]
    assert prep["metadata"]["annotations"]["prometheus.io/port"] == "9100"
    assert container["ports"] == [{"name": "metrics", "containerPort": 9100}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"name": "models", "mountPath": "/app/topologies/models", "readOnly": True} in \
        container["volumeMounts"]
    gpu = by_name["Deployment", "scaled-gpu-model"]["spec"]
    assert gpu["template"]["spec"]["containers"][0]["resources"] == {
        "limits": {"nvidia.com/gpu": "1"}}
    assert gpu["template"]["spec"]["nodeSelector"] == {"pool": "gpu"}
    assert gpu["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert gpu["replicas"] == 1
    to_zero = by_name["ScaledObject", "scaled-gpu-model"]["spec"]
    assert (to_zero["minReplicaCount"], to_zero["maxReplicaCount"]) == (0, 2)
    vote = by_name["ScaledObject", "scaled-vote"]["spec"]
    assert (vote["minReplicaCount"], vote["maxReplicaCount"]) == (2, 3)
    assert len(vote["triggers"]) == 2  # one per branch topic
    assert by_name["Deployment", "scaled-vote"]["spec"]["replicas"] == 2
    assert ("ScaledObject", "scaled-left") not in by_name  # no autoscale: fixed replicas


def test_kafka_settings_come_from_a_secret_never_the_config_map(scaled: Topology):
    objects = render_k8s(scaled, _options(kafka_secret="prod-kafka", keda_auth="kafka-auth"))
    config = next(o for o in objects if o["kind"] == "ConfigMap")
    assert list(config["data"]) == ["topology.yaml"]
    assert yaml.safe_load(config["data"]["topology.yaml"])["name"] == "scaled"
    text = yaml.safe_dump(config)
    assert "bootstrap" not in text and "sasl" not in text and "9092" not in text
    for obj in objects:
        pods = obj.get("spec", {}).get("template", {}).get("spec")
        if pods is None:
            continue
        env = {e["name"]: e for e in pods["containers"][0]["env"]}
        assert env["STREAMCOMPOSE_BOOTSTRAP"]["valueFrom"]["secretKeyRef"] == {
            "name": "prod-kafka", "key": "bootstrap"}
        assert env["STREAMCOMPOSE_KAFKA_CONFIG"]["value"] == \
            "/etc/streamcompose/kafka/client.properties"
        secret = next(v for v in pods["volumes"] if v["name"] == "kafka")
        assert secret["secret"]["secretName"] == "prod-kafka"
    for obj in objects:
        if obj["kind"] == "ScaledObject":
            assert all(tr["authenticationRef"] == {"name": "kafka-auth"}
                       for tr in obj["spec"]["triggers"])


@pytest.mark.parametrize("file", _examples(), ids=lambda p: p.stem)
def test_compose_file_follows_the_compose_specification(file: Path):
    t = load_topology(file)
    compose = render_compose(t, _options())
    schema = json.loads((DATA / "compose-spec.schema.json").read_text())
    jsonschema.Draft7Validator(schema).validate(compose)  # the schema's draft
    assert list(compose["services"]) == ["kafka", "topics", *t.units()]  # a group: one
    kafka = compose["services"]["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
    for unit in t.units():
        service = compose["services"][unit]
        assert service["command"][:3] == ["worker", "/etc/streamcompose/topology/topology.yaml",
                                          unit]
        assert service["deploy"]["replicas"] == t.agent(unit).replicas


def test_compose_reserves_a_gpu_for_cuda_agents(scaled: Topology):
    services = render_compose(scaled, _options())["services"]
    assert services["gpu_model"]["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "resources" not in services["prep"]["deploy"]


def test_render_cli_writes_one_file_per_object(tmp_path: Path):
    out = tmp_path / "k8s"
    done = subprocess.run([*CLI, "render", "k8s", str(TOPOLOGIES / "digits_cascade.yaml"),
                           "--image", "sc:cpu", "-o", str(out), "--gpu-toleration",
                           "nvidia.com/gpu:NoSchedule"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files[0] == "00-configmap-digits-topology.yaml"
    assert len(files) == 2 + 2 * 3
    for path in out.iterdir():
        kubernetes_validate.validate(yaml.safe_load(path.read_text()), K8S_VERSION, strict=True)
    bad = subprocess.run([*CLI, "render", "k8s", str(TOPOLOGIES / "digits_cascade.yaml"),
                          "--image", "sc:cpu", "--gpu-toleration", "gpu"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "KEY[=VALUE]:EFFECT" in bad.stderr


def test_the_checks_reject_what_their_schemas_do_not_know(scaled: Topology):
    """The validations above can fail: an unknown field is an error in each."""
    objects = render_k8s(scaled, _options())
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    scaler = next(o for o in objects if o["kind"] == "ScaledObject")
    scaler["spec"]["maxReplicas"] = 4
    with pytest.raises(jsonschema.ValidationError):
        _check_scaled_object(scaler, scaled)
    compose = render_compose(scaled, _options())
    compose["services"]["prep"]["replicas_max"] = 2
    schema = json.loads((DATA / "compose-spec.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(compose)


def test_agents_whose_kubernetes_names_collide_are_refused(tmp_path: Path):
    path = tmp_path / "clash.yaml"
    path.write_text(SCALING + "  Gpu-Model: {inputs: [prep], model: {runtime: python, "
                    "entrypoint: 'math:floor'}}\n")
    with pytest.raises(TopologyError) as info:
        render_k8s(load_topology(path), _options())
    assert info.value.key == "agents.Gpu-Model" and info.value.line == 20
    assert "'scaled-gpu-model' is also that of 'gpu_model'" in str(info.value)
