"""How an agent is sized and scaled: ``resources:`` (what a Kubernetes pod of it asks for)
and ``autoscale:`` (how many workers it runs, from its consumer lag). The same keys feed
the local supervisor and the rendered Kubernetes objects, so one topology file means the
same thing on both.

>>> from streamcompose.topology.yamlsource import read_yaml_text
>>> from streamcompose.topology.parse_specs import Reader
>>> doc = read_yaml_text("autoscale: {min: 1, max: 4, lag_per_replica: 500}")
>>> parse_autoscale(Reader(doc), doc.data["autoscale"], "autoscale")
AutoscaleSpec(min=1, max=4, lag_per_replica=500, cooldown_s=30.0, to_zero=False)
>>> AutoscaleSpec(min=1, max=4, lag_per_replica=500).wanted(1200, partitions=3)
3
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as _field
from types import MappingProxyType
from typing import Any

AUTOSCALE_KEYS = {"min", "max", "lag_per_replica", "cooldown_s", "to_zero"}
RESOURCES_KEYS = {"requests", "limits"}
#: a Kubernetes quantity: 500m, 2, 1.5, 512Mi, 4Gi, 1e3
QUANTITY_RE = re.compile(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][0-9]+)?$")
RESOURCE_NAME_RE = re.compile(r"^([a-z0-9.-]+/)?[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$")
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass(frozen=True)
class AutoscaleSpec:
    """Workers follow the agent's consumer lag: ``ceil(lag / lag_per_replica)`` of them,
    at least ``min`` (0 when ``to_zero`` and nothing lags), at most ``max`` and never
    more than the partitions of its input. More are added at once; fewer only once
    ``cooldown_s`` passed since the last change."""

    min: int = 1
    max: int = 4
    lag_per_replica: int = 500
    cooldown_s: float = 30.0
    to_zero: bool = False

    def bounds(self, partitions: int) -> tuple[int, int]:
        """The fewest and most workers, for inputs of ``partitions`` partitions.

        >>> AutoscaleSpec(min=1, max=8, to_zero=True).bounds(3)
        (0, 3)
        """
        return (0 if self.to_zero else self.min), min(self.max, partitions)

    def wanted(self, lag: int, partitions: int) -> int:
        """How many workers a lag of ``lag`` records calls for."""
        low, high = self.bounds(partitions)
        if lag > 0:
            low = max(low, 1)
        return max(low, min(high, math.ceil(lag / self.lag_per_replica)))


@dataclass(frozen=True)
class ResourcesSpec:
    """Kubernetes resource ``requests`` and ``limits`` of one worker (``cpu``, ``memory``,
    ``nvidia.com/gpu``...), as quantities."""

    requests: Mapping[str, str] = _field(default_factory=dict)
    limits: Mapping[str, str] = _field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("requests", "limits"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))


def parse_autoscale(r: Any, raw: Any, key: str) -> AutoscaleSpec:
    """``autoscale: {min, max, lag_per_replica, cooldown_s, to_zero}``; ``r`` is a
    :class:`~streamcompose.topology.parse_specs.Reader`."""
    a = r.mapping(raw, key, AUTOSCALE_KEYS)
    to_zero = a.get("to_zero", False)
    if not isinstance(to_zero, bool):
        raise r.doc.error(f"must be true or false, got {to_zero!r}", f"{key}.to_zero")
    spec = AutoscaleSpec(
        min=r.number(a.get("min", 1), f"{key}.min", integer=True, minimum=1),
        max=r.number(a.get("max", 4), f"{key}.max", integer=True, minimum=1),
        lag_per_replica=r.number(a.get("lag_per_replica", 500), f"{key}.lag_per_replica",
                                 integer=True, minimum=1),
        cooldown_s=float(r.number(a.get("cooldown_s", 30), f"{key}.cooldown_s",
                                  integer=False, minimum=0)),
        to_zero=to_zero)
    if spec.min > spec.max:
        raise r.doc.error(f"min {spec.min} > max {spec.max}", f"{key}.min")
    return spec


def parse_resources(r: Any, raw: Any, key: str) -> ResourcesSpec:
    """``resources: {requests: {cpu: 500m, memory: 1Gi}, limits: {...}}``."""
    res = r.mapping(raw, key, RESOURCES_KEYS)
    parts: dict[str, dict[str, str]] = {}
    for part in ("requests", "limits"):
        values = res.get(part, {})
        if not isinstance(values, dict):
            raise r.doc.error("must be a mapping of resource names to quantities",
                              f"{key}.{part}")
        parts[part] = {}
        for name, value in values.items():
            where = f"{key}.{part}.{name}"
            if not isinstance(name, str) or not RESOURCE_NAME_RE.match(name):
                raise r.doc.error(f"{name!r} is not a resource name (cpu, memory, "
                                  f"{GPU_RESOURCE}, ...)", where)
            text = str(value) if isinstance(value, int | float) and not isinstance(
                value, bool) else value
            if not isinstance(text, str) or not QUANTITY_RE.match(text):
                raise r.doc.error(f"must be a quantity such as 500m, 2, 512Mi or 4Gi, got "
                                  f"{value!r}", where)
            parts[part][name] = text
    return ResourcesSpec(**parts)
