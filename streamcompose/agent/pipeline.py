"""The model half of the worker core: batches go to the model thread one ahead, so that
while the event loop encodes a batch's results the model already runs the next. The loop
also makes each batch ready for its model (:meth:`~streamcompose.steps.base.Step.prepare`:
a tensor model's inputs stacked and checked) and splits the model's outputs into outcomes,
so that the model thread runs only the model and seldom waits for the interpreter. A batch
whose step is expected (by its :class:`~streamcompose.colocate.overlap.StepPace`) to take
less than the worker's :attr:`~AgentWorker.inline_step_s` runs on the event loop instead
(a co-located group of cheap models: each of its members' model calls gives up the
interpreter and, on the model thread, waits to win it back from the loop).

Each batch passes the serving gate first (:mod:`streamcompose.serving`: expired requests
are dead-lettered, cached ones answered) and its deadlines are checked once more in the
model thread just before the step runs, since a batch may wait there for the one before
it. The outcomes become one :class:`~streamcompose.delivery.Closing` per record, queued
for the worker's delivery task with the batch's shared-cache records.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamcompose.codec.reasons import exception_text
from streamcompose.colocate.overlap import StepPace
from streamcompose.delivery import Closing
from streamcompose.runtimes import RecordError
from streamcompose.serving.gate import Admission
from streamcompose.steps.base import Request

if TYPE_CHECKING:
    from streamcompose.agent.item import Item
    from streamcompose.agent.worker import AgentWorker

log = logging.getLogger("streamcompose.agent")
INFER_DEPTH = 2  # batches given to the model thread at once: one running, one waiting


@dataclass(frozen=True)
class Ran:
    """The model's outputs for a prepared batch, made into outcomes back on the loop."""

    outputs: Any


@dataclass
class Running:
    """A batch handed to the model thread (or already run on the event loop)."""

    batch: list[Item]
    admission: Admission
    started_ns: int
    done: asyncio.Future


class InferencePipeline:
    """Runs a worker's step on its batches, one batch ahead of the encoding."""

    def __init__(self, worker: AgentWorker) -> None:
        self.w = worker
        self.pace = StepPace()

    async def run(self) -> None:
        """Until cancelled (by mode, after ``on_stop`` drained the batcher)."""
        running: deque[Running] = deque()
        gathering: asyncio.Future[list[Item]] | None = None
        try:
            while True:
                if gathering is None and not running:  # nothing to wait for but a batch
                    running.append(self._submit(await self.w.batcher.next_batch(), idle=True))
                if gathering is None and len(running) < INFER_DEPTH \
                        and not running[-1].done.done():  # gather while the model runs
                    gathering = asyncio.ensure_future(self.w.batcher.next_batch())
                waits = {f for f in (gathering, running[0].done if running else None) if f}
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if gathering is not None and gathering.done():
                    running.append(self._submit(gathering.result(), idle=not running))
                    gathering = None
                while running and running[0].done.done():
                    await self._finish(running.popleft())
        finally:
            if gathering is not None:
                gathering.cancel()

    def _submit(self, taken: list[Item], idle: bool) -> Running:
        """Start the step on a batch: on the event loop when the model thread is ``idle``
        and the step is expected to be quick on a batch of this size, else on the model
        thread."""
        w = self.w
        batch = [i for i in taken if w.current(i.tp, i.epoch)]
        lineage = w.lineage.next_batch(len(batch))
        for item in batch:
            item.batch = lineage
        admission = w.gate.admit([i for i in batch if i.payload is not None])
        loop, started = asyncio.get_running_loop(), time.time_ns()
        expected = self.pace.expected(len(admission.to_model))
        if idle and expected is not None and expected < w.inline_step_s:
            done = loop.create_future()
            done.set_result(self._run_step(admission.to_model))
        else:
            done = loop.run_in_executor(w.executor, self._run_step, admission.to_model,
                                        self._prepare(admission.to_model))
        return Running(batch, admission, started, done)

    def _prepare(self, good: list[Item]) -> Any | None:
        """The batch made ready for the model on the loop; None leaves the whole step to
        the model thread, which also reports a step's failure."""
        if not good:
            return None
        try:
            return self.w.step.prepare(_requests(good))
        except Exception:  # the model thread runs the step, and says what went wrong
            return None

    def _run_step(self, good: list[Item], prepared: Any | None = None
                  ) -> tuple[list[Item], Any, float]:
        """In the model thread: the requests still within their deadline, the step's
        outcomes for them (the model's outputs for a prepared batch, or the exception the
        step raised) and the seconds it took. A batch of which a request expired meanwhile
        goes through the whole step; a prepared batch that fails, through the step one
        request at a time, which finds the requests that fail alone."""
        live = self.w.gate.unexpired(good)
        step = self.w.step
        started = time.perf_counter()
        try:
            if prepared is not None and len(live) == len(good):
                try:
                    outcomes = Ran(step.run_prepared(prepared))
                except Exception:  # the batch failed as a whole
                    outcomes = [step([r])[0] for r in _requests(live)]
            else:
                outcomes = step(_requests(live)) if live else []
        except Exception as exc:  # a bug in a step must not stop the agent
            outcomes = exc
        return live, outcomes, time.perf_counter() - started

    async def _finish(self, r: Running) -> None:
        w = self.w
        live, outcomes, seconds = r.done.result()
        if isinstance(outcomes, Ran):
            try:
                outcomes = w.step.outcomes(outcomes.outputs, len(live))
            except Exception as exc:  # as a step that fails on the model thread
                outcomes = exc
        if isinstance(outcomes, Exception):
            log.error("agent %s: step failed on a batch of %d", w.agent, len(live),
                      exc_info=outcomes)
            outcomes = [RecordError(exception_text(outcomes, typed=True),
                                    agent=w.agent)] * len(live)
        if live:
            w.metrics.inference_seconds.observe(seconds)
            w.batcher.ran(len(live), seconds)
            self.pace.ran(seconds, len(live))
        if w.tracing:
            w.tracing.batch([i.hop for i in live if i.hop], r.started_ns, time.time_ns())
        for item, outcome in zip(live, outcomes, strict=True):
            if isinstance(outcome, RecordError):
                item.error = outcome
            else:
                item.emissions = outcome
        if w.monitor is not None:
            answered = [i for i in live if i.emissions]
            w.monitor.observe([i.payload for i in answered],
                              [i.emissions[0].fields for i in answered])
        fresh = w.gate.settle(r.admission)
        closings = [(w._closing(item), item.epoch, item.hop) for item in r.batch]
        if w.shared_cache is not None and fresh:  # in the batch's transaction
            closings.append((Closing(None, -1, [o for o in w.shared_cache.outputs(fresh)
                                                if not w.too_large(o)]), 0, None))
        await w.deliveries.put(closings)


def _requests(items: list[Item]) -> list[Request]:
    """The step's requests for ``items``: request id and payload."""
    return [(i.trace.request_id, i.payload) for i in items]
