"""Topology loading and validation, graph rendering, and the validate/graph commands.

Unit tests: no broker needed.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from streamcompose.cli.main import _register, cli, main
from streamcompose.errors import ModelError, TopologyError
from streamcompose.runtimes import check_models, load_runtime
from streamcompose.topology import load_topology, load_topology_text
from streamcompose.topology.graph import graph_of, to_dot, to_mermaid, to_png

COPY = "model: {runtime: python, entrypoint: 'copy:copy'}"


def topology_error(text: str, base_dir: Path | str = ".") -> TopologyError:
    with pytest.raises(TopologyError) as info:
        load_topology_text(text, base_dir)
    return info.value


def model_error(text: str, base_dir: Path | str = ".") -> TopologyError:
    """The error the model check raises; loading alone, which opens no model, passes."""
    t = load_topology_text(text, base_dir)
    with pytest.raises(TopologyError) as info:
        check_models(t)
    return info.value


def assert_error(exc: TopologyError, key: str, line: int, *fragments: str) -> None:
    assert (exc.key, exc.line) == (key, line), str(exc)
    for fragment in fragments:
        assert fragment in exc.message, exc.message
    assert str(exc).startswith(f"<string>:{line}: {key}: ")


@pytest.fixture
def steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write a steps module with a unique name into tmp_path; yields its name."""
    name = f"steps_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(
        "def need_y(batch):\n"
        "    return [{'z': p['y'] + 1} for p in batch]\n"
        "need_y.inputs = ('y',)\n"
        "need_y.outputs = ('z',)\n"
        "\n"
        "class Broken:\n"
        "    def __init__(self):\n"
        "        raise RuntimeError('no weights here')\n"
        "\n"
        "class NeedsY:\n"
        "    inputs = ('y',)\n"
        "    def __init__(self):\n"
        "        raise RuntimeError('instantiated')\n"
        "\n"
        "VALUE = 3\n",
        encoding="utf-8")
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield name
    sys.modules.pop(name, None)


# -- shape of the document ---------------------------------------------------------------

def test_unknown_top_level_key():
    exc = topology_error(f"name: d\nagentz: {{}}\nagents:\n  a: {{inputs: [$input], {COPY}}}\n")
    assert_error(exc, "agentz", 2, "unknown key 'agentz'", "agents")


def test_unknown_agent_key():
    exc = topology_error(f"name: d\nagents:\n  a:\n    inputs: [$input]\n    bach: 1\n"
                         f"    {COPY}\n")
    assert_error(exc, "agents.a.bach", 5, "unknown key 'bach'", "batch")


def test_unknown_model_key():
    exc = topology_error("name: d\nagents:\n  a:\n    inputs: [$input]\n    model:\n"
                         "      runtime: python\n      entrypoint: 'copy:copy'\n"
                         "      devise: cpu\n")
    assert_error(exc, "agents.a.model.devise", 8, "unknown key 'devise'", "device")


def test_duplicate_agent_names():
    exc = topology_error(f"name: d\nagents:\n  a: {{inputs: [$input], {COPY}}}\n"
                         f"  a: {{inputs: [$input], {COPY}}}\n")
    assert_error(exc, "agents.a", 4, "duplicate key 'a'")


def test_agents_must_be_a_mapping():
    exc = topology_error("name: d\nagents:\n  - {name: a}\n")
    assert_error(exc, "agents", 2, "must be a mapping", "list")


@pytest.mark.parametrize(("batch", "key", "message"), [
    ("{max_size: 0}", "max_size", "must be an integer >= 1, got 0"),
    ("{max_wait_ms: -1}", "max_wait_ms", "must be a number >= 0, got -1"),
    ("{max_size: x}", "max_size", "must be an integer >= 1, got 'x'"),
    ("{max_size: 2.5}", "max_size", "must be an integer >= 1, got 2.5"),
    ("{max_wait_ms: .nan}", "max_wait_ms", "must be a number >= 0, got nan"),
])
def test_bad_batch_values(batch: str, key: str, message: str):
    exc = topology_error(f"name: d\nagents:\n  a:\n    inputs: [$input]\n    {COPY}\n"
                         f"    batch: {batch}\n")
    assert_error(exc, f"agents.a.batch.{key}", 6, message)


def test_unknown_runtime():
    exc = topology_error("name: d\nagents:\n  a:\n    inputs: [$input]\n"
                         "    model: {runtime: tensorflow, path: m.pb}\n")
    assert_error(exc, "agents.a.model.runtime", 5, "unknown runtime 'tensorflow'", "onnx")


