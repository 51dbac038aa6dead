"""Routers on the real broker: conditional switch, sticky traffic split with weights
changed while running, shadow, fallback, and mixture of experts."""

from __future__ import annotations

import json
import time
from collections import Counter

import numpy as np
import pytest
from fixtures import read_all, subscribe

pytestmark = pytest.mark.integration

STEPS = '''
import time
import numpy as np

def _tag(name):
    def fn(batch):
        out = []
        for p in batch:
            if p.get("fail") == name:
                raise ValueError(f"{name} refuses")
            if p.get("slow") == name:
                time.sleep(p["seconds"])
            out.append({"by": name})
        return out
    return fn

big, small, v1, v2, img, fast, generic = (
    _tag(n) for n in ["big", "small", "v1", "v2", "img", "fast", "generic"])

def gate(batch):
    return [{"scores": np.array([0.6, 0.3, 0.1] if p["x"] % 2 == 0 else [0.1, 0.3, 0.6],
                                dtype=np.float32)} for p in batch]

def _expert(k):
    def fn(batch):
        return [{"proba": np.eye(3, dtype=np.float32)[k] * 0.5 + 0.5 / 3} for _ in batch]
    return fn

ea, eb, ec = _expert(0), _expert(1), _expert(2)
'''


def model(name: str, inputs: str, entry: str | None = None) -> str:
    return (f"  {name}: {{inputs: [{inputs}], model: {{runtime: python, "
            f'entrypoint: "STEPS:{entry or name}"}}}}\n')


def publish(cli, tmp_path, target: str, events: list[dict], name: str = "events") -> None:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    cli("publish", target, "--file", str(path))


def test_switch_routes_by_condition_and_dead_letters_unmatched(cli, deploy, write_topology,
                                                               tmp_path):
    text = '''
name: switch
agents:
  triage:
    inputs: [$input]
    switch:
      cases:
        - {when: "kind == 'image' and size > 10", to: img}
        - {when: "'urgent' in tags or (has(priority) and priority >= 5)", to: fast}
      default: generic
  strict:
    inputs: [$input]
    switch: {cases: [{when: "kind == 'image'", to: img2}]}
''' + model("img", "triage") + model("fast", "triage") + model("generic", "triage") + \
        model("img2", "strict", "img")
    m = deploy(write_topology(text, STEPS))
    events = [{"id": "a", "kind": "image", "size": 20}, {"id": "b", "kind": "image", "size": 5},
              {"id": "c", "tags": ["urgent"]}, {"id": "d", "priority": 7},
              {"id": "e", "kind": "text"}]
    publish(cli, tmp_path, m["name"], events)
    results = subscribe(cli, m["name"], 5 + 2, timeout=60)
    routed = {(r["id"], r["path"][0]): r["payload"]["by"] for r in results}
    assert routed == {("a", "triage"): "img", ("b", "triage"): "generic",
                      ("c", "triage"): "fast", ("d", "triage"): "fast",
                      ("e", "triage"): "generic", ("a", "strict"): "img",
                      ("b", "strict"): "img"}
    letters = subscribe(cli, m["dlq"], 3, timeout=30)
    assert sorted(r["id"] for r in letters) == ["c", "d", "e"]
    assert all("no case matched" in r["payload"]["error"] and r["payload"]["agent"] == "strict"
               for r in letters)


def test_split_is_sticky_weighted_and_adjustable_live(cli, deploy, write_topology, tmp_path):
    text = "name: ab\nagents:\n  ab:\n    inputs: [$input]\n    split: {v1: 80, v2: 20}\n" + \
        model("v1", "ab") + model("v2", "ab")
    m = deploy(write_topology(text, STEPS))
    keys = [f"user-{i}" for i in range(400)]
    publish(cli, tmp_path, m["name"], [{"id": k} for k in keys], "first")
    first = {r["id"]: r["payload"] for r in subscribe(cli, m["name"], 400, timeout=60)}
    assert all(p["variant"] == p["by"] for p in first.values())
    share = Counter(p["variant"] for p in first.values())["v2"] / 400
    assert 0.14 < share < 0.26, share  # 20% ± 3 standard deviations of 400 draws

    done = cli("set-weights", m["name"], "ab", "v1=0", "v2=100")
    assert "v2=100" in done.stdout
    time.sleep(2)
    publish(cli, tmp_path, m["name"], [{"id": f"after-{i}"} for i in range(50)], "after")
    every = read_all(cli, m["name"])
    after = [r for r in every if r["id"].startswith("after-")]
    assert len(after) == 50 and all(r["payload"]["variant"] == "v2" for r in after)
    assert len([r for r in every if r["id"].startswith("user-")]) == 400, "no record lost"

    bad = cli("set-weights", m["name"], "ab", "v1=1", check=False)
    assert bad.returncode == 1 and "v1, v2" in bad.stderr


