"""What a stateless agent (a model, a router) does with a batch just before its step
runs, and after: requests past their deadline are dead-lettered, requests its cache can
answer are answered, and only the rest go to the model; the model's fresh answers are
cached. Requests of one batch with equal cache keys cost one model call.

>>> from dataclasses import dataclass
>>> from streamcompose.codec import Trace
>>> from streamcompose.metrics import AgentMetrics
>>> from streamcompose.topology import load_topology_text
>>> t = load_topology_text('''
... name: demo
... agents:
...   m: {inputs: [$input], model: {runtime: python, entrypoint: "math:floor"},
...       deadline_ms: 100, cache: {key: [x]}}
... ''')
>>> @dataclass
... class Item:
...     trace: Trace
...     payload: dict
...     error: Exception | None = None
...     emissions: object = None
>>> gate = ServingGate(t, "m", AgentMetrics("demo", "m", 0), clock=lambda: 1_050)
>>> old, a, b = Item(Trace("r0", 900), {"x": 1}), Item(Trace("r1", 1_000), {"x": 1}), \
Item(Trace("r2", 1_000), {"x": 1})
>>> batch = gate.admit([old, a, b])
>>> [i.trace.request_id for i in batch.to_model], type(old.error).__name__
(['r1'], 'RequestExpiredError')
>>> a.emissions = ["answer"]
>>> shared = gate.settle(batch)
>>> b.emissions, dict(b.trace.extra)["sc-cache"], gate.admit([Item(Trace("r3", 1_000),
...     {"x": 1})]).to_model
(['answer'], b'hit', [])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from streamcompose.codec import Trace
from streamcompose.codec.record import now_ms
from streamcompose.metrics import AgentMetrics
from streamcompose.serving.cache import ResultCache, cache_key, mark_cached
from streamcompose.serving.deadline import expired, expired_error, with_default
from streamcompose.topology.model import Topology


class Served(Protocol):
    """A request of a batch as the worker holds it."""

    trace: Trace
    payload: dict[str, Any] | None
    error: Any
    emissions: Any


@dataclass
class Admission:
    """One batch after the gate: the requests the model must answer, the cache key of
    each (where cached), and the requests waiting for an equal one's answer."""

    to_model: list[Any]
    keys: dict[int, bytes] = field(default_factory=dict)
    followers: dict[bytes, list[Any]] = field(default_factory=dict)


class ServingGate:
    """The deadline and cache checks of one agent."""

    def __init__(self, topology: Topology, agent: str, metrics: AgentMetrics,
                 clock: Callable[[], int] = now_ms) -> None:
        self.agent, self.metrics, self.clock = agent, metrics, clock
        self.default_deadline = topology.deadline_of(agent)
        spec = topology.agent(agent).cache
        self.key_fields = spec.key if spec is not None else ()
        self.cache = ResultCache(spec.ttl_s, spec.max_entries) if spec is not None else None

    def admit(self, items: list[Served]) -> Admission:
        """Dead-letter expired requests, answer cached ones; the rest go to the model."""
        for item in items:
            item.trace = with_default(item.trace, self.default_deadline)
        now, admission = self.clock(), Admission([])
        for item in self.unexpired(items):
            key = self._key(item)
            if key is None:
                admission.to_model.append(item)
                continue
            cached = self.cache.get(key, now) if self.cache is not None else None
            if cached is not None:
                self._answer(item, cached)
            elif key in admission.followers:
                admission.followers[key].append(item)
                self.metrics.cache_request("hit")
            else:
                admission.followers[key] = []
                admission.keys[id(item)] = key
                admission.to_model.append(item)
                self.metrics.cache_request("miss")
        return admission

    def unexpired(self, items: list[Served]) -> list[Served]:
        """Those of ``items`` still within their deadline; the others get the error
        ``expired`` (checked at admission, and again just before the model runs, since a
        batch may wait for the one before it)."""
        now, live = self.clock(), []
        for item in items:
            if expired(item.trace, now):
                item.error = expired_error(item.trace, self.agent, now)
                self.metrics.expired.inc()
            else:
                live.append(item)
        return live

    def settle(self, admission: Admission) -> list[tuple[bytes, Any]]:
        """Cache the model's answers, pass them (or its error) to the requests that
        waited for them; returns the newly cached (key, answer) pairs."""
        now, fresh = self.clock(), []
        for item in admission.to_model:
            key = admission.keys.get(id(item))
            if key is None:
                continue
            for follower in admission.followers[key]:
                if item.error is not None:
                    follower.error = item.error
                else:
                    self._answer(follower, item.emissions, counted=True)
            if item.error is None and self.cache is not None:
                self.cache.put(key, item.emissions, now)
                fresh.append((key, item.emissions))
        return fresh

    def remember(self, key: bytes, answer: Any, at_ms: int) -> None:
        """Take an answer another worker computed (a shared cache)."""
        if self.cache is not None:
            self.cache.put(key, answer, at_ms)

    def _key(self, item: Served) -> bytes | None:
        if self.cache is None or item.payload is None:
            return None
        return cache_key(item.payload, self.key_fields)

    def _answer(self, item: Served, answer: Any, counted: bool = False) -> None:
        item.emissions = answer
        item.trace = mark_cached(item.trace)
        if not counted:
            self.metrics.cache_request("hit")