@pytest.mark.parametrize("device", ["gpu", "cudax", "cuda:"])
def test_bad_device(device: str):
    exc = topology_error("name: d\nagents:\n  a:\n    inputs: [$input]\n"
                         f"    model: {{runtime: python, entrypoint: 'copy:copy', "
                         f"device: '{device}'}}\n")
    assert_error(exc, "agents.a.model.device", 5, "cpu, cuda or cuda:N", repr(device))


# -- graph-level checks ------------------------------------------------------------------

def test_unknown_agent_reference():
    exc = topology_error(f"name: d\nagents:\n  a: {{inputs: [$input], {COPY}}}\n"
                         f"  b:\n    inputs: [a, nope]\n    {COPY}\n")
    assert_error(exc, "agents.b.inputs.1", 5, "unknown agent 'nope'", "agents: a, b")


def test_self_reference():
    exc = topology_error(f"name: d\nagents:\n  a:\n    inputs: [$input, a]\n    {COPY}\n")
    assert_error(exc, "agents.a.inputs.1", 4, "'a' cannot consume its own results")


def test_three_agent_cycle():
    exc = topology_error(f"name: d\nagents:\n  s: {{inputs: [$input], {COPY}}}\n"
                         f"  a: {{inputs: [s, c], {COPY}}}\n  b: {{inputs: [a], {COPY}}}\n"
                         f"  c: {{inputs: [b], {COPY}}}\n")
    assert_error(exc, "agents.a.inputs", 4, "cycle between agents: a <- c <- b <- a")


def test_replicas_above_partitions():
    exc = topology_error(f"name: d\npartitions: 2\nagents:\n  a:\n    inputs: [$input]\n"
                         f"    {COPY}\n    replicas: 3\n")
    assert_error(exc, "agents.a.replicas", 7, "replicas 3 > partitions 2")


def test_agent_topic_colliding_with_output_topic():
    exc = topology_error(f"name: d\nagents:\n  out: {{inputs: [$input], {COPY}}}\n"
                         f"  b: {{inputs: [out], {COPY}}}\n")
    assert_error(exc, "agents.out", 3, "'d.out'", "output topic")


def test_input_topic_equal_to_output_topic():
    exc = topology_error(f"name: d\ninput: t\noutput: t\nagents:\n"
                         f"  a: {{inputs: [$input], {COPY}}}\n")
    assert_error(exc, "input", 2, "'t'", "output topic")


def test_missing_model_file(tmp_path: Path):
    exc = model_error("name: d\nagents:\n  a:\n    inputs: [$input]\n    model:\n"
                      "      runtime: onnx\n      path: models/nope.onnx\n", tmp_path)
    assert_error(exc, "agents.a.model.path", 7, "model file not found",
                 str(tmp_path / "models" / "nope.onnx"))


def test_missing_entrypoint_module():
    exc = model_error("name: d\nagents:\n  a:\n    inputs: [$input]\n    model:\n"
                      "      runtime: python\n      entrypoint: 'no_such_module_zq:f'\n")
    assert_error(exc, "agents.a.model.entrypoint", 7, "cannot import module 'no_such_module_zq'")


def test_missing_entrypoint_attribute():
    exc = model_error("name: d\nagents:\n  a:\n    inputs: [$input]\n    model:\n"
                      "      runtime: python\n      entrypoint: 'math:nope'\n")
    assert_error(exc, "agents.a.model.entrypoint", 7, "module 'math' has no attribute 'nope'")


def test_entrypoint_that_is_not_callable(tmp_path: Path, steps: str):
    exc = model_error("name: d\nagents:\n  a:\n    inputs: [$input]\n    model:\n"
                      f"      runtime: python\n      entrypoint: '{steps}:VALUE'\n", tmp_path)
    assert_error(exc, "agents.a.model.entrypoint", 7, "is a int, not a callable or a class")


def test_entrypoint_is_never_instantiated_by_the_check(tmp_path: Path, steps: str):
    """A class whose constructor fails passes the check (which only imports it) and
    fails where it is instantiated: in its agent's worker."""
    t = check_models(load_topology_text(
        "name: d\nagents:\n  a:\n    inputs: [$input]\n    model:\n"
        f"      runtime: python\n      entrypoint: '{steps}:Broken'\n", tmp_path))
    with pytest.raises(ModelError, match="RuntimeError: no weights here"):
        load_runtime(t.agent("a").model, t.base_dir, "a")


