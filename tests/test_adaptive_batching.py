"""Adaptive waits (``max_wait_ms: auto``), cost-aware batches (``max_cost``, ``cost``) and
their topology keys (no broker)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from streamcompose.batching.adaptive import WaitPolicy
from streamcompose.batching.batcher import MicroBatcher
from streamcompose.batching.cost import cost_function
from streamcompose.errors import TopologyError
from streamcompose.topology.parse_specs import Reader, parse_batch
from streamcompose.topology.yamlsource import read_yaml_text

SLACK_S = 0.45  # "returned promptly" on a loaded machine


def _learnt(rate: float, fixed_s: float = 0.002, per_item_s: float = 0.0002) -> WaitPolicy:
    """A policy that has seen ``rate`` items/s and a model costing fixed + per item."""
    p = WaitPolicy(max_size=64, ceiling_s=0.05)
    for i in range(200):
        p.arrived(1, i / rate)
    for size in (1, 8, 64):
        p.ran(size, fixed_s + per_item_s * size)
    return p


def test_policy_does_not_hold_a_lone_request_at_low_load():
    assert _learnt(rate=5).wait_s(1) == 0.0


def test_policy_waits_to_fill_under_load_within_a_model_call():
    p = _learnt(rate=20_000)
    assert p.model_time(64) == pytest.approx(0.002 + 0.0002 * 64)
    assert p.wait_s(1) == pytest.approx(63 / 20_000)  # the time to fill, < a model call
    assert p.wait_s(64) == 0.0
    slow = _learnt(rate=2_000)  # filling would take 32 ms: capped by the model call
    assert slow.wait_s(1) == pytest.approx(0.002 + 0.0002 * 64)


def test_policy_never_waits_past_the_ceiling():
    p = _learnt(rate=500, fixed_s=1.0)
    assert p.wait_s(1) == 0.05


def test_policy_before_learning_does_not_wait():
    p = WaitPolicy(max_size=64, ceiling_s=0.05)
    p.arrived(1, 0.0)
    assert p.rate() == 0.0 and p.wait_s(1) == 0.0


async def test_auto_batcher_closes_a_lone_item_at_once():
    b: MicroBatcher[int] = MicroBatcher(8, 10_000, policy=_learnt(rate=5))
    await b.put(1)
    started = time.monotonic()
    assert await b.next_batch() == [1]
    assert time.monotonic() - started < SLACK_S


async def test_cost_closes_batches_before_the_limit_and_keeps_order():
    sizes = [3, 3, 5, 1, 20, 2]
    b: MicroBatcher[int] = MicroBatcher(10, 0, cost=float, max_cost=6)
    for s in sizes:
        await b.put(s)
    batches = [await b.next_batch() for _ in range(4)]
    # 3+3 fits 6; 5+1; 20 alone (costlier than max_cost); 2
    assert batches == [[3, 3], [5, 1], [20], [2]]
    assert b.pending() == 0


async def test_held_item_counts_as_pending_and_drains():
    b: MicroBatcher[int] = MicroBatcher(10, 0, cost=float, max_cost=4)
    for s in (3, 3):
        await b.put(s)
    assert await b.next_batch() == [3]
    assert b.pending() == 1
    assert b.drain_nowait() == [3]


def test_cost_of_fields_and_entrypoints(tmp_path):
    f = cost_function("text", tmp_path)
    assert f({"text": "four"}) == 4.0
    assert f({"text": np.zeros((2, 3))}) == 6.0
    assert f({}) == 1.0
    (tmp_path / "costs.py").write_text("def area(p):\n    return p['w'] * p['h']\n")
    assert cost_function("costs:area", tmp_path)({"w": 3, "h": 5}) == 15.0


def _batch(text: str):
    doc = read_yaml_text(text)
    return parse_batch(Reader(doc), doc.data["batch"], "batch")


def test_batch_keys_parse():
    spec = _batch("batch: {max_size: 64, max_wait_ms: auto}")
    assert spec.auto_wait and spec.max_wait_ms == 50.0 and spec.max_cost is None
    spec = _batch("batch: {max_size: 8, max_cost: 2048, cost: tokens}")
    assert (spec.max_cost, spec.cost, spec.auto_wait) == (2048.0, "tokens", False)


@pytest.mark.parametrize(("text", "message"), [
    ("batch: {max_wait_ms: soon}", "batch.max_wait_ms: must be a number >= 0 or auto"),
    ("batch: {cost: tokens}", "batch.cost: cost needs max_cost too"),
    ("batch: {max_cost: 10}", "batch.max_cost: max_cost needs cost too"),
    ("batch: {max_cost: 0, cost: tokens}", "batch.max_cost: must be a number >= 1"),
    ("batch: {max_cost: 9, cost: [a]}", "batch.cost: must be a payload field"),
])
def test_bad_batch_keys_name_key_and_line(text, message):
    with pytest.raises(TopologyError) as err:
        _batch(text)
    assert f":1: {message}" in str(err.value)
