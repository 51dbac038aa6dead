"""Model versions and lineage without a broker: the ``version`` key and its errors, the
default content hash, the lineage a joiner merges (across a changelog restore), and the
parts of ``upgrade`` that refuse before touching a deployment."""

from __future__ import annotations

import json

import pytest

from streamcompose.codec import Trace, encode_payload
from streamcompose.codec.lineage import LINEAGE, read_lineage
from streamcompose.deploy.registry import Deployment
from streamcompose.deploy.upgrade import rollback, upgrade
from streamcompose.errors import DeploymentError, TopologyError
from streamcompose.kinds import build_step
from streamcompose.steps.stateful import Arrival
from streamcompose.topology import load_topology_text
from streamcompose.topology.versions import agent_version

STEPS = '''
def inc(batch):
    return [{"x": p["x"] + 1} for p in batch]
'''

TOPOLOGY = '''
name: v
agents:
  a: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:inc"VERSION}}
  b: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:inc"}}
  j: {inputs: [a, b], join: {strategy: merge}}
'''


@pytest.fixture
def load(tmp_path):
    module = f"versions_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text(STEPS)

    def run(version: str = ""):
        text = TOPOLOGY.replace("STEPS", module).replace("VERSION", version)
        return load_topology_text(text, tmp_path)

    return run


def test_declared_and_default_versions(load, tmp_path):
    assert agent_version(load(", version: 3"), "a") == "3"
    default = agent_version(load(), "a")
    assert len(default) == 8 and default == agent_version(load(), "b")
    (tmp_path / f"versions_{tmp_path.name}.py").write_text(STEPS + "\n# retrained\n")
    assert agent_version(load(), "a") != default
    assert agent_version(load(), "j") == agent_version(load(), "j")  # its settings' hash


@pytest.mark.parametrize("value", ['""', "[1]", "true"])
def test_bad_version_names_its_line(load, value):
    with pytest.raises(TopologyError) as info:
        load(f", version: {value}")
    assert (info.value.key, info.value.line) == ("agents.a.model.version", 4), str(info.value)
    assert "must be a non-empty string or number" in str(info.value)


def branch(topic: str, rid: str, lineage: list[dict]) -> Arrival:
    headers = ((LINEAGE, json.dumps(lineage).encode()),)
    return Arrival(topic, 0, 1, 10, encode_payload({"x": 1}), Trace(rid, 5, ("a",), None,
                                                                      headers))


def test_joiner_merges_its_branches_lineage_across_a_restore(load):
    pre = {"agent": "pre", "version": "1", "replica": 0, "batch": "0-1-1"}
    a = {"agent": "a", "version": "2", "replica": 0, "batch": "0-2-1"}
    b = {"agent": "b", "version": "3", "replica": 1, "batch": "1-3-7"}
    step = build_step(load(), "j")
    sends = step.handle([branch("v.a", "r1", [pre, a])], 20)
    restored = build_step(load(), "j")
    for s in sends:
        if s.topic == restored.changelog:
            restored.restore(s.key, s.value)
    restored.store.restored()
    (out,) = [s for s in restored.handle([branch("v.b", "r1", [pre, b])], 30)
              if s.topic == "v.out"]
    assert read_lineage(out.headers) == [pre, a, b]


def test_upgrade_refuses_before_touching_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMCOMPOSE_HOME", str(tmp_path))
    with pytest.raises(DeploymentError, match="no deployment named 'gone'"):
        upgrade("gone", "a", version="2")
    d = Deployment("here")
    d.write_manifest({"name": "here", "base_dir": str(tmp_path), "supervisor_pid": None})
    d.write_snapshot(TOPOLOGY.replace("STEPS", "nowhere").replace("VERSION", ""))
    with pytest.raises(DeploymentError, match=r"no agent 'zz' in 'here' \(agents: a, b, j\)"):
        upgrade("here", "zz", version="2")
    with pytest.raises(DeploymentError, match="'j' of 'here' has no model to upgrade"):
        upgrade("here", "j", version="2")
    with pytest.raises(DeploymentError, match="no earlier version to roll back to"):
        rollback("here", "a")
    assert not d.next_snapshot_file.exists() and not d.upgrade_file.exists()


FALLBACK = '''
name: f
agents:
  safe: {inputs: [$input], fallback: {primary: big, backup: small, deadline_ms: 200}}
  big: {inputs: [safe], model: {runtime: python, entrypoint: "STEPS:inc"}}
  small: {inputs: [safe], model: {runtime: python, entrypoint: "STEPS:inc"}}
'''


def test_fallback_router_forwards_the_lineage_it_got(tmp_path):
    module = f"fallback_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text(STEPS)
    step = build_step(load_topology_text(FALLBACK.replace("STEPS", module), tmp_path), "safe")
    upstream = [{"agent": "client-side", "version": "1", "replica": 0, "batch": "0-1-1"}]
    sends = step.handle([branch("f.in", "r1", upstream)], 20)
    (forwarded,) = [s for s in sends if s.topic == "f.safe.big"]
    assert read_lineage(forwarded.headers) == upstream