def test_module_that_raises_on_import_is_reported(tmp_path: Path):
    name = f"boom_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('import failed')\n",
                                         encoding="utf-8")
    exc = model_error("name: d\nagents:\n  a:\n    inputs: [$input]\n    model:\n"
                      f"      runtime: python\n      entrypoint: '{name}:f'\n", tmp_path)
    assert_error(exc, "agents.a.model.entrypoint", 7, "RuntimeError while being imported",
                 "import failed")


def test_python_aggregator_is_checked_by_the_model_check(tmp_path: Path, steps: str):
    text = (f"name: d\nagents:\n  a: {{inputs: [$input], {COPY}}}\n"
            f"  b: {{inputs: [$input], {COPY}}}\n"
            "  j:\n    inputs: [a, b]\n"
            "    join: {strategy: python, entrypoint: 'math:nope'}\n")
    exc = model_error(text, tmp_path)
    assert_error(exc, "agents.j.join.entrypoint", 7, "module 'math' has no attribute 'nope'")
    check_models(load_topology_text(text.replace("math:nope", f"{steps}:Broken"), tmp_path))


def test_declared_inputs_not_produced_upstream(tmp_path: Path, steps: str):
    path = tmp_path / "flow.yaml"
    for entrypoint in ("need_y", "NeedsY"):  # a class's inputs are read without instantiating
        path.write_text(f"name: flow\nfields: [x]\nagents:\n  a:\n    inputs: [$input]\n"
                        f"    model: {{runtime: python, entrypoint: '{steps}:{entrypoint}'}}\n",
                        encoding="utf-8")
        t = load_topology(path)
        with pytest.raises(TopologyError) as info:
            check_models(t)
        exc = info.value
        assert (exc.file, exc.key, exc.line) == (str(path), "agents.a.inputs", 5)
        assert exc.message == ("agent 'a' needs field(s) y that no upstream produces "
                               "(available: x)")
        assert str(exc).startswith(f"{path}:5: agents.a.inputs: ")

    path.write_text(path.read_text(encoding="utf-8").replace("[x]", "[x, y]"),
                    encoding="utf-8")
    t = check_models(load_topology(path))
    assert t.fields == ("x", "y") and t.source == path


# -- the good path -----------------------------------------------------------------------

DIAMOND = f"""\
name: shop
fields: [image]
partitions: 4
agents:
  merge: {{inputs: [classify, ocr], {COPY}}}
  detect:
    inputs: [$input]
    {COPY}
    batch: {{max_size: 8, max_wait_ms: 5}}
  classify: {{inputs: [detect], {COPY}, replicas: 2}}
  ocr: {{inputs: [detect], {COPY}}}
"""


def test_topic_naming_order_and_sinks():
    t = load_topology_text(DIAMOND)
    assert t.order() == ("detect", "classify", "ocr", "merge")
    assert [t.is_sink(n) for n in t.order()] == [False, False, False, True]
    assert (t.input_topic, t.output_topic, t.dlq_topic) == ("shop.in", "shop.out", "shop.dlq")
    assert [t.topic_of(n) for n in t.order()] == [
        "shop.detect", "shop.classify", "shop.ocr", "shop.out"]
    assert t.input_topics("merge") == ("shop.classify", "shop.ocr")
    assert t.topics() == ("shop.in", "shop.out", "shop.detect", "shop.classify", "shop.ocr",
                          "shop.dlq")
    detect = t.agent("detect")
    assert (detect.batch.max_size, detect.batch.max_wait_ms) == (8, 5.0)
    assert t.agent("classify").replicas == 2 and t.partitions == 4


def test_input_and_output_overrides_and_several_sinks():
    t = load_topology_text(f"name: d\ninput: raw.images\noutput: results\nagents:\n"
                           f"  a: {{inputs: [$input], {COPY}}}\n  b: {{inputs: [a], {COPY}}}\n"
                           f"  c: {{inputs: [a], {COPY}}}\n")
    assert (t.input_topic, t.output_topic) == ("raw.images", "results")
    assert t.topic_of("a") == "d.a"
    assert t.topic_of("b") == t.topic_of("c") == "results"
    assert [n for n in t.order() if t.is_sink(n)] == ["b", "c"]
    assert t.input_topics("a") == ("raw.images",)
    assert t.topics() == ("raw.images", "d.a", "results", "d.dlq")