def test_split_assignment_is_sticky_per_key(cli, deploy, write_topology, tmp_path):
    text = "name: sticky\nagents:\n  ab:\n    inputs: [$input]\n    split: {v1: 50, v2: 50}\n" + \
        model("v1", "ab") + model("v2", "ab")
    m = deploy(write_topology(text, STEPS))
    keys = [f"k{i}" for i in range(60)]
    publish(cli, tmp_path, m["name"], [{"id": k} for k in keys], "one")
    publish(cli, tmp_path, m["name"], [{"id": k} for k in keys], "two")
    results = subscribe(cli, m["name"], 120, timeout=60)
    seen: dict[str, set[str]] = {}
    for r in results:
        seen.setdefault(r["id"], set()).add(r["payload"]["variant"])
    assert all(len(v) == 1 for v in seen.values()) and len(seen) == 60


def test_shadow_never_touches_the_main_path(cli, deploy, write_topology, tmp_path):
    text = ("name: shadow\nagents:\n  mirror:\n    inputs: [$input]\n"
            "    shadow: {primary: v1, shadows: [v2]}\n" + model("v1", "mirror") +
            model("v2", "mirror"))
    m = deploy(write_topology(text, STEPS))
    events = [{"id": f"s{i}", "fail": "v2" if i % 3 == 0 else None} for i in range(30)]
    publish(cli, tmp_path, m["name"], events)
    main = subscribe(cli, m["name"], 30, timeout=60)
    assert {r["payload"]["by"] for r in main} == {"v1"} and len({r["id"] for r in main}) == 30
    side = subscribe(cli, f"{m['name']}.shadow.v2", 20, timeout=60)
    assert {r["payload"]["by"] for r in side} == {"v2"}
    shadow_letters = subscribe(cli, f"{m['name']}.shadow.v2.dlq", 10, timeout=30)
    assert all(r["payload"]["agent"] == "v2" for r in shadow_letters)
    assert read_all(cli, m["dlq"], quiet_s=2) == [], "shadow failures stay off the main path"
    assert len(read_all(cli, m["name"], quiet_s=2)) == 30


def test_fallback_serves_each_request_exactly_once(cli, deploy, write_topology, tmp_path):
    text = ("name: fallback\nagents:\n  safe:\n    inputs: [$input]\n"
            "    fallback: {primary: big, backup: small, deadline_ms: 2000}\n" +
            model("big", "safe") + model("small", "safe"))
    m = deploy(write_topology(text, STEPS))
    publish(cli, tmp_path, m["name"], [{"id": f"f{i}", "fail": "big" if i % 2 else None}
                                       for i in range(20)])
    subscribe(cli, m["name"], 20, timeout=90)
    publish(cli, tmp_path, m["name"], [{"id": "slow", "slow": "big", "seconds": 3.5}], "slow")
    subscribe(cli, m["name"], 21, timeout=30)
    time.sleep(3)  # the slow primary answers after the fallback: that answer is dropped
    results = read_all(cli, m["name"])
    assert Counter(r["id"] for r in results) == Counter([*(f"f{i}" for i in range(20)), "slow"])
    for r in results:
        expected = "big" if r["id"] != "slow" and int(r["id"][1:]) % 2 == 0 else "small"
        assert r["payload"]["served_by"] == expected == r["payload"]["by"], r
    letters = read_all(cli, m["dlq"], quiet_s=2)
    assert sorted(r["id"] for r in letters) == sorted(f"f{i}" for i in range(1, 20, 2))
    assert all(r["payload"]["agent"] == "big" for r in letters)


def test_mixture_of_experts_top_k(cli, deploy, write_topology, tmp_path):
    text = '''
name: moe
fields: [x]
agents:
  gate:
    inputs: [$input]
    route:
      model: {runtime: python, entrypoint: "STEPS:gate"}
      experts: [ea, eb, ec]
      top_k: 2
  combine:
    inputs: [ea, eb, ec]
    join: {strategy: gate_weighted, field: proba, timeout_ms: 10000}
''' + model("ea", "gate") + model("eb", "gate") + model("ec", "gate")
    m = deploy(write_topology(text, STEPS))
    publish(cli, tmp_path, m["name"], [{"id": f"m{x}", "x": x} for x in range(20)])
    results = {r["id"]: r["payload"] for r in subscribe(cli, m["name"], 20, timeout=60)}
    experts = np.eye(3) * 0.5 + 0.5 / 3
    for x in range(20):
        scores = np.array([0.6, 0.3, 0.1] if x % 2 == 0 else [0.1, 0.3, 0.6])
        top = np.argsort(-scores, kind="stable")[:2]
        weights = scores[top] / scores[top].sum()
        expected = sum(w * experts[e] for w, e in zip(weights, top, strict=True))
        got = results[f"m{x}"]
        np.testing.assert_allclose(got["proba"], expected, rtol=1e-6)
        assert got["label"] == int(np.argmax(expected)) and "missing" not in got
        assert sorted(got["gate_weights"]) == sorted(["ea", "eb", "ec"][e] for e in top)
