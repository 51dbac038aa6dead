"""The stateless routers: each decides, per request, which agents' edge topics get it.

* :class:`GateStep` (``route``): mixture of experts; the gate model scores the request,
  the top-k experts get it with ``gate_weights`` and the header ``sc-expect`` naming
  them, so the combiner knows how many answers to wait for.
* :class:`SwitchStep` (``switch``): the first case whose condition holds, else default.
* :class:`SplitStep` (``split``): a sticky weighted variant, written as ``variant``;
  weights change at run time through the control topic.
* :class:`ShadowStep` (``shadow``): the primary, plus a copy to every shadow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamcompose.codec.record import EXPECT
from streamcompose.conditions.expr import parse
from streamcompose.route.policies import check_weights, choose_experts, sticky_choice
from streamcompose.runtimes import RecordError, load_runtime
from streamcompose.steps.base import Emission, Outcome, Request, Step
from streamcompose.topology.model import Topology


class _Router(Step):
    def __init__(self, topology: Topology, agent: str) -> None:
        self.agent = agent
        spec = topology.agent(agent).router
        assert spec is not None
        self.spec = spec
        self.edges = {t: topology.edge_topic(agent, t) for t in spec.targets}

    def to(self, target: str, fields: dict[str, Any] | None = None,
           headers: tuple[tuple[str, bytes], ...] = ()) -> Emission:
        return Emission(self.edges[target], fields or {}, headers, target=target)

    def error(self, message: str) -> RecordError:
        return RecordError(message, agent=self.agent)


class SwitchStep(_Router):
    """Routes to the first case whose condition holds on the payload."""

    def __init__(self, topology: Topology, agent: str) -> None:
        super().__init__(topology, agent)
        self.cases = [(parse(case.when), case.to) for case in self.spec.cases]

    def __call__(self, requests: list[Request]) -> list[Outcome]:
        return [self._route(payload) for _, payload in requests]

    def _route(self, payload: dict[str, Any]) -> Outcome:
        for condition, target in self.cases:
            if condition.evaluate(payload):
                return [self.to(target)]
        if self.spec.default is not None:
            return [self.to(self.spec.default)]
        tried = "; ".join(c.text for c, _ in self.cases)
        return self.error(f"no case matched and the switch has no default (cases: {tried})")


class SplitStep(_Router):
    """Sends each request to one variant by weight, the same variant for the same key."""

    def __init__(self, topology: Topology, agent: str) -> None:
        super().__init__(topology, agent)
        self.weights = dict(self.spec.weights)

    def __call__(self, requests: list[Request]) -> list[Outcome]:
        weights = self.weights
        return [[self.to(v, {"variant": v})] for v in
                (sticky_choice(request_id, weights) for request_id, _ in requests)]

    def apply_control(self, settings: dict[str, Any]) -> None:
        """``{"weights": {variant: weight}}``: every variant of this split, weights that
        sum to a positive number."""
        try:
            self.weights = check_weights(settings.get("weights"), self.spec.targets)
        except ValueError as exc:
            raise self.error(str(exc)) from None


class ShadowStep(_Router):
    """The primary gets the request as usual; each shadow gets a copy."""

    def __call__(self, requests: list[Request]) -> list[Outcome]:
        assert self.spec.primary is not None
        return [[self.to(self.spec.primary), *(self.to(s) for s in self.spec.shadows)]
                for _ in requests]


class GateStep(_Router):
    """Mixture of experts: the gate model picks the top-k experts of each request."""

    def __init__(self, topology: Topology, agent: str) -> None:
        super().__init__(topology, agent)
        assert self.spec.model is not None
        self.runtime = load_runtime(self.spec.model, topology.base_dir, agent)
        self.experts = list(self.spec.targets)

    def warmup(self) -> None:
        self.runtime.warmup()

    def __call__(self, requests: list[Request]) -> list[Outcome]:
        results = self.runtime.infer([payload for _, payload in requests])
        outcomes: list[Outcome | None] = [None] * len(requests)
        rows, scored = [], []
        for i, result in enumerate(results):
            checked = result if isinstance(result, RecordError) else self._scores(result)
            if isinstance(checked, RecordError):
                outcomes[i] = checked
            else:
                rows.append(checked)
                scored.append(i)
        for i, chosen in zip(scored, choose_experts(rows, self.spec.top_k, self.spec.capacity),
                             strict=True):
            names = [self.experts[e] for e, _ in chosen]
            weights = {self.experts[e]: w for e, w in chosen}
            expect = ((EXPECT, ",".join(names).encode()),)
            outcomes[i] = [self.to(n, {"gate_weights": weights}, expect) for n in names]
        return outcomes  # type: ignore[return-value]

    def _scores(self, result: dict[str, Any]) -> list[float] | RecordError:
        name = self.spec.scores or next(iter(result), None)
        if name not in result:
            return self.error(f"the gate model gave no output {name!r} (it gave: "
                              f"{', '.join(result)})")
        scores = np.asarray(result[name], dtype=np.float64).ravel()
        if scores.shape != (len(self.experts),):
            return self.error(f"the gate gave {scores.size} scores for {len(self.experts)} "
                              f"experts ({', '.join(self.experts)})")
        if (scores < 0).any() or np.sort(scores)[-self.spec.top_k:].sum() <= 0:
            return self.error(f"gate scores must be non-negative probabilities, got "
                              f"{scores.tolist()}")
        return scores.tolist()

