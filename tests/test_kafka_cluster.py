"""A topology on a local 3-node Kafka cluster survives the SIGKILL of a broker: the
leader of an input partition dies mid-stream and comes back later; under exactly-once
delivery nothing is lost, duplicated or partial.

The cluster is this test's own, on ports of its own (``$STREAMCOMPOSE_CLUSTER_PORT``
pins the first of the six it needs), never the suite's broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from fixtures import free_ports
from probe import Probe

from streamcompose.kafka.broker import (
    BrokerInfo,
    broker_status,
    ensure_kafka_classpath,
    start_broker,
    stop_broker,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

NODES = 3
REQUESTS = 600
RATE = 100.0
DOWN_S = 6.0  # the killed broker stays down longer than the cluster takes to fence it

STEPS = '''
def inc(batch):
    return [{"x": p["x"] + 1} for p in batch]

def even(batch):
    return [{"proba": [0.75, 0.25]} for _ in batch]

def odd(batch):
    return [{"proba": [0.25, 0.75]} for _ in batch]

inc.inputs = ("x",)
'''

TOPOLOGY = '''
name: replicated
fields: [x]
agents:
  inc: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:inc"},
        batch: {max_size: 16, max_wait_ms: 5}}
  a: {inputs: [inc], model: {runtime: python, entrypoint: "STEPS:even"}}
  b: {inputs: [inc], model: {runtime: python, entrypoint: "STEPS:odd"}}
  vote:
    inputs: [a, b]
    join: {strategy: soft_vote, weights: {a: 2}, timeout_ms: 20000}
'''



@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, str]]:
    """The cluster's first port, data dir and Kafka home (the folder of the jars, found
    before a test moves ``$STREAMCOMPOSE_HOME`` elsewhere)."""
    port = free_ports(2 * NODES, "STREAMCOMPOSE_CLUSTER_PORT", 29400)
    data_dir = tmp_path_factory.mktemp("cluster")
    kafka_home = str(Path(ensure_kafka_classpath()).parent.parent)
    start_broker(port, data_dir, fresh=True, nodes=NODES, timeout=180)
    yield port, data_dir, kafka_home
    stop_broker(port, data_dir)


async def _describe(bootstrap: str, topic: str) -> tuple[dict[int, int], list[int], str]:
    """The topic's partition leaders, the replicas of partition 0, and its min.insync."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = (await admin.describe_topics([topic]))[0]["partitions"]
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"min.insync.replicas": None})])
    finally:
        await admin.close()
    leaders = {p["partition"]: p["leader"] for p in described}
    replicas = next(p["replicas"] for p in described if p["partition"] == 0)
    min_insync = next(e[1] for r in configs for res in r.resources for e in res[4])
    return leaders, replicas, min_insync


def _kill_and_restart(probe: Probe, info: BrokerInfo, node_id: int, port: int,
                      data_dir: Path, events: dict[str, float]) -> None:
    """SIGKILL the node a third into the stream, start it again two thirds in, once it
    has been down ``DOWN_S``."""
    victim = next(n for n in info.nodes if n.node_id == node_id)
    while probe.sent < REQUESTS / 3:
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    events["killed"] = time.monotonic()
    while probe.sent < 2 * REQUESTS / 3 or time.monotonic() < events["killed"] + DOWN_S:
        time.sleep(0.02)
    start_broker(port, data_dir, timeout=180)
    events["restarted"] = time.monotonic()


@pytest.mark.timeout(480)  # three JVMs start, one twice: minutes on a loaded machine
def test_broker_killed_under_a_cascade_and_a_joiner(cli, write_topology, unique, cluster,
                                                    monkeypatch):
    port, data_dir, kafka_home = cluster
    monkeypatch.setenv("KAFKA_HOME", kafka_home)  # the restart uses the jars it started with
    info = broker_status(port, data_dir)
    assert info.running and len(info.nodes) == NODES
    bootstrap = info.bootstrap
    m = json.loads(cli("deploy", str(write_topology(TOPOLOGY, STEPS)), "--name", unique,
                       "--bootstrap", bootstrap, "--json").stdout)
    try:
        leaders, replicas, min_insync = asyncio.run(_describe(bootstrap, m["input"]))
        assert len(replicas) == 3 and min_insync == "2"

        probe = Probe(bootstrap, m, REQUESTS, RATE, lambda i: {"x": i}).start()
        events: dict[str, float] = {}
        chaos = threading.Thread(target=_kill_and_restart,
                                 args=(probe, info, leaders[0], port, data_dir, events))
        chaos.start()
        seen = probe.wait(300)
        chaos.join()
        assert set(events) == {"killed", "restarted"}
        assert seen.lost(probe.ids) == []
        assert seen.duplicated() == []
        assert seen.dead == []
        partial = [rid for rid, p, _ in seen.results if p.get("missing")]
        assert partial == [], f"{len(partial)} partial answers, e.g. {partial[:5]}"
        assert all(p["label"] == 0 and p["x"] == int(rid[1:]) + 1
                   for rid, p, _ in seen.results)
        nodes = json.loads(cli("broker", "status", "--port", str(port), "--data-dir",
                               str(data_dir), "--json").stdout)["nodes"]
        assert [(n["node_id"], n["port"], n["controller_port"], n["running"]) for n in nodes] \
            == [(k, port + 2 * (k - 1), port + 2 * k - 1, True) for k in range(1, NODES + 1)]
        restarted = next(n for n in nodes if n["node_id"] == leaders[0])
        assert restarted["pid"] not in (None, *(n.pid for n in info.nodes))
        status = json.loads(cli("status", unique, "--json", "--no-lag").stdout)
        assert all(w["alive"] for a in status["agents"] for w in a["workers"])
    finally:
        cli("stop", unique, check=False)