# -- graph rendering ---------------------------------------------------------------------

def test_mermaid_has_every_agent_and_edge():
    t = load_topology_text(DIAMOND)
    text = to_mermaid(t)
    assert text.splitlines()[0] == "flowchart LR"
    for name in t.agent_names:
        assert re.search(rf'^    a\d_{name}\("{name}<br/>python', text, re.M), name
    assert 'a0_detect("detect<br/>python<br/>batch 8 / 5 ms")' in text
    assert "replicas 2" in text
    for edge in ['topic_in -->|"shop.in"| a0_detect',
                 'a0_detect -->|"shop.detect"| a1_classify',
                 'a0_detect -->|"shop.detect"| a2_ocr',
                 'a1_classify -->|"shop.classify"| a3_merge',
                 'a2_ocr -->|"shop.ocr"| a3_merge',
                 'a3_merge -->|"shop.out"| topic_out']:
        assert edge in text
    assert text.count('-.->|"shop.dlq"| topic_dlq') == 4


def test_dot_is_plausible_dot():
    t = load_topology_text(DIAMOND)
    text = to_dot(t)
    lines = text.splitlines()
    assert lines[0] == 'digraph "shop" {' and lines[-1] == "}"
    assert "rankdir=LR;" in text
    assert text.count("{") == text.count("}")
    assert all(line.rstrip().endswith((";", "{", "}")) for line in lines)
    edges = [line for line in lines if " -> " in line]
    assert len(edges) == len(graph_of(t).edges) == 10
    assert sum("style=dashed" in e for e in edges) == 4
    assert 'a0_detect -> a1_classify [label="shop.detect"];' in text
    for line in lines:  # every quoted string is closed
        assert line.replace('\\"', "").count('"') % 2 == 0, line


def test_png_is_a_valid_image(tmp_path: Path):
    path = to_png(load_topology_text(DIAMOND), tmp_path / "shop.png")
    assert path == tmp_path / "shop.png"
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert 500 <= img.width <= 3000 and 150 <= img.height <= 2000
        img.verify()
    assert path.stat().st_size > 5_000


ROUTERS = f"""\
name: rt
agents:
  triage:
    inputs: [$input]
    switch:
      cases:
        - {{when: "kind == 'image' and size > 10", to: ab}}
        - {{when: "'urgent' in tags or (has(priority) and priority >= 5)", to: safe}}
      default: gate
  ab: {{inputs: [triage], split: {{v1: 80, v2: 20}}}}
  v1: {{inputs: [ab], {COPY}}}
  v2: {{inputs: [ab], {COPY}}}
  safe:
    inputs: [triage]
    fallback: {{primary: big, backup: small, deadline_ms: 250}}
  big: {{inputs: [safe], {COPY}}}
  small: {{inputs: [safe], {COPY}}}
  mirror: {{inputs: [v1], shadow: {{primary: cur, shadows: [cand]}}}}
  cur: {{inputs: [mirror], {COPY}}}
  cand: {{inputs: [mirror], {COPY}}}
  gate:
    inputs: [triage]
    route: {{{COPY}, experts: [ea, eb], top_k: 1}}
  ea: {{inputs: [gate], {COPY}}}
  eb: {{inputs: [gate], {COPY}}}
  combine: {{inputs: [ea, eb], join: {{strategy: gate_weighted, mode: any}}}}
"""


def agent_ids(t) -> dict[str, str]:
    return {n.lines[0]: n.id for n in graph_of(t).nodes if n.is_agent}


def test_graph_of_routers_matches_the_topics_agents_read():
    t = load_topology_text(ROUTERS)
    g, ids = graph_of(t), agent_ids(t)
    for name in t.agent_names:  # every agent's incoming edges are the topics it consumes
        incoming = {e.topic for e in g.edges if e.target == ids[name]}
        assert incoming == set(t.input_topics(name)) - {t.dlq_topic}, name
        dlq = [e for e in g.edges if e.source == ids[name] and e.kind == "dlq"]
        assert [g.node(e.target).lines for e in dlq] == [(t.dlq_of(name),)], name
    kinds = {(e.source, e.target): e.kind for e in g.edges}
    assert kinds[ids["big"], ids["safe"]] == kinds[ids["small"], ids["safe"]] == "return"
    assert kinds[ids["mirror"], ids["cand"]] == "copy"
    assert kinds[ids["ab"], ids["v1"]] == "route"
    assert {g.node(ids[n]).kind for n in ("triage", "ab", "safe", "mirror", "gate")} == \
        {"router"}
    assert g.node(ids["combine"]).kind == "join" and g.node(ids["v1"]).kind == "model"


