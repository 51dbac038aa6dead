"""``replay`` and ``shadow-report``: gather both sides' answers to the same recorded
requests and compare them with :mod:`streamcompose.replay.diff`.

* :func:`replay` reads the requests a live agent received (its input topics, between two
  positions), runs them through a candidate model in a side deployment
  (:mod:`streamcompose.replay.side`) and compares its answers with the live agent's.
* :func:`shadow_report` compares what a shadow answered with what its primary answered
  to the requests their shadow router sent both.

Example (needs a broker and the deployed digits cascade)::

    report = replay("digits", "cnn", "models/digits_cnn_v2.pt", Selection(limit=500))
    print(report.render())
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import yaml

from streamcompose.deploy.registry import Deployment
from streamcompose.errors import DeploymentError
from streamcompose.kafka.ranges import Position, read_range
from streamcompose.replay.answers import Request, Side, collect, requests_of
from streamcompose.replay.diff import DEFAULT_TOLERANCE, Answer, compare
from streamcompose.replay.report import Report, summarize
from streamcompose.replay.side import SideDeployment
from streamcompose.topology import Topology, load_topology_text

RECORDED_QUIET_S = 3.0  # answers already recorded: reading stops this long after the last
CLOCK_SKEW_MS = 1000  # a router's copies of one request are written within this


class Bar:
    """A progress bar (``tqdm`` has this interface); this one shows nothing."""

    def __init__(self, desc: str, total: int) -> None:
        self.desc, self.total = desc, total

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None


BarFactory = Callable[[str, int], AbstractContextManager[Any]]


@dataclass(frozen=True)
class Selection:
    """Which recorded requests to compare: from ``start`` (inclusive) to ``end``
    (exclusive), at most ``limit`` (the earliest); ``fields`` to compare (else those the
    agent produced), numbers within ``tolerance`` agree."""

    start: Position | None = None
    end: Position | None = None
    limit: int | None = None
    fields: tuple[str, ...] = ()
    tolerance: float = DEFAULT_TOLERANCE


def _live(name: str) -> tuple[dict[str, Any], Topology, dict[str, Any]]:
    """A deployment's manifest, topology and raw snapshot (as its workers run it)."""
    d = Deployment(name)
    m = d.manifest()
    text = d.snapshot_file.read_text(encoding="utf-8")
    return m, load_topology_text(text, m["base_dir"]), yaml.safe_load(text)


def _model_agent(t: Topology, agent: str) -> None:
    if agent not in t.agent_names:
        raise DeploymentError(f"deployment {t.name!r} has no agent {agent!r} (agents: "
                              f"{', '.join(t.agent_names)})", topology=t.name)
    if t.agent(agent).model is None:
        raise DeploymentError(f"agent {agent!r} of {t.name!r} runs no model (a joiner or "
                              "router); replay takes a model agent", topology=t.name)


async def _requests(bootstrap: str, t: Topology, side: Side, sel: Selection
                    ) -> tuple[dict[str, Request], int]:
    records = await read_range(bootstrap, list(side.inputs), sel.start, sel.end, sel.limit)
    found, keyless = requests_of(records)
    if not found:
        raise DeploymentError(f"no recorded requests of agent {side.agent!r} on "
                              f"{', '.join(side.inputs)} in the range asked"
                              + (f" ({keyless} records without a key, so without a request "
                                 "id to match)" if keyless else ""), topology=t.name)
    return found, keyless


def _report(requests: dict[str, Request], keyless: int, live: dict[str, Answer],
            candidate: dict[str, Answer], sel: Selection, live_label: str,
            candidate_label: str, title: str) -> Report:
    report = summarize((compare(rid, r.payload, live.get(rid), candidate.get(rid),
                                list(sel.fields) or None, sel.tolerance)
                        for rid, r in requests.items()),
                       live=live_label, candidate=candidate_label, title=title)
    report.keyless = keyless
    return report


