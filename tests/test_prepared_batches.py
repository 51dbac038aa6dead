"""A batch made ready for its model on the event loop, the model run alone in the model
thread, the outcomes made back on the loop (``Step.prepare``, ``run_prepared``,
``outcomes``; ``InferencePipeline._run_step``): the same outcomes as the whole step, and
the step wherever the prepared batch cannot stand: the whole step for a batch with a
request expired meanwhile, one request at a time for a model call that fails or outputs
without a batch axis of the batch's size."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from streamcompose.agent.item import Item
from streamcompose.agent.pipeline import InferencePipeline, Ran
from streamcompose.codec import Trace
from streamcompose.metrics import AgentMetrics
from streamcompose.runtimes import RecordError
from streamcompose.serving.deadline import deadline_header
from streamcompose.serving.gate import ServingGate
from streamcompose.steps.model import ModelStep
from streamcompose.topology import load_topology_text

MODULE = """
    import torch

    CALLS = []


    class Picky(torch.nn.Module):
        def forward(self, x):
            CALLS.append(len(x))
            if bool((x < 0).any()):
                raise ValueError("negative pixels")
            return x * 2


    class Flat(torch.nn.Module):
        def forward(self, x):
            return x.sum()


    class OneRow(torch.nn.Module):
        def forward(self, x):
            return x.reshape(1, -1)
"""
TOPOLOGY = """
name: prepared
agents:
  double:
    inputs: [$input]
    model:
      runtime: torch
      entrypoint: {module}:{cls}
      options: {{inputs: {{x: {{dtype: float32, shape: [3]}}}}, outputs: [y]}}
