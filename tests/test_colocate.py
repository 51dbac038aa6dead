"""Co-located groups without a broker: the topology side (topics, units, validation with
file:line errors), the group step under LocalRunner (the same answers as the agents
apart, dead letters naming the member, partial joins), the pictures and the merged
metrics of a group's worker."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from fixtures import TOPOLOGIES, import_topology_module, trained
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from streamcompose.agent.group import _Merged
from streamcompose.colocate.overlap import OverlapChoice
from streamcompose.colocate.step import GroupStep
from streamcompose.errors import TopologyError
from streamcompose.metrics import AgentMetrics
from streamcompose.testing import LocalRunner
from streamcompose.topology import load_topology, load_topology_text
from streamcompose.topology.graph import to_dot, to_mermaid, to_png

STEPS = '''
def inc(batch):
    return [{"x": p["x"] + 1} for p in batch]

def double(batch):
    return [{"y": p["x"] * 2} for p in batch]

def square(batch):
    out = []
    for p in batch:
        if p["x"] < 0:
            raise ValueError("square refuses negative x")
        out.append({"y": p["x"] ** 2})
    return out
'''

FAN = '''
name: fan
fields: [x]
COLOCATE
agents:
  inc: {inputs: [$input], model: {runtime: python, entrypoint: "STEPS:inc"}}
  double: {inputs: [inc], model: {runtime: python, entrypoint: "STEPS:double"},
           batch: {max_size: 4}}
  square: {inputs: [inc], model: {runtime: python, entrypoint: "STEPS:square"}}
  mean:
    inputs: [double, square]
    join: {strategy: weighted_average, field: y}
'''


@pytest.fixture
def steps(tmp_path, monkeypatch):
    module = f"colocsteps_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text(STEPS)
    monkeypatch.syspath_prepend(str(tmp_path))

    def topology(text: str, colocate: str = "") -> object:
        return load_topology_text(text.replace("STEPS", module).replace("COLOCATE", colocate),
                                  tmp_path)

    return topology


def _by_id(records):
    return {r.id: r for r in records}


def test_a_group_runs_as_one_unit_reading_and_writing_only_its_boundaries(steps):
    t = steps(FAN, "colocate: {all: [inc, double, square, mean]}")
    assert t.units() == ("all",)
    assert t.input_topics("all") == ("fan.in",)
    assert t.topics() == ("fan.in", "fan.out", "fan.dlq")
    assert t.changelog_topics() == ()
    spec = t.agent("all")
    assert (spec.kind, spec.members, spec.delivery) == ("colocate", (
        "inc", "double", "square", "mean"), "exactly_once")
    inspected = steps(FAN, "colocate: {all: {agents: [inc, double, square, mean], "
                           "inspect: true}}")
    assert {"fan.inc", "fan.double", "fan.square"} <= set(inspected.topics())
    partly = steps(FAN, "colocate: [[inc, double]]")
    assert partly.units() == ("inc-double", "square", "mean")
    assert partly.input_topics("mean") == ("fan.double", "fan.square")
    assert "fan.inc" in partly.topics()  # square, outside the group, reads it


def test_a_group_gives_the_answers_of_its_agents_apart(steps):
    apart = steps(FAN)
    together = steps(FAN, "colocate: {all: [inc, double, square, mean]}")
    requests = [(f"r{i}", {"x": i}) for i in range(10)]
    a, b = LocalRunner(apart).run(requests), LocalRunner(together).run(requests)
    assert {k: r.payload for k, r in _by_id(a.results).items()} == {
        k: r.payload for k, r in _by_id(b.results).items()}
    assert _by_id(b.results)["r3"].payload == {"x": 4, "y": 12.0}
    assert _by_id(b.results)["r3"].path == ("inc", "double", "mean")
    assert set(b.topics) <= {"fan.in", "fan.out", "fan.dlq"}  # nothing in between


def test_a_member_that_fails_is_named_by_its_dead_letter_and_the_join_is_partial(steps):
    t = steps(FAN, "colocate: {all: [inc, double, square, mean]}")
    run = LocalRunner(t).run([("bad", {"x": -5}), ("good", {"x": 1})])
    (letter,) = run.dead_letters
    assert (letter.id, letter.payload["agent"]) == ("bad", "square")
    assert "square refuses negative x" in letter.payload["error"]
    assert letter.path == ("inc", "square")
    results = _by_id(run.results)
    assert results["bad"].payload["missing"] == ["square"]
    assert results["bad"].payload["y"] == -8.0
    assert "missing" not in results["good"].payload
    strict = steps(FAN.replace("field: y}", "field: y, on_timeout: dlq}"),
                   "colocate: {all: [inc, double, square, mean]}")
    run = LocalRunner(strict).run([("bad", {"x": -5})])
    assert run.results == []
    assert sorted(d.payload["agent"] for d in run.dead_letters) == ["mean", "square"]


def test_a_switch_routes_in_memory(steps):
    text = '''
name: sw
fields: [x]
COLOCATE
agents:
  pick:
    inputs: [$input]
    switch: {cases: [{when: "x < 5", to: low}], default: high}
  low: {inputs: [pick], model: {runtime: python, entrypoint: "STEPS:inc"}}
  high: {inputs: [pick], model: {runtime: python, entrypoint: "STEPS:double"}}
'''
    together = steps(text, "colocate: {router: [pick, low, high]}")
    assert together.topics() == ("sw.in", "sw.out", "sw.dlq")
    requests = [(f"r{i}", {"x": i}) for i in range(10)]
    a = _by_id(LocalRunner(steps(text)).run(requests).results)
    b = _by_id(LocalRunner(together).run(requests).results)
    assert {k: r.payload for k, r in a.items()} == {k: r.payload for k, r in b.items()}
    assert b["r7"].path == ("pick", "high")


def test_the_colocated_digits_ensemble_is_the_ensemble_with_a_group():
    apart = yaml.safe_load((TOPOLOGIES / "digits_ensemble.yaml").read_text())
    together = yaml.safe_load((TOPOLOGIES / "digits_ensemble_colocated.yaml").read_text())
    assert together.pop("colocate") == {"ensemble": list(apart["agents"])}
    assert {**together, "name": apart["name"]} == apart


def test_the_colocated_digits_ensemble_answers_as_the_ensemble():
    trained("digits")
    apart = load_topology(TOPOLOGIES / "digits_ensemble.yaml")
    together = load_topology(TOPOLOGIES / "digits_ensemble_colocated.yaml")
    digits = np.load(TOPOLOGIES / "models" / "digits_test.npz")["X"][:100]
    requests = [(f"d{i}", {"pixels": x.tolist()}) for i, x in enumerate(digits)]
    a = _by_id(LocalRunner(apart).run(requests).results)
    b = _by_id(LocalRunner(together).run(requests).results)
    assert a.keys() == b.keys() and len(a) == 100
    for rid in a:
        assert a[rid].payload["label"] == b[rid].payload["label"]
        np.testing.assert_allclose(a[rid].payload["proba"], b[rid].payload["proba"],
                                   rtol=1e-6)


def test_a_groups_fan_out_gives_the_same_answers_at_once_and_one_by_one():
    trained("digits")
    step = GroupStep(load_topology(TOPOLOGIES / "digits_ensemble_colocated.yaml"), "ensemble")
    step.warmup()
    submitted = []
    submit = step.pool.submit
    step.pool.submit = lambda *job: submitted.append(job[1]) or submit(*job)
    digits = np.load(TOPOLOGIES / "models" / "digits_test.npz")["X"][:64]
    requests = [(f"d{i}", {"pixels": x.astype(np.float32)}) for i, x in enumerate(digits)]
    answers = {}
    for concurrent in (False, True):
        step.overlap = OverlapChoice(explore_every=10**9)
        step.overlap.took(1, concurrent, 0.0, 1)  # wave 1, the fan-out: this way is faster
        step.overlap.took(1, not concurrent, 1.0, 1)
        submitted.clear()
        answers[concurrent] = [[(o.agent, o.payload["label"], o.payload["proba"].tobytes())
                                for o in outputs] for outputs in step(requests)]
        # at once: three of the four members on the pool, the first in the calling thread
        assert submitted == (["forest", "mlp", "cnn"] if concurrent else [])
    assert answers[True] == answers[False] and len(answers[True]) == 64
    assert all(len(outputs) == 1 and outputs[0][0] == "vote" for outputs in answers[True])


GROUP_ERRORS = [
    ("colocate: {g: [inc, nope]}", 4, "colocate.g.1", "unknown agent 'nope'"),
    ("colocate: {g: [inc, double], h: [double, mean]}", 4, "colocate.h.0",
     "already in group 'g'"),
    ("colocate: {g: [inc, inc]}", 4, "colocate.g.1", "twice in this group"),
    ("colocate: {g: [inc]}", 4, "colocate.g", "two agents or more"),
    ("colocate: {inc: [double, square]}", 4, "colocate.inc", "has the name of an agent"),
    ("colocate: {g: [double, square]}", 4, "colocate.g", "is not connected"),
    ("colocate: {g: [inc, mean]}", 4, "colocate.g", "branch 'double' runs outside"),
    ("colocate: {g: [double, square, mean]}", 4, "colocate.g", None),  # valid
    ("colocate: {g: {agents: [inc, double], inspect: yes please}}", 4, "colocate.g.inspect",
     "true or false"),
    ("colocate: {g: {agents: [inc, double], replicas: 2}}", 4, "colocate.g.replicas",
     "unknown key 'replicas'"),
    ("colocate: 3", 4, "colocate", "must map group names"),
    ("colocate: [[inc, double], [inc, double]]", 4, "colocate.1", "is given twice"),
]


@pytest.mark.parametrize(("colocate", "line", "key", "message"), GROUP_ERRORS)
def test_group_mistakes_are_reported_at_their_line(steps, colocate, line, key, message):
    text = FAN.replace("fields: [x]\nCOLOCATE", f"fields: [x]\n{colocate}")
    if message is None:
        steps(text)
        return
    with pytest.raises(TopologyError) as err:
        steps(text)
    assert f":{line}: {key}: " in str(err.value)
    assert message in str(err.value)


def test_a_path_that_leaves_a_group_and_comes_back_is_refused(steps):
    text = FAN + '''  after: {inputs: [inc], model: {runtime: python, entrypoint: "STEPS:inc"}}
  last: {inputs: [after, double], model: {runtime: python, entrypoint: "STEPS:inc"}}
'''
    with pytest.raises(TopologyError, match=r"come back into it \(at last\)") as err:
        steps(text, "colocate: {g: [inc, double, last]}")
    assert ":4: colocate.g: " in str(err.value)


def test_members_of_a_group_need_one_replica_count_and_no_fallback(steps):
    with pytest.raises(TopologyError, match="'double' has replicas 2") as err:
        steps(FAN.replace("batch: {max_size: 4}}", "batch: {max_size: 4}, replicas: 2}"),
              "colocate: {g: [inc, double]}")
    assert "agents.double.replicas" in str(err.value)
    fallback = '''
name: fb
COLOCATE
agents:
  serve: {inputs: [$input], fallback: {primary: a, backup: b}}
  a: {inputs: [serve], model: {runtime: python, entrypoint: "STEPS:inc"}}
  b: {inputs: [serve], model: {runtime: python, entrypoint: "STEPS:inc"}}
'''
    with pytest.raises(TopologyError, match="fallback router waits on deadlines"):
        steps(fallback, "colocate: {g: [serve, a, b]}")


def test_groups_are_drawn_as_boxes_and_their_edges_in_memory(tmp_path):
    t = load_topology(TOPOLOGIES / "digits_ensemble_colocated.yaml")
    mermaid = to_mermaid(t)
    assert 'subgraph group_ensemble["ensemble: one process"]' in mermaid
    assert '-->|"in memory"| a5_vote' in mermaid
    dot = to_dot(t)
    assert "subgraph cluster_group_ensemble {" in dot
    assert 'label="in memory"' in dot
    assert to_png(t, tmp_path / "g.png").read_bytes()[1:4] == b"PNG"


def test_a_groups_worker_serves_every_members_series_under_one_family():
    group, member = AgentMetrics("demo", "g", 0), AgentMetrics("demo", "inc", 0)
    group.records_in.inc(3)
    member.records_in.inc(2)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged([group.registry, member.registry]))
    from prometheus_client import generate_latest

    families = [f for f in text_string_to_metric_families(generate_latest(registry).decode())
                if f.name == "streamcompose_records_in"]
    assert len(families) == 1
    assert {s.labels["agent"]: s.value for s in families[0].samples
            if s.name.endswith("_total")} == {"g": 3.0, "inc": 2.0}


def test_validate_names_the_groups():
    from streamcompose.cli.topology_cmd import report, summary

    t = load_topology(TOPOLOGIES / "digits_ensemble_colocated.yaml")
    assert summary(t, "f.yaml").endswith(
        "; co-located in one process: ensemble (features, logreg, forest, mlp, cnn, vote)")
    assert report(t)["colocate"] == {"ensemble": ["features", "logreg", "forest", "mlp",
                                                  "cnn", "vote"]}
    assert report(t)["topics"] == ["digits-colocated.in", "digits-colocated.out",
                                   "digits-colocated.dlq"]


def test_a_group_of_at_least_once_members_is_at_least_once(steps):
    t = steps(FAN.replace("fields: [x]", "fields: [x]\ndelivery: at_least_once"),
              "colocate: {all: [inc, double, square, mean]}")
    assert t.delivery_of("all") == "at_least_once"  # its joiner keeps no state
    mixed = steps(FAN.replace("fields: [x]", "fields: [x]\ndelivery: at_least_once")
                  .replace('"STEPS:double"}', '"STEPS:double"}, delivery: exactly_once'),
                  "colocate: {all: [inc, double, square, mean]}")
    assert mixed.delivery_of("all") == "exactly_once"


def test_a_colocated_mixture_of_experts_answers_as_the_one_across_topics(tmp_path):
    trained("moe")
    x = import_topology_module("moe.direct").load_test().x[:60]
    text = (TOPOLOGIES / "moe.yaml").read_text()
    together = tmp_path / "moe.yaml"
    together.write_text(text.replace(
        "agents:\n", "colocate: {experts: [gate, expert_a, expert_b, expert_c, combine]}\n"
        "agents:\n", 1).replace("models/", f"{TOPOLOGIES}/models/"))
    requests = [(f"m{i}", {"features": row.tolist()}) for i, row in enumerate(x)]
    a = _by_id(LocalRunner(load_topology(TOPOLOGIES / "moe.yaml")).run(requests).results)
    b = _by_id(LocalRunner(load_topology(together)).run(requests).results)
    assert a.keys() == b.keys() and len(a) == 60
    for rid in a:
        assert a[rid].payload["label"] == b[rid].payload["label"]
        np.testing.assert_allclose(a[rid].payload["proba"], b[rid].payload["proba"], rtol=1e-6)
        assert a[rid].path[0] == b[rid].path[0] == "gate"


def test_a_joiner_whose_branches_read_apart_from_outside_is_refused(tmp_path):
    text = (TOPOLOGIES / "moe.yaml").read_text().replace(
        "agents:\n", "colocate: {experts: [expert_a, expert_b, expert_c, combine]}\nagents:\n",
        1)
    (tmp_path / "moe.yaml").write_text(text)
    with pytest.raises(TopologyError, match=r"moe\.gate\.expert_a, moe\.gate\.expert_b") as err:
        load_topology(tmp_path / "moe.yaml")
    assert "put the agent that fans out to them in the group too" in str(err.value)
    assert "colocate.experts" in str(err.value)


def test_inspect_also_writes_what_passes_in_memory(steps):
    t = steps(FAN, "colocate: {all: {agents: [inc, double, square, mean], inspect: true}}")
    run = LocalRunner(t).run([("r", {"x": 2})])
    assert [r.payload for r in run.topics["fan.inc"]] == [{"x": 3}]
    assert [r.payload for r in run.topics["fan.square"]] == [{"x": 3, "y": 9}]
    assert run.topics["fan.square"][0].path == ("inc", "square")
    assert [r.payload for r in run.results] == [{"x": 3, "y": 7.5}]


def test_a_member_is_not_run_alone():
    from click.testing import CliRunner

    from streamcompose.agent.__main__ import main

    result = CliRunner().invoke(main, [str(TOPOLOGIES / "digits_ensemble_colocated.yaml"),
                                       "cnn"])
    assert result.exit_code == 2
    assert "agent 'cnn' runs in the co-located group 'ensemble': run the group" in result.output