def test_mermaid_draws_routers_joiners_and_their_edges():
    t = load_topology_text(ROUTERS)
    text, ids = to_mermaid(t), agent_ids(t)
    assert f'{ids["triage"]}{{{{"triage<br/>switch"}}}}:::router' in text
    assert f'{ids["ab"]}{{{{"ab<br/>split"}}}}:::router' in text
    assert f'{ids["gate"]}{{{{"gate<br/>moe gate (top-1)<br/>python"}}}}:::router' in text
    assert f'{ids["combine"]}[["combine<br/>join: gate_weighted (any)"]]:::join' in text
    for source, target, label in [
            ("triage", "ab", "kind == 'image' and size #gt; 10"),  # switch conditions
            ("triage", "safe", "'urgent' in tags or (has(prio…"),
            ("triage", "gate", "default"),
            ("ab", "v1", "80%"), ("ab", "v2", "20%"),  # split weights
            ("mirror", "cur", "primary"),
            ("safe", "big", "primary"), ("safe", "small", "backup (after 250 ms / error)"),
            ("big", "safe", "rt.big"), ("small", "safe", "rt.small"),  # fallback returns
            ("gate", "ea", "expert"), ("gate", "eb", "expert")]:
        assert f'{ids[source]} -->|"{label}"| {ids[target]}' in text, (source, target)
    assert f'{ids["mirror"]} -.->|"copy"| {ids["cand"]}' in text
    shadow = f"{ids['cand']}_shadow"
    assert f'{shadow}[("rt.shadow.cand")]:::shadow' in text
    assert f'{ids["cand"]} -->|"rt.shadow.cand"| {shadow}' in text
    assert f'{ids["cand"]} -.->|"rt.shadow.cand.dlq"| {shadow}_dlq' in text
    to_out = {line.split()[0] for line in text.splitlines() if line.endswith("| topic_out")}
    assert to_out == {ids[n] for n in ("v2", "safe", "combine", "cur")}
    assert text.count('-.->|"rt.dlq"| topic_dlq') == len(t.agents) - 1
    assert "linkStyle" in text and "classDef router" in text and "classDef join" in text


def test_dot_draws_routers_and_joiners():
    t = load_topology_text(ROUTERS)
    text, ids = to_dot(t), agent_ids(t)
    lines = text.splitlines()
    assert lines[0] == 'digraph "rt" {' and lines[-1] == "}"
    assert all(line.rstrip().endswith((";", "{", "}")) for line in lines)
    for line in lines:  # every quoted string is closed
        assert line.replace('\\"', "").count('"') % 2 == 0, line
    assert text.count("shape=hexagon") == 5 and text.count("peripheries=2") == 1
    edges = [line for line in lines if " -> " in line]
    assert len(edges) == len(graph_of(t).edges)
    assert sum("style=dashed" in e for e in edges) == len(t.agents) + 1  # dead letters, copy
    assert (f'{ids["ab"]} -> {ids["v1"]} [label="80%", tooltip="rt.ab.v1"];') in text
    assert (f'{ids["big"]} -> {ids["safe"]} [label="rt.big", color="#3b7a35", '
            "constraint=false];") in text
    assert f'{ids["mirror"]} -> {ids["cand"]} [label="copy", tooltip="rt.mirror.cand", ' \
        'style=dashed' in text


def test_png_of_routers_is_valid_and_draws_every_kind(tmp_path: Path):
    path = to_png(load_topology_text(ROUTERS), tmp_path / "rt.png")
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert 800 <= img.width <= 3500 and 300 <= img.height <= 2000
        colours = {c for _, c in img.convert("RGB").getcolors(1 << 20)}
    assert {(236, 228, 247), (226, 243, 224), (255, 246, 216), (236, 236, 236),
            (59, 122, 53)} <= colours  # router, joiner, model, shadow topic, return edge


# -- CLI ---------------------------------------------------------------------------------

@pytest.fixture
def runner() -> CliRunner:
    _register()
    return CliRunner()


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "shop.yaml"
    path.write_text(DIAMOND, encoding="utf-8")
    return path


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: d\nagents:\n  a:\n    inputs: [$input]\n    bach: 1\n    {COPY}\n",
                    encoding="utf-8")
    return path