"""
NOW = 1_000_000


def step_of(tmp_path: Path, cls: str = "Picky") -> tuple[ModelStep, InferencePipeline]:
    name = f"prepared_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE))
    t = load_topology_text(TOPOLOGY.format(module=name, cls=cls), tmp_path)
    step = ModelStep(t, "double")
    gate = ServingGate(t, "double", AgentMetrics(t.name, "double", 0), clock=lambda: NOW)
    return step, InferencePipeline(SimpleNamespace(step=step, gate=gate))  # type: ignore[arg-type]


def item(i: int, x: list[float], deadline: int | None = None) -> Item:
    extra = (deadline_header(deadline),) if deadline is not None else ()
    record = ConsumerRecord("prepared.in", 0, i, 0, 0, f"r{i}".encode(), b"", None, 0, 0, [])
    return Item(record, Trace(f"r{i}", NOW - 5, extra=extra),
                {"x": np.array(x, np.float32)}, tp=TopicPartition("prepared.in", 0))


def requests(items: list[Item]) -> list[tuple[str, dict]]:
    return [(i.trace.request_id, i.payload) for i in items]


@pytest.fixture(autouse=True)
def _restore_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))


def test_a_prepared_batch_gives_what_the_whole_step_gives(tmp_path: Path) -> None:
    step, pipeline = step_of(tmp_path)
    items = [item(i, [i, i + 1, 0.5]) for i in range(5)]
    live, ran, _ = pipeline._run_step(items, step.prepare(requests(items)))
    assert live == items and isinstance(ran, Ran)
    prepared = step.outcomes(ran.outputs, len(live))
    whole = step(requests(items))
    assert [[(e.topic, sorted(e.fields)) for e in o] for o in prepared] == \
        [[(e.topic, sorted(e.fields)) for e in o] for o in whole] == [[("prepared.out", ["y"])]] * 5
    for p, w, i in zip(prepared, whole, items, strict=True):
        assert p[0].fields["y"].tobytes() == w[0].fields["y"].tobytes()
        np.testing.assert_array_equal(p[0].fields["y"], i.payload["x"] * 2)


def test_a_batch_that_does_not_stack_is_left_to_the_whole_step(tmp_path: Path) -> None:
    step, pipeline = step_of(tmp_path)
    items = [item(0, [1, 2, 3]), item(1, [1, 2])]
    assert step.prepare(requests(items)) is None
    live, outcomes, _ = pipeline._run_step(items, None)
    assert live == items
    assert isinstance(outcomes[1], RecordError) and "shape (2,)" in str(outcomes[1])
    np.testing.assert_array_equal(outcomes[0][0].fields["y"], [2, 4, 6])


def test_a_failing_model_call_runs_each_request_alone_which_finds_the_culprit(
        tmp_path: Path) -> None:
    step, pipeline = step_of(tmp_path)
    calls = sys.modules[step.runtime.spec.entrypoint.split(":")[0]].CALLS
    items = [item(0, [1, 2, 3]), item(1, [1, -2, 3]), item(2, [0, 0, 1])]
    prepared = step.prepare(requests(items))
    assert prepared is not None
    calls.clear()
    live, outcomes, _ = pipeline._run_step(items, prepared)
    assert calls == [3, 1, 1, 1]  # the batch once, then each request alone
    assert live == items and not isinstance(outcomes, Ran)
    assert [isinstance(o, RecordError) for o in outcomes] == [False, True, False]
    assert "ValueError: negative pixels" in str(outcomes[1])
    np.testing.assert_array_equal(outcomes[2][0].fields["y"], [0, 0, 2])


def test_a_request_expired_meanwhile_leaves_the_batch_to_the_whole_step(tmp_path: Path
                                                                        ) -> None:
    step, pipeline = step_of(tmp_path)
    items = [item(0, [1, 2, 3]), item(1, [4, 5, 6], deadline=NOW - 1), item(2, [7, 8, 9])]
    live, outcomes, _ = pipeline._run_step(items, step.prepare(requests(items)))
    assert [i.trace.request_id for i in live] == ["r0", "r2"]
    assert "expired" in str(items[1].error)
    assert [o[0].fields["y"].tolist() for o in outcomes] == [[2, 4, 6], [14, 16, 18]]


def test_outputs_that_split_only_alone_are_made_one_request_at_a_time(tmp_path: Path
                                                                      ) -> None:
    step, pipeline = step_of(tmp_path, "OneRow")  # (1, 3 × batch): a batch axis of 1 only
    items = [item(0, [1, 2, 3]), item(1, [4, 5, 6])]
    live, outcomes, _ = pipeline._run_step(items, step.prepare(requests(items)))
    assert live == items and not isinstance(outcomes, Ran)
    assert [o[0].fields["y"].tolist() for o in outcomes] == [[1, 2, 3], [4, 5, 6]]


def test_outputs_without_a_batch_axis_give_every_request_the_error(tmp_path: Path) -> None:
    step, pipeline = step_of(tmp_path, "Flat")
    items = [item(0, [1, 2, 3]), item(1, [4, 5, 6])]
    prepared = step.prepare(requests(items))
    with pytest.raises(RuntimeError, match=r"output 'y' has shape \(\); expected a first"):
        step.run_prepared(prepared)
    live, outcomes, _ = pipeline._run_step(items, prepared)
    assert live == items and all(isinstance(o, RecordError) for o in outcomes)
    assert "output 'y' has shape (); expected a first (batch) axis of 1" in str(outcomes[0])
    assert outcomes[0].agent == "double" and "Flat" in str(outcomes[0].model)


def test_a_step_that_fails_to_prepare_leaves_the_batch_to_the_model_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    step, pipeline = step_of(tmp_path)
    items = [item(0, [1, 2, 3]), item(1, [4, 5, 6])]
    assert set(pipeline._prepare(items)) == {"x"} and pipeline._prepare([]) is None

    def broken(requests: list) -> None:
        raise TypeError("a bug in prepare")

    monkeypatch.setattr(step, "prepare", broken)
    assert pipeline._prepare(items) is None
    _, outcomes, _ = pipeline._run_step(items, None)
    assert [o[0].fields["y"].tolist() for o in outcomes] == [[2, 4, 6], [8, 10, 12]]
