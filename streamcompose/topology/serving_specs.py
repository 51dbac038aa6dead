"""Serving options of a topology: priority lanes at its input and result caches on its
agents (deadlines are plain numbers: ``deadline_ms`` on the topology or an agent).

>>> p = PrioritySpec(lanes=("high", "normal", "low"))
>>> p.default, p.lane_of(9), p.lane_of(4), p.lane_of("low"), p.lane_of(None)
('normal', 'high', 'normal', 'low', 'normal')
"""

from __future__ import annotations

from dataclasses import dataclass

#: lowest and highest numeric priority (9 is the most urgent)
PRIORITY_RANGE = (0, 9)
DEFAULT_LANE_RATIO = 8


@dataclass(frozen=True)
class PrioritySpec:
    """Per-priority input topics. ``lanes`` are ordered most urgent first; requests
    without a priority go to ``default`` (``normal`` when it is a lane, else the last).
    Agents reading the input fetch from more urgent lanes first, but after ``ratio``
    fetches served by a more urgent lane they serve a waiting less urgent one once, so
    no lane starves."""

    lanes: tuple[str, ...]
    default_lane: str | None = None
    ratio: int = DEFAULT_LANE_RATIO

    @property
    def default(self) -> str:
        if self.default_lane is not None:
            return self.default_lane
        return "normal" if "normal" in self.lanes else self.lanes[-1]

    def lane_of(self, priority: str | int | None) -> str:
        """The lane of a priority: a lane name, a number 0-9 (9 the most urgent; the
        range is split evenly over the lanes) or its text, or None for the default.
        Raises ValueError for anything else."""
        if priority is None or priority == "":
            return self.default
        if isinstance(priority, str) and priority in self.lanes:
            return priority
        try:
            number = int(priority)
        except (TypeError, ValueError):
            raise ValueError(f"unknown priority {priority!r} (expected one of "
                             f"{', '.join(self.lanes)} or a number 0-9)") from None
        low, high = PRIORITY_RANGE
        if isinstance(priority, bool) or not low <= number <= high:
            raise ValueError(f"priority {priority!r} is out of range (expected one of "
                             f"{', '.join(self.lanes)} or a number {low}-{high})")
        n = len(self.lanes)
        return self.lanes[min(n - 1, (high - number) * n // (high - low + 1))]


@dataclass(frozen=True)
class CacheSpec:
    """An agent's result cache: a request whose ``key`` fields equal those of one
    answered within ``ttl_s`` gets that answer without a model call; at most
    ``max_entries`` answers are kept per worker (least recently used go first).
    ``shared``: replicas and restarted workers share the answers through the compacted
    topic ``<name>.<agent>.cache``."""

    key: tuple[str, ...]
    ttl_s: float = 300.0
    max_entries: int = 100_000
    shared: bool = False