def replay(name: str, agent: str, candidate: str, sel: Selection = Selection(), *,
           options: dict[str, Any] | None = None, keep: bool = False,
           rate: float | None = None, timeout: float = 60.0,
           deploy_timeout: float = 180.0, bar: BarFactory = Bar) -> Report:
    """Run the requests live ``agent`` of deployment ``name`` received through
    ``candidate`` (a model file or ``module:callable``) in a side deployment, and
    compare. ``rate``: requests a second fed to the candidate (all at once when None);
    ``timeout``: how long to wait for the candidate's next answer. The side deployment
    and its topics are removed afterwards unless ``keep``."""
    m, t, snapshot = _live(name)
    _model_agent(t, agent)
    bootstrap = m["bootstrap"]
    live = Side("live", agent, t.input_topics(agent), (t.topic_of(agent),), t.dlq_of(agent))
    requests, keyless = asyncio.run(_requests(bootstrap, t, live, sel))
    first_ms = min(r.timestamp_ms for r in requests.values())
    with bar("live answers", len(requests)) as b:
        live_answers = asyncio.run(collect(
            bootstrap, live, {rid: r.timestamp_ms for rid, r in requests.items()},
            RECORDED_QUIET_S, first_ms, b.update))
    side = SideDeployment(t, snapshot, agent, candidate, options, bootstrap)
    try:
        side.start(deploy_timeout)
        with bar("replayed", len(requests)) as b:
            sent = asyncio.run(side.feed(list(requests.values()), b.update, rate))
        with bar("candidate answers", len(requests)) as b:
            answers = asyncio.run(collect(bootstrap, side.side, sent, timeout, None, b.update))
    finally:
        if not keep:
            side.remove()
    title = (f"replay of {name}/{agent}: candidate {candidate} against the live agent"
             + (f" (side deployment kept: {side.name})" if keep else ""))
    return _report(requests, keyless, live_answers, answers, sel, "live", "candidate", title)


def _shadow_pair(t: Topology, agent: str) -> tuple[str, str]:
    """The shadow router and the shadow for ``agent`` (a shadow, or a shadow router with
    one shadow)."""
    routers = [a for a in t.agents if a.router is not None and a.router.kind == "shadow"]
    for r in routers:
        assert r.router is not None
        if agent in r.router.shadows:
            return r.name, agent
        if agent == r.name and len(r.router.shadows) == 1:
            return r.name, r.router.shadows[0]
    shadows = [s for r in routers if r.router is not None for s in r.router.shadows]
    raise DeploymentError(f"{agent!r} is not a shadow of {t.name!r} (shadows: "
                          f"{', '.join(shadows) or 'none'})", topology=t.name)


def shadow_report(name: str, agent: str, sel: Selection = Selection(), *,
                  bar: BarFactory = Bar) -> Report:
    """Compare what shadow ``agent`` of deployment ``name`` answered with what its
    primary answered, for the requests the shadow router sent both."""
    m, t, _ = _live(name)
    router, shadow = _shadow_pair(t, agent)
    spec = t.agent(router).router
    assert spec is not None and spec.primary is not None
    primary = spec.primary
    bootstrap = m["bootstrap"]

    def side_of(label: str, a: str) -> Side:
        return Side(label, a, (t.edge_topic(router, a),), (t.topic_of(a),), t.dlq_of(a))

    shadow_side, primary_side = side_of(shadow, shadow), side_of(primary, primary)
    requests, keyless = asyncio.run(_requests(bootstrap, t, shadow_side, sel))
    first_ms = min(r.timestamp_ms for r in requests.values())
    primary_got = asyncio.run(read_range(bootstrap, list(primary_side.inputs),
                                         Position(time_ms=first_ms - CLOCK_SKEW_MS), None))
    got, _ = requests_of(primary_got)
    answers = {}
    for label, side, sent in (
            (primary, primary_side, {rid: got[rid].timestamp_ms for rid in requests
                                     if rid in got}),
            (shadow, shadow_side, {rid: r.timestamp_ms for rid, r in requests.items()})):
        with bar(f"{label} answers", len(sent)) as b:
            answers[label] = asyncio.run(collect(bootstrap, side, sent, RECORDED_QUIET_S,
                                                 first_ms - CLOCK_SKEW_MS, b.update))
    title = f"shadow report of {name}/{router}: shadow {shadow} against primary {primary}"
    return _report(requests, keyless, answers[primary], answers[shadow], sel, primary, shadow,
                   title)

