"""The parts of a topology: how each agent batches, runs its model, joins or routes.

>>> JoinSpec(strategy="soft_vote", mode="quorum", quorum=2).needed(3)
2
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as _field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamcompose.topology.monitor_spec import MonitorSpec

from streamcompose.topology.scaling import AutoscaleSpec, ResourcesSpec
from streamcompose.topology.serving_specs import CacheSpec

INPUT = "$input"
RUNTIMES = ("onnx", "torch", "python")
#: the kinds of device a model runs on (``cuda`` also stands for ``cuda:N``)
DEVICE_KINDS = ("cpu", "cuda")
DELIVERIES = ("exactly_once", "at_least_once")


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class BatchSpec:
    """Micro-batching limits: a batch closes at ``max_size`` items or ``max_wait_ms``
    after its first item, whichever comes first. A topology may give ``max_size`` per
    device kind; the loader keeps the one of the agent's model device."""

    max_size: int = 1
    max_wait_ms: float = 0.0
    # ``max_wait_ms: auto``: the worker chooses each wait, max_wait_ms being its ceiling
    auto_wait: bool = False
    # a batch closes before its total cost passes max_cost; ``cost`` names a payload
    # field (its length) or a ``module:function`` of the payload
    max_cost: float | None = None
    cost: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """How an agent loads and calls its model.

    ``input_map`` maps a model input name to the payload field bound to it;
    ``output_map`` maps a model output name to the payload field it is stored as.
    ``outputs`` (optional) restricts which model outputs are kept.
    ``allow_nonfinite`` lets NaN and infinity into the model's tensor inputs (by
    default such a request is dead-lettered).
    ``fallback``: ``cpu`` lets a ``device: cuda`` model run on the CPU, with a warning,
    where the machine has no usable GPU (by default the model does not load).
    ``version`` names the model's version; without one it is a short hash of the model
    file (or of the python entrypoint's module), see :mod:`streamcompose.topology.versions`.
    """

    runtime: str
    path: Path | None = None
    entrypoint: str | None = None
    device: str = "cpu"
    input_map: Mapping[str, str] = _field(default_factory=dict)
    output_map: Mapping[str, str] = _field(default_factory=dict)
    outputs: tuple[str, ...] | None = None
    options: Mapping[str, Any] = _field(default_factory=dict)
    allow_nonfinite: bool = False
    fallback: str | None = None
    version: str | None = None

    def __post_init__(self) -> None:
        for name in ("input_map", "output_map", "options"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))


JOIN_MODES = ("all", "any", "quorum")
#: every join strategy and the payload fields it writes besides the combined ``field``
#: (None: decided by what it combines: the branches for merge, the meta-model for
#: stacking, the user's code for python); implemented in streamcompose.join.strategies
JOIN_STRATEGIES: Mapping[str, tuple[str, ...] | None] = MappingProxyType({
    "majority_vote": ("label", "votes"), "soft_vote": ("label",), "weighted_average": (),
    "max_confidence": ("label", "chosen"), "entropy_weighted": ("label", "branch_weights"),
    "gate_weighted": ("label",), "stacking": None, "merge": None, "python": None})


@dataclass(frozen=True)
class JoinSpec:
    """How a joiner combines the results its branches (its ``inputs``) give for one request.

    ``mode``: emit when ``all`` branches answered, at the first (``any``), or once
    ``quorum`` have. After ``timeout_ms`` from the first branch result, once no missing
    branch has more to give (:mod:`streamcompose.join.progress`), ``on_timeout``
    ``partial`` emits what arrived (with a ``missing`` list) and ``dlq`` dead-letters the
    request. ``field`` is the payload field combined; ``weights`` weigh branches by name.
    ``model`` is the stacking meta-model, ``entrypoint`` the python aggregator.
    At most ``max_pending`` requests wait at once: records that would open more wait
    (should more be restored than that, the oldest are sent on with ``on_timeout``);
    emitted request ids are remembered ``remember_ms`` (at most
    ``remember_max`` of them) to drop late branch results.
    """

    strategy: str
    mode: str = "all"
    quorum: int | None = None
    field: str = "proba"
    proba_field: str = "proba"
    weights: Mapping[str, float] = _field(default_factory=dict)
    timeout_ms: float = 2000.0
    on_timeout: str = "partial"
    keep_branches: bool = False
    max_pending: int = 10000
    remember_ms: float = 600_000.0
    remember_max: int = 100_000
    model: ModelSpec | None = None
    entrypoint: str | None = None
    options: Mapping[str, Any] = _field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("weights", "options"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    def needed(self, branches: int) -> int:
        """How many branch results complete a request."""
        return {"all": branches, "any": 1}.get(self.mode, self.quorum or branches)


ROUTER_KINDS = ("route", "switch", "split", "shadow", "fallback")


@dataclass(frozen=True)
class Case:
    """A switch case: requests whose payload satisfies ``when`` go ``to`` an agent."""

    when: str
    to: str


@dataclass(frozen=True)
class RouterSpec:
    """Where a router sends each request; the fields used depend on ``kind``:

    * ``route`` (mixture of experts): the gate ``model`` scores each request (its output
      ``scores``, by default its first), the ``top_k`` experts get it with the gate
      weights renormalised over them; ``capacity`` caps one expert's share of a batch.
    * ``switch``: the first of ``cases`` whose condition holds, else ``default``.
    * ``split``: one of ``weights``' variants, sticky per request key.
    * ``shadow``: ``primary`` as usual, plus a copy to each of ``shadows``.
    * ``fallback``: ``primary``; its failure or silence past ``deadline_ms`` sends the
      request to ``backup``.
    """

    kind: str
    targets: tuple[str, ...]
    model: ModelSpec | None = None
    scores: str | None = None
    top_k: int = 1
    capacity: float | None = None
    cases: tuple[Case, ...] = ()
    default: str | None = None
    weights: Mapping[str, float] = _field(default_factory=dict)
    primary: str | None = None
    shadows: tuple[str, ...] = ()
    backup: str | None = None
    deadline_ms: float = 1000.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", _frozen(self.weights))


@dataclass(frozen=True)
class AgentSpec:
    """One step of the graph: a model agent consuming ``inputs`` (``$input`` or agents).

    ``drop`` names payload fields removed before the result goes downstream (bulky
    intermediates such as an image a later step no longer needs). ``deadline_ms``
    gives requests without a deadline one, from when they entered the topology;
    ``cache`` answers repeated requests without the model; ``monitor`` watches a model
    agent's results and inputs for drift."""

    name: str
    inputs: tuple[str, ...]
    model: ModelSpec | None = None
    join: JoinSpec | None = None
    router: RouterSpec | None = None
    batch: BatchSpec = _field(default_factory=BatchSpec)
    replicas: int = 1
    drop: tuple[str, ...] = ()
    delivery: str | None = None
    autoscale: AutoscaleSpec | None = None
    resources: ResourcesSpec | None = None
    deadline_ms: float | None = None
    cache: CacheSpec | None = None
    monitor: MonitorSpec | None = None
    #: set on the spec of a co-located group (see streamcompose.topology.colocate)
    members: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """``model``, ``join``, the router kind (``route``, ``switch``, ``split``,
        ``shadow``, ``fallback``), or ``colocate`` for a group of co-located agents."""
        if self.members:
            return "colocate"
        if self.router is not None:
            return self.router.kind
        return "join" if self.join is not None else "model"


