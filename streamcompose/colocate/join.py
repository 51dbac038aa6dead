"""A joiner inside a co-located group: it joins in memory, one batch at a time.

Its branches run in the same group, before it, on the same batch, so by the time it runs
every branch result a request will ever get is there: a request is joined at once with
what its branches gave, under the joiner's own :class:`~streamcompose.join.rules.JoinRule`
and strategy. A branch that failed (dead-lettered) or was not routed to is *missing*, as
after a timeout over Kafka: ``on_timeout: partial`` sends the rest with a ``missing``
list, ``dlq`` dead-letters the request. No changelog, no transaction of its own: the
group's worker sends the result with the group's other outputs and input offsets.

>>> from streamcompose.topology.model import JoinSpec
>>> join = GroupJoin(JoinSpec(strategy="weighted_average", field="y"), ("a", "b"), ".")
>>> [float(r.fields["y"]) for r in join([{"a": {"y": 1.0}, "b": {"y": 3.0}}])]
[2.0]
>>> partial = join([{"b": {"y": 3.0}}])[0]
>>> float(partial.fields["y"]), partial.fields["missing"], partial.partial
(3.0, ['a'], True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamcompose.join.aggregate import Aggregator
from streamcompose.join.rules import JoinRule
from streamcompose.join.strategies import StrategyError
from streamcompose.topology.model import JoinSpec


@dataclass(frozen=True)
class Joined:
    """What a request's join gives: the branch whose payload the result updates and the
    fields to update it with, or the error that dead-letters it; ``partial`` when
    branches were missing."""

    first: str
    fields: dict[str, Any]
    error: StrategyError | None = None
    partial: bool = False


class GroupJoin:
    """Joins a batch of requests, each given as its branches' payloads by branch name."""

    def __init__(self, spec: JoinSpec, branches: Sequence[str], base_dir: str | Path,
                 agent: str | None = None) -> None:
        self.spec = spec
        self.rule = JoinRule(spec, branches)
        self.aggregate = Aggregator(spec, base_dir, agent)

    def warmup(self) -> None:
        self.aggregate.warmup()

    def __call__(self, requests: list[dict[str, dict[str, Any]]],
                 expects: list[list[str] | None] | None = None) -> list[Joined]:
        """One result per request; ``expects`` are the branches a router named for each
        (mixture of experts), None where all count."""
        verdicts = []
        for i, given in enumerate(requests):
            expect = expects[i] if expects else None
            taken: list[str] = []
            for branch in self.rule.branches:  # in branch order, as many as needed
                if branch in given and self.rule.accepts(taken, branch, expect):
                    taken.append(branch)
            verdicts.append(self.rule.verdict(taken, expect))
        ready = [[(b, requests[i][b]) for b in v.answered]
                 for i, v in enumerate(verdicts) if v.answered and not v.dead_letter]
        fused = iter(self.aggregate(ready) if ready else [])
        out = []
        for verdict in verdicts:
            first = verdict.answered[0] if verdict.answered else ""
            if verdict.dead_letter or not verdict.answered:
                out.append(Joined(first, {}, StrategyError(
                    f"branches missing: {', '.join(verdict.missing)} (failed or not routed "
                    "to, in the co-located group)"), partial=True))
                continue
            result = next(fused)
            if isinstance(result, StrategyError):
                out.append(Joined(first, {}, result))
                continue
            missing = {"missing": list(verdict.missing)} if verdict.missing else {}
            out.append(Joined(first, {**result, **missing}, partial=not verdict.complete))
        return out