def test_cli_validate_good(runner: CliRunner, good: Path):
    result = runner.invoke(cli, ["validate", str(good)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        f"ok: topology 'shop' ({good}): 4 agents (detect, classify, ocr, merge); "
        "input shop.in -> output shop.out")


def test_cli_validate_bad(runner: CliRunner, bad: Path):
    result = runner.invoke(cli, ["validate", str(bad)])
    assert result.exit_code == 1
    assert isinstance(result.exception, TopologyError)
    assert str(result.exception).startswith(f"{bad}:5: agents.a.bach: unknown key 'bach' "
                                            "(expected one of: batch, ")


def test_cli_validate_json(runner: CliRunner, good: Path, bad: Path):
    result = runner.invoke(cli, ["validate", str(good), "--json"])
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["name"] == "shop" and doc["error"] is None
    assert doc["agents"] == ["detect", "classify", "ocr", "merge"]
    assert set(doc["topics"]) == {"shop.in", "shop.detect", "shop.classify", "shop.ocr",
                                  "shop.out", "shop.dlq"}

    result = runner.invoke(cli, ["validate", str(bad), "--json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["agents"] == [] and doc["topics"] == []
    assert doc["error"]["file"] == str(bad)
    assert (doc["error"]["line"], doc["error"]["key"]) == (5, "agents.a.bach")
    assert doc["error"]["message"].startswith("unknown key 'bach'")

    result = runner.invoke(cli, ["validate", str(bad.parent / "missing.yaml"), "--json"])
    assert result.exit_code == 1
    assert "cannot read the file" in json.loads(result.stdout)["error"]["message"]


def test_main_reports_errors_on_stderr(good: Path, bad: Path, capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit) as info:
        main(["validate", str(bad)])
    assert info.value.code == 1
    assert capsys.readouterr().err.startswith(f"error: {bad}:5: agents.a.bach: unknown key")
    with pytest.raises(SystemExit) as info:
        main(["validate", str(bad), "--json"])
    assert info.value.code == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False
    with pytest.raises(SystemExit) as info:
        main(["validate", str(good)])
    assert info.value.code == 0


@pytest.mark.parametrize("args", [["validate"], ["graph"], ["graph", "x.yaml", "--format", "svg"],
                                  ["validate", "x.yaml", "--jsn"]])
def test_cli_usage_errors(runner: CliRunner, args: list[str]):
    assert runner.invoke(cli, args).exit_code == 2


def test_cli_help_has_examples(runner: CliRunner):
    for command in ("validate", "graph"):
        result = runner.invoke(cli, [command, "--help"])
        assert result.exit_code == 0
        assert f"$ streamcompose {command} " in result.stdout


def test_cli_graph_text_formats(runner: CliRunner, good: Path, tmp_path: Path):
    result = runner.invoke(cli, ["graph", str(good)])
    assert result.exit_code == 0 and result.stdout.startswith("flowchart LR\n")
    result = runner.invoke(cli, ["graph", str(good), "--format", "dot"])
    assert result.exit_code == 0 and result.stdout.startswith('digraph "shop" {')
    out = tmp_path / "g.dot"
    result = runner.invoke(cli, ["graph", str(good), "--format", "dot", "--output", str(out)])
    assert result.exit_code == 0 and result.stdout.strip() == str(out)
    assert out.read_text(encoding="utf-8").strip() == to_dot(load_topology(good))
    result = runner.invoke(cli, ["graph", str(good), "-o", str(tmp_path / "no" / "g.mmd")])
    assert result.exit_code == 1 and "g.mmd" in result.output


def test_cli_graph_png(runner: CliRunner, good: Path, tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "pic.png"
    result = runner.invoke(cli, ["graph", str(good), "--format", "png", "--output", str(out)])
    assert result.exit_code == 0 and result.stdout.strip() == str(out)
    with Image.open(out) as img:
        assert img.format == "PNG"
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    result = runner.invoke(cli, ["graph", str(good), "--format", "png"])
    assert result.exit_code == 0 and result.stdout.strip() == str(work / "shop.png")
    assert (work / "shop.png").stat().st_size > 5_000


def test_cli_graph_bad_file(runner: CliRunner, bad: Path):
    result = runner.invoke(cli, ["graph", str(bad)])
    assert result.exit_code == 1 and isinstance(result.exception, TopologyError)
